from typing import Any

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from backend.artifact_apis import ArtifactDetailApi, ArtifactListCreateApi, ArtifactSerializer
from backend.errors import Conflict, DomainError
from backend.http import IgnoreFormatParameter
from notebooks import selectors as notebook_selectors
from reports import selectors, services
from reports.models import Report


class ReportSerializer(ArtifactSerializer):
    class Meta:
        model = Report
        fields = [*ArtifactSerializer.FIELDS, "topic", "sections", "generator"]


class ReportDetailSerializer(ReportSerializer):
    class Meta(ReportSerializer.Meta):
        fields = [*ReportSerializer.Meta.fields, "markdown", "citations", "warnings"]


class ReportInputSerializer(serializers.Serializer[dict[str, Any]]):
    topic = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    title = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    length = serializers.ChoiceField(choices=["short", "medium", "long"], default="medium")
    style = serializers.ChoiceField(choices=["summary", "briefing", "study-guide"], default="summary")  # type: ignore[assignment]
    source_ids = serializers.ListField(child=serializers.UUIDField(), required=False, default=list)


class ReportListCreateApi(ArtifactListCreateApi):
    serializer = ReportSerializer
    detail_serializer = ReportDetailSerializer
    input_serializer = ReportInputSerializer
    notebooks = staticmethod(notebook_selectors.notebooks_of)
    of_notebook = staticmethod(selectors.reports_of_notebook)
    create = staticmethod(services.report_create)


class ReportDetailApi(ArtifactDetailApi):
    serializer = ReportDetailSerializer
    lookup = "report_id"
    of_user = staticmethod(selectors.reports_of)
    delete_one = staticmethod(services.report_delete)


class ReportDownloadApi(APIView):
    content_negotiation_class = IgnoreFormatParameter

    def get(self, request: Request, report_id: str) -> HttpResponse:
        report = get_object_or_404(selectors.reports_of(user=request.user), id=report_id)
        fmt = request.query_params.get("format", "md")
        if fmt not in ("md", "html"):
            raise DomainError("format must be md or html.", code="BAD_FORMAT")
        if report.status != Report.Status.COMPLETED:
            raise Conflict(f"The report is {report.status}; nothing to download yet.", code="NOT_READY")
        body, content_type = (
            (report.markdown, "text/markdown; charset=utf-8")
            if fmt == "md"
            else (report.html, "text/html; charset=utf-8")
        )
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="report-{report.id}.{fmt}"'
        return response
