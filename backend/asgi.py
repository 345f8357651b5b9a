import os
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections, reset_queries
from django.http import HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings.local")


# The methods of Django's ASGIHandler replaced below: Django's internals, not its documented API
# (Django is pinned in requirements.txt). backend/tests/test_framework_seams.py fails when an
# upgrade renames one, changes its parameters or gives it work that these copies would skip.
DJANGO_HANDLER_OVERRIDES = (
    "__init__",  # Django's, but the middleware chain is built sync: one thread hop per request
    "__call__",  # Django's, without the ThreadSensitiveContext (a new thread per request)
    "get_response_async",  # the chain and view in one hop to the pool, not Django's many
)


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler, with each request's middleware chain and view run in one hop to a
    fixed pool of request threads that keep their database connections.

    Why (figures in bench/README.md, "Framework seams"): Django runs every method of every sync
    middleware in its own hop to a thread, and each request in a new thread with a new database
    connection; every API view is sync. The async event-stream view still works (Django runs it
    with async_to_sync, and its response streams from the event loop). Without Django's
    ThreadSensitiveContext, what runs outside the pool (request signals, closing the response)
    uses asgiref's one shared thread instead of a new one per request. A sync streaming body (a
    file download) is read chunk by chunk in the pool, where Django would read it whole.
    """

    def __init__(self) -> None:
        from django.conf import settings

        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self._threads = ThreadPoolExecutor(settings.QUIRE_WEB_THREADS, thread_name_prefix="request")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = await sync_to_async(
            self._get_response_in_thread, thread_sensitive=False, executor=self._threads
        )(request)
        if isinstance(response, StreamingHttpResponse) and not response.is_async:
            response.streaming_content = self._read_in_pool(iter(cast(Iterable[bytes], response.streaming_content)))
        return response

    async def _read_in_pool(self, parts: Iterator[bytes]) -> AsyncIterator[bytes]:
        """A sync streaming body (a file download), one chunk per trip to a request thread."""

        def read() -> bytes | None:
            return next(parts, None)

        pull = sync_to_async(read, thread_sensitive=False, executor=self._threads)
        while (part := await pull()) is not None:
            yield part

    def _get_response_in_thread(self, request: HttpRequest) -> HttpResponseBase:
        # What Django's request_started receivers do, for this thread (they run on another).
        reset_queries()
        close_old_connections()  # a connection past its age or broken since the last request
        try:
            return self.get_response(request)
        finally:
            close_old_connections()


django.setup(set_prefix=False)
django_application = SyncChainASGIHandler()

from django.conf import settings  # noqa: E402

from backend.body_limit import BodyLimit  # noqa: E402

application: Any = django_application
if settings.QUIRE_SERVE_STATIC:
    # Admin, dashboard and Swagger assets straight from the installed apps; behind a CDN or
    # a reverse proxy set QUIRE_SERVE_STATIC=false and serve `collectstatic` output there.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
application = BodyLimit(application, settings.QUIRE_MAX_REQUEST_BYTES)
