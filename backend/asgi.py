import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings.local")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402

from backend.body_limit import BodyLimit  # noqa: E402

application = django_application
if settings.QUIRE_SERVE_STATIC:
    # Admin, dashboard and Swagger assets straight from the installed apps; behind a CDN or
    # a reverse proxy set QUIRE_SERVE_STATIC=false and serve `collectstatic` output there.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
application = BodyLimit(application, settings.QUIRE_MAX_REQUEST_BYTES)  # type: ignore[arg-type,assignment]
