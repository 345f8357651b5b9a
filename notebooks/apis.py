import dataclasses
import mimetypes
import re
import unicodedata
from typing import Any, cast

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_yasg.utils import no_body, swagger_auto_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.auth import aauthenticate
from backend.errors import Conflict, DomainError, NotFound, TooLarge, error_body
from backend.http import ranged_file_response
from backend.models import Job
from backend.runtime import EVENT_ID, event_cursor, event_stream
from backend.serializers import BatchSerializer, JobSerializer, page_of
from backend.throttles import EnqueueThrottle, SourcesThrottle
from notebooks import ask, search, selectors, services
from notebooks.ingest.media import clock
from notebooks.models import Notebook, Question, Source


class NotebookOutputSerializer(serializers.ModelSerializer[Notebook]):
    source_count = serializers.SerializerMethodField()

    class Meta:
        model = Notebook
        fields = ["id", "title", "description", "source_count", "created_at", "updated_at"]

    def get_source_count(self, notebook: Notebook) -> int:
        return notebook.sources.count()


class NotebookInputSerializer(serializers.Serializer[dict[str, Any]]):
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class NotebookListCreateApi(APIView):
    @swagger_auto_schema(responses={200: page_of(NotebookOutputSerializer)})
    def get(self, request: Request) -> Response:
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.notebooks_of(user=request.user), request, view=self)
        return paginator.get_paginated_response(NotebookOutputSerializer(page, many=True).data)

    @swagger_auto_schema(request_body=NotebookInputSerializer, responses={201: NotebookOutputSerializer})
    def post(self, request: Request) -> Response:
        data = NotebookInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        notebook = services.notebook_create(owner=request.user, **data.validated_data)
        return Response(NotebookOutputSerializer(notebook).data, status=status.HTTP_201_CREATED)


