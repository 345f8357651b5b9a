"""One implementation of the list, create, detail and delete APIs of what a notebook's jobs
generate (reports, podcasts). An app subclasses each view and names its serializers, its
selectors and its services; the views here do the rest the same way for both:

- list: the notebook's artifacts of that kind, newest first, 50 a page (limit/offset), the
  page's Job rows loaded in one query;
- create: validate, call the app's create service with the notebook, the owner and the
  validated fields (``source_ids`` as strings), answer 202 with the detail body;
- detail and delete: only the caller's own artifacts (anyone else's is a 404).

Each concrete view documents its own bodies in Swagger (``__init_subclass__`` below)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils.decorators import method_decorator
from drf_yasg.utils import swagger_auto_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend import selectors
from backend.models import Artifact, Job
from backend.serializers import JobSerializer, page_of
from backend.throttles import EnqueueThrottle


class ArtifactSerializer(serializers.ModelSerializer[Artifact]):
    """The fields every artifact shows; an app's serializer adds its own to ``FIELDS``. Its
    context holds the Job rows of the artifacts it renders (``jobs``, from
    ``selectors.artifact_jobs``), read in one query for a page or a detail."""

    FIELDS: ClassVar[list[str]] = [
        "id", "notebook", "title", "options", "status", "progress", "word_count", "error", "error_code", "job",
        "created_at", "completed_at",
    ]  # fmt: skip

    notebook = serializers.UUIDField(source="notebook_id")
    job = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()

    def _job(self, artifact: Artifact) -> Job | None:
        return self.context["jobs"].get(artifact.job_id) if artifact.job_id else None

    def get_job(self, artifact: Artifact) -> dict[str, Any] | None:
        job = self._job(artifact)
        return dict(JobSerializer(job).data) if job else None

    def get_progress(self, artifact: Artifact) -> int:
        if artifact.status == Artifact.Status.COMPLETED:
            return 100
        job = self._job(artifact)
        return job.progress if job else 0


class ArtifactListCreateApi(APIView):
    """GET /notebooks/<id>/<kind>/ and POST to it. The notebook is looked up among the caller's
        own with ``notebooks`` (the notebooks app's selector, passed in so this module imports no app).
    A subclass gives its selectors and services as ``staticmethod``s."""

    throttle_classes = [EnqueueThrottle]
    serializer: ClassVar[type[ArtifactSerializer]]
    detail_serializer: ClassVar[type[ArtifactSerializer]]
    input_serializer: ClassVar[type[serializers.Serializer[dict[str, Any]]]]
    notebooks: ClassVar[Callable[..., QuerySet[Any]]]  # notebooks_of(user=)
    of_notebook: ClassVar[Callable[..., QuerySet[Any]]]  # reports_of_notebook(notebook=)
    create: ClassVar[Callable[..., Artifact]]  # report_create(notebook=, owner=, **fields)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "serializer" in cls.__dict__:
            document(cls, "get", responses={200: page_of(cls.serializer)})
            document(cls, "post", request_body=cls.input_serializer, responses={202: cls.detail_serializer})

    def get(self, request: Request, notebook_id: str) -> Response:
        notebook = get_object_or_404(self.notebooks(user=request.user), id=notebook_id)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(self.of_notebook(notebook=notebook), request, view=self) or []
        jobs = selectors.artifact_jobs(artifacts=page)
        return paginator.get_paginated_response(self.serializer(page, many=True, context={"jobs": jobs}).data)

    def post(self, request: Request, notebook_id: str) -> Response:
        notebook = get_object_or_404(self.notebooks(user=request.user), id=notebook_id)
        data = self.input_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        if "source_ids" in fields:
            fields["source_ids"] = [str(s) for s in fields["source_ids"]]
        artifact = self.create(notebook=notebook, owner=request.user, **fields)
        return Response(detail_body(self.detail_serializer, artifact), status=status.HTTP_202_ACCEPTED)


class ArtifactDetailApi(APIView):
    """GET /<kind>/<id>/ and DELETE it; ``lookup`` names the URL's id argument."""

    serializer: ClassVar[type[ArtifactSerializer]]
    lookup: ClassVar[str]  # "report_id"
    of_user: ClassVar[Callable[..., QuerySet[Any]]]  # reports_of(user=)
    delete_one: ClassVar[Callable[..., None]]  # report_delete(report=)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "serializer" in cls.__dict__:
            document(cls, "get", responses={200: cls.serializer})

    def artifact(self, request: Request, artifact_id: str) -> Artifact:
        """The caller's own artifact of this kind, else a 404."""
        return get_object_or_404(self.of_user(user=request.user), id=artifact_id)

    def get(self, request: Request, **ids: str) -> Response:
        return Response(detail_body(self.serializer, self.artifact(request, ids[self.lookup])))

    def delete(self, request: Request, **ids: str) -> Response:
        artifact = self.artifact(request, ids[self.lookup])
        self.delete_one(**{self.lookup.removesuffix("_id"): artifact})  # report_delete(report=…)
        return Response(status=status.HTTP_204_NO_CONTENT)


def detail_body(serializer: type[ArtifactSerializer], artifact: Artifact) -> Any:
    """One artifact's body, its Job row read once (its ``job`` and ``progress`` both need it)."""
    return serializer(artifact, context={"jobs": selectors.artifact_jobs(artifacts=[artifact])}).data


def document(view: type[APIView], method: str, **schema: Any) -> None:
    """Swagger for one method of a concrete view that inherits it (drf-yasg reads the schema
    from the method, so the subclass gets a decorated copy of its own)."""
    method_decorator(swagger_auto_schema(**schema), name=method)(view)
