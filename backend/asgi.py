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


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler, with the middleware chain and the view run in one switch to a
    request thread, from a fixed pool whose threads keep their database connections.

    - Under ASGI Django runs each method of each synchronous middleware (all of Django's own:
      sessions, CSRF, auth...) in its own sync_to_async call: 16 switches between the event
      loop and a thread per request, measured at about 4 ms of a 4.7 ms 404 on this machine.
      Every API view is synchronous, so the chain is built in sync mode and entered once; the
      async event-stream view still works (Django runs it with async_to_sync, and the response
      streams from the event loop as before).
    - Django would also run each request in a new thread, which opens a new database
      connection (0.75 ms for SQLite; for PostgreSQL a new server process per request). The
      pool's QUIRE_WEB_THREADS threads keep theirs for DATABASE_CONN_MAX_AGE seconds, checked
      at the start and end of each request as Django does under WSGI.
    - Django also gives each request a ThreadSensitiveContext: one more new thread per request
      for what runs outside the pool (the request_started/finished signals, closing the
      response). Without it that runs on asgiref's one shared thread: measured 0.55 ms less on
      a 404 and about 2 ms less on a 20k-chunk search. Django would also read a file
      download's whole body on that thread, into memory (it consumes a sync streaming response
      with sync_to_async(list)); here such a body is read chunk by chunk in the pool instead.
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