class NotebookDetailApi(APIView):
    class UpdateSerializer(serializers.Serializer[dict[str, Any]]):
        title = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(required=False, allow_blank=True)

    def _get(self, request: Request, notebook_id: str) -> Notebook:
        return get_object_or_404(Notebook, id=notebook_id, owner=request.user)

    @swagger_auto_schema(responses={200: NotebookOutputSerializer})
    def get(self, request: Request, notebook_id: str) -> Response:
        return Response(NotebookOutputSerializer(self._get(request, notebook_id)).data)

    @swagger_auto_schema(request_body=UpdateSerializer, responses={200: NotebookOutputSerializer})
    def patch(self, request: Request, notebook_id: str) -> Response:
        notebook = self._get(request, notebook_id)
        data = self.UpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        notebook = services.notebook_update(notebook=notebook, data=data.validated_data)
        return Response(NotebookOutputSerializer(notebook).data)

    def delete(self, request: Request, notebook_id: str) -> Response:
        services.notebook_delete(notebook=self._get(request, notebook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _notebook(request: Request, notebook_id: Any) -> Notebook:
    return get_object_or_404(Notebook, id=notebook_id, owner=request.user)


def _source(request: Request, notebook_id: Any, source_id: Any) -> Source:
    return get_object_or_404(Source, id=source_id, notebook_id=notebook_id, notebook__owner=request.user)


class SourceOutputSerializer(serializers.ModelSerializer[Source]):
    notebook = serializers.UUIDField(source="notebook_id")
    job = serializers.SerializerMethodField()

    class Meta:
        model = Source
        fields = [
            "id", "notebook", "kind", "title", "site", "extractor", "original_filename", "url", "content_type", "size",
            "status", "error", "error_code", "page_count", "word_count", "chunk_count", "citations", "job",
            "created_at",
            "updated_at",
        ]  # fmt: skip

    def get_job(self, source: Source) -> dict[str, Any] | None:
        jobs: dict[str, Job] = self.context.get("jobs", {})
        job = jobs.get(source.job_id) if source.job_id in jobs else Job.objects.filter(id=source.job_id).first()
        if job is None:
            return None
        # One JobSerializer for the whole response: DRF builds a ModelSerializer's fields per
        # instance, which cost more than the rest of a source (an upload lists up to 20).
        context = cast(dict[str, Any], self.context)
        if "job_serializer" not in context:
            context["job_serializer"] = JobSerializer(context=context)
        return dict(context["job_serializer"].to_representation(job))


class SourceListCreateApi(APIView):
    throttle_classes = [SourcesThrottle]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    class JsonInput(serializers.Serializer[dict[str, Any]]):
        urls = serializers.ListField(child=serializers.CharField(max_length=2000), required=False, max_length=50)
        text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        title = serializers.CharField(required=False, allow_blank=True, max_length=300, default="")
        priority = serializers.ChoiceField(choices=Job.Priority.choices, required=False)

    class PriorityInput(serializers.Serializer[dict[str, Any]]):
        # Also accepted as a form field next to `files`.
        priority = serializers.ChoiceField(choices=Job.Priority.choices, required=False)

    @swagger_auto_schema(responses={200: page_of(SourceOutputSerializer, paged=False)})
    def get(self, request: Request, notebook_id: str) -> Response:
        notebook = _notebook(request, notebook_id)
        sources = list(selectors.sources_of(notebook=notebook))
        jobs = Job.objects.in_bulk([s.job_id for s in sources if s.job_id])
        return Response({"results": SourceOutputSerializer(sources, many=True, context={"jobs": jobs}).data})

    @swagger_auto_schema(
        # Swagger 2.0 cannot say "multipart or JSON" for one operation: the JSON body is in the
        # schema, the multipart form is described here.
        operation_description="Add sources: JSON {urls: [...]} or JSON {text, title} as below, or a "
        "multipart/form-data body with one or more `files` fields. Answers 202 with the batch, the sources "
        "and their jobs. `priority` (interactive|bulk, also a form field) overrides the class the server "
        "chooses (bulk above QUIRE_FAIR_BULK_THRESHOLD sources in one request).",
        request_body=JsonInput,
        responses={202: "batch, sources, jobs", 413: "too large", 415: "unsupported type"},
    )
    def post(self, request: Request, notebook_id: str) -> Response:
        notebook = _notebook(request, notebook_id)
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if declared.isdigit() and int(declared) > settings.QUIRE_MAX_REQUEST_BYTES:
            raise TooLarge(f"The request is larger than {settings.QUIRE_MAX_REQUEST_BYTES // (1024 * 1024)} MB.")
        files = request.FILES.getlist("files") if request.content_type.startswith("multipart/") else []
        if files:
            form = cast(dict[str, Any], request.data)
            chosen = self.PriorityInput(data={"priority": form["priority"]} if "priority" in form else {})
            chosen.is_valid(raise_exception=True)
            added = services.sources_add(
                notebook=notebook,
                owner=request.user,
                files=files,
                priority=chosen.validated_data.get("priority"),
                language=str(form.get("language") or ""),  # a recording's language; detected when absent
            )
        else:
            data = self.JsonInput(data=request.data)
            data.is_valid(raise_exception=True)
            urls = data.validated_data.get("urls") or []
            text = data.validated_data.get("text")
            if not urls and text is None:
                raise DomainError("Send one or more `files`, a list of `urls`, or `text`.", code="NO_SOURCES")
            added = services.sources_add(
                notebook=notebook,
                owner=request.user,
                urls=urls,
                text=text,
                title=data.validated_data["title"],
                priority=data.validated_data.get("priority"),
            )
        context = {"jobs": {job.id: job for job in added.jobs.values()}}  # shared: jobs and worker counts
        return Response(
            {
                "batch": BatchSerializer(added.batch, context=context).data,
                "sources": SourceOutputSerializer(added.sources, many=True, context=context).data,
                "duplicates": added.duplicates,
            },
            status=status.HTTP_202_ACCEPTED,
        )


class SourceDetailApi(APIView):
    @swagger_auto_schema(responses={200: SourceOutputSerializer})
    def get(self, request: Request, notebook_id: str, source_id: str) -> Response:
        return Response(SourceOutputSerializer(_source(request, notebook_id, source_id)).data)

    def delete(self, request: Request, notebook_id: str, source_id: str) -> Response:
        services.source_delete(source=_source(request, notebook_id, source_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SourceContentApi(APIView):
    def get(self, request: Request, notebook_id: str, source_id: str) -> Response:
        source = _source(request, notebook_id, source_id)
        if source.status != Source.Status.READY:
            raise Conflict(f"The source is {source.status}; its text is available once it is ready.", code="NOT_READY")
        body: dict[str, Any] = {"id": str(source.id), "title": source.title, "text": source.text}
        if source.content_type == "audio":
            # The timed transcript: each segment is one line of `text`.
            body.update(
                language=source.language,
                duration=source.duration,
                segments=[{**s, "label": clock(s["start"])} for s in source.transcript],
            )
        return Response(body)


def safe_filename(name: str, fallback: str) -> str:
    """A download name with no path, control or direction-override characters."""
    name = unicodedata.normalize("NFKC", name.replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(ch for ch in name if ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Cc"))
    name = re.sub(r"[\"';]", "_", name).strip(" .")
    return name[:150] or fallback


class SourceFileApi(APIView):
    def get(self, request: Request, notebook_id: str, source_id: str) -> HttpResponseBase:
        source = _source(request, notebook_id, source_id)
        if not source.file:
            raise NotFound("This source has no original file.", code="NO_FILE")
        if source.content_type == "audio":
            # Played in the page from a timestamp: served inline with Range, so a player can seek.
            name = safe_filename(source.original_filename, "recording")
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return ranged_file_response(request, str(source.file.name), mime, name)
        return FileResponse(
            source.file.open("rb"),
            as_attachment=True,
            filename=safe_filename(source.original_filename, f"source.{source.content_type or 'bin'}"),
        )


class HitSerializer(serializers.Serializer[Any]):
    chunk_id = serializers.IntegerField()
    source_id = serializers.UUIDField()
    source_title = serializers.CharField()
    position = serializers.IntegerField()
    page = serializers.IntegerField(allow_null=True)
    time = serializers.FloatField(allow_null=True, help_text="a recording's passage: where it starts, in seconds")
    time_label = serializers.CharField(allow_null=True, help_text="the same as 12:34")
    score = serializers.FloatField()
    text = serializers.CharField()
    char_start = serializers.IntegerField()
    char_end = serializers.IntegerField()
    rank_semantic = serializers.IntegerField(allow_null=True, help_text="1 = first on the semantic side")
    rank_keyword = serializers.IntegerField(allow_null=True, help_text="1 = first on the keyword side")
    snippet = serializers.CharField(help_text="a window of the text around the first match")
    highlights = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()), help_text="[start, end] spans in the snippet"
    )


class SearchOutputSerializer(serializers.Serializer[Any]):
    query = serializers.CharField()
    mode = serializers.ChoiceField(choices=search.MODES)
    method = serializers.CharField(help_text="the same as mode (kept for older clients)")
    degraded = serializers.CharField(
        required=False, help_text='"keyword only" or "semantic only" when a side could not run'
    )
    results = HitSerializer(many=True)


class SearchApi(APIView):
    class QueryInput(serializers.Serializer[dict[str, Any]]):
        q = serializers.CharField(max_length=1000)
        k = serializers.IntegerField(min_value=1, max_value=100, default=10)
        mode = serializers.ChoiceField(choices=search.MODES, default="hybrid")

    @swagger_auto_schema(query_serializer=QueryInput, responses={200: SearchOutputSerializer})
    def get(self, request: Request, notebook_id: str) -> Response:
        notebook = _notebook(request, notebook_id)
        query = self.QueryInput(data=request.query_params)
        query.is_valid(raise_exception=True)
        values = query.validated_data
        found = search.notebook_search(notebook=notebook, query=values["q"], k=values["k"], mode=values["mode"])
        # HitSerializer documents the shape; the hits are already plain values (str ids, rounded
        # floats), and building them with DRF's field machinery took about 0.8 ms of a search.
        results = [dataclasses.asdict(hit) for hit in found.hits]
        body = {"query": values["q"], "mode": found.mode, "method": found.mode, "results": results}
        if found.degraded:
            body["degraded"] = found.degraded
        return Response(body)


class OverviewApi(APIView):
    def get(self, request: Request, notebook_id: str) -> Response:
        notebook = _notebook(request, notebook_id)
        pending = Job.objects.filter(
            notebook_id=notebook.id, kind="notebooks.build_overview", status__in=Job.ACTIVE
        ).first()
        return Response(
            {
                "notebook": str(notebook.id),
                "status": "ready" if notebook.overview is not None else ("pending" if pending else "none"),
                "updated_at": notebook.overview_updated_at,
                "job": pending.id if pending else None,
                **(notebook.overview or {"summary": "", "key_topics": [], "suggested_questions": []}),
            }
        )


async def notebook_events(request: HttpRequest, notebook_id: str) -> HttpResponseBase:
    """Server-sent events of a notebook's jobs (`job` events carry the job JSON)."""
    user = await aauthenticate(request)
    if user is None:
        return JsonResponse(
            error_body("NOT_AUTHENTICATED", "Authentication credentials were not provided."), status=401
        )
    if not await Notebook.objects.filter(id=notebook_id, owner=user).aexists():
        return JsonResponse(error_body("NOT_FOUND", "Not found."), status=404)
    cursor = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    if not cursor or not EVENT_ID.fullmatch(cursor):
        cursor = await event_cursor(notebook_id)
    response = StreamingHttpResponse(
        event_stream(notebook_id, cursor, settings.QUIRE_SSE_HEARTBEAT_SECONDS),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


# --- questions


class CitationSerializer(serializers.Serializer[dict[str, Any]]):
    number = serializers.IntegerField()
    source_id = serializers.CharField()
    source_title = serializers.CharField()
    chunk_id = serializers.IntegerField()
    position = serializers.IntegerField()
    page = serializers.IntegerField(allow_null=True)
    time = serializers.FloatField(allow_null=True, required=False)
    time_label = serializers.CharField(allow_null=True, required=False)
    quote = serializers.CharField()
    start = serializers.IntegerField()
    end = serializers.IntegerField()


class QuestionSerializer(serializers.ModelSerializer[Question]):
    notebook = serializers.UUIDField(source="notebook_id")
    conversation = serializers.UUIDField(source="previous_id", allow_null=True)
    note = serializers.UUIDField(source="note_id", allow_null=True)
    citations = CitationSerializer(many=True)
    job = serializers.SerializerMethodField()

    class Meta:
        model = Question
        fields = [
            "id", "notebook", "question", "source_ids", "conversation", "status", "answered", "answer",
            "citations", "answerer", "note", "error", "error_code", "job", "created_at", "completed_at",
        ]  # fmt: skip

    def get_job(self, question: Question) -> dict[str, Any] | None:
        jobs = self.context.get("jobs")
        job = jobs.get(question.job_id) if jobs is not None else Job.objects.filter(id=question.job_id).first()
        return dict(JobSerializer(job).data) if job else None


def _question(request: Request, question_id: Any) -> Question:
    return get_object_or_404(Question, id=question_id, owner=request.user)


class QuestionListCreateApi(APIView):
    throttle_classes = [EnqueueThrottle]

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        question = serializers.CharField(max_length=2000)
        source_ids = serializers.ListField(child=serializers.UUIDField(), required=False, default=list)
        conversation = serializers.UUIDField(required=False, allow_null=True, default=None)

    def get_throttles(self) -> list[Any]:
        return super().get_throttles() if self.request.method == "POST" else []

    @swagger_auto_schema(responses={200: page_of(QuestionSerializer)})
    def get(self, request: Request, notebook_id: str) -> Response:
        notebook = _notebook(request, notebook_id)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(
            selectors.questions_of(notebook=notebook, owner=request.user), request, view=self
        )
        questions = list(page or [])
        jobs = {j.id: j for j in Job.objects.filter(id__in=[q.job_id for q in questions if q.job_id])}
        data = QuestionSerializer(questions, many=True, context={"jobs": jobs}).data
        return paginator.get_paginated_response(data)

    @swagger_auto_schema(request_body=InputSerializer, responses={202: QuestionSerializer})
    def post(self, request: Request, notebook_id: str) -> Response:
        notebook = _notebook(request, notebook_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        question = ask.question_ask(
            notebook=notebook,
            owner=request.user,
            question=values["question"],
            source_ids=[str(s) for s in values["source_ids"]],
            previous_id=str(values["conversation"]) if values["conversation"] else None,
        )
        return Response(QuestionSerializer(question).data, status=status.HTTP_202_ACCEPTED)


class QuestionDetailApi(APIView):
    @swagger_auto_schema(responses={200: QuestionSerializer})
    def get(self, request: Request, question_id: str) -> Response:
        return Response(QuestionSerializer(_question(request, question_id)).data)

    def delete(self, request: Request, question_id: str) -> Response:
        ask.question_delete(question=_question(request, question_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class QuestionNoteApi(APIView):
    @swagger_auto_schema(request_body=no_body, responses={201: SourceOutputSerializer})
    def post(self, request: Request, question_id: str) -> Response:
        note = ask.question_save_as_note(question=_question(request, question_id))
        return Response(SourceOutputSerializer(note).data, status=status.HTTP_201_CREATED)
