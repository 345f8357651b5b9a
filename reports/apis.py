from typing import Any

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_yasg.utils import swagger_auto_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.errors import DomainError
from backend.http import IgnoreFormatParameter
from backend.models import Job
from backend.serializers import JobSerializer
from backend.throttles import EnqueueThrottle
from notebooks import selectors as notebook_selectors
from reports import selectors, services
from reports.models import Report


class ReportSerializer(serializers.ModelSerializer[Report]):
    notebook = serializers.UUIDField(source="notebook_id")
    job = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Report
        fields = [
            "id", "notebook", "title", "topic", "options", "status", "progress", "sections", "word_count",
            "generator", "error", "error_code", "job", "created_at", "completed_at",
        ]  # fmt: skip

    def _job(self, report: Report) -> Job | None:
        return selectors.report_job(report=report, jobs=self.context.get("jobs"))

    def get_job(self, report: Report) -> dict[str, Any] | None:
        job = self._job(report)
        return dict(JobSerializer(job).data) if job else None

    def get_progress(self, report: Report) -> int:
        if report.status == Report.Status.COMPLETED:
            return 100
        job = self._job(report)
        return job.progress if job else 0


class ReportDetailSerializer(ReportSerializer):
    class Meta(ReportSerializer.Meta):
        fields = [*ReportSerializer.Meta.fields, "markdown", "citations", "warnings"]


class ReportInputSerializer(serializers.Serializer[dict[str, Any]]):
    topic = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    title = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    length = serializers.ChoiceField(choices=["short", "medium", "long"], default="medium")
    style = serializers.ChoiceField(choices=["summary", "briefing", "study-guide"], default="summary")  # type: ignore[assignment]
    source_ids = serializers.ListField(child=serializers.UUIDField(), required=False, default=list)


class ReportListCreateApi(APIView):
    throttle_classes = [EnqueueThrottle]

    @swagger_auto_schema(responses={200: ReportSerializer(many=True)})
    def get(self, request: Request, notebook_id: str) -> Response:
        notebook = get_object_or_404(notebook_selectors.notebooks_of(user=request.user), id=notebook_id)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.reports_of_notebook(notebook=notebook), request, view=self) or []
        jobs = selectors.jobs_of(reports=page)
        return paginator.get_paginated_response(ReportSerializer(page, many=True, context={"jobs": jobs}).data)

    @swagger_auto_schema(request_body=ReportInputSerializer, responses={202: ReportDetailSerializer})
    def post(self, request: Request, notebook_id: str) -> Response:
        notebook = get_object_or_404(notebook_selectors.notebooks_of(user=request.user), id=notebook_id)
        data = ReportInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        report = services.report_create(
            notebook=notebook,
            owner=request.user,
            topic=values["topic"],
            title=values["title"],
            length=values["length"],
            style=values["style"],
            source_ids=[str(s) for s in values["source_ids"]],
        )
        return Response(ReportDetailSerializer(report).data, status=status.HTTP_202_ACCEPTED)


def _report(request: Request, report_id: str) -> Report:
    return get_object_or_404(selectors.reports_of(user=request.user), id=report_id)


class ReportDetailApi(APIView):
    @swagger_auto_schema(responses={200: ReportDetailSerializer})
    def get(self, request: Request, report_id: str) -> Response:
        return Response(ReportDetailSerializer(_report(request, report_id)).data)

    def delete(self, request: Request, report_id: str) -> Response:
        services.report_delete(report=_report(request, report_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReportDownloadApi(APIView):
    content_negotiation_class = IgnoreFormatParameter

    def get(self, request: Request, report_id: str) -> HttpResponse:
        report = _report(request, report_id)
        fmt = request.query_params.get("format", "md")
        if fmt not in ("md", "html"):
            raise DomainError("format must be md or html.", code="BAD_FORMAT")
        if report.status != Report.Status.COMPLETED:
            raise DomainError(
                f"The report is {report.status}; nothing to download yet.", code="NOT_READY", status_code=409
            )
        body, content_type = (
            (report.markdown, "text/markdown; charset=utf-8")
            if fmt == "md"
            else (report.html, "text/html; charset=utf-8")
        )
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="report-{report.id}.{fmt}"'
        return response
