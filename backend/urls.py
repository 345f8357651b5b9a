from collections.abc import Callable
from functools import wraps
from typing import Any

import django_rq.urls
from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.urls import URLPattern, URLResolver, include, path
from drf_yasg import openapi
from drf_yasg.views import get_schema_view
from rest_framework import permissions

from backend import apis
from backend.metrics import metrics_view


def superuser_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous users go to the login page; signed-in users who are not superusers get 403."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_superuser:
            return HttpResponseForbidden("The job dashboard is for superusers only.")
        return view(request, *args, **kwargs)

    return wrapped


def _superuser_patterns(patterns: list[Any]) -> list[URLPattern | URLResolver]:
    return [
        URLPattern(p.pattern, superuser_only(p.callback), p.default_args, p.name)
        for p in patterns
        if isinstance(p, URLPattern)
    ]


schema_view = get_schema_view(
    openapi.Info(title="Quire API", default_version="v1", description="Research notebooks, reports and podcasts."),
    public=True,
    permission_classes=[permissions.AllowAny],
)

api_v1: list[URLPattern | URLResolver] = [
    path("auth/token/", apis.TokenApi.as_view(), name="auth-token"),
    path("jobs/", apis.JobListApi.as_view(), name="job-list"),
    path("jobs/<str:job_id>/", apis.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<str:job_id>/cancel/", apis.JobCancelApi.as_view(), name="job-cancel"),
    path("batches/<uuid:batch_id>/", apis.BatchDetailApi.as_view(), name="batch-detail"),
    path("batches/<uuid:batch_id>/retry-failed/", apis.BatchRetryFailedApi.as_view(), name="batch-retry-failed"),
    path("", include("notebooks.urls")),
    path("", include("podcast.urls")),
    path("", include("reports.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("django-rq/", include((_superuser_patterns(django_rq.urls.urlpatterns), "django_rq"))),
    path("api/v1/", include(api_v1)),
    path("api/docs/", schema_view.with_ui("swagger", cache_timeout=0), name="swagger-ui"),
    path("api/schema/", schema_view.without_ui(cache_timeout=0), name="api-schema"),
    path("healthz", apis.healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("", include("web.urls")),
]
