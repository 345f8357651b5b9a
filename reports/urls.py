from django.urls import path

from reports import apis

urlpatterns = [
    path("notebooks/<uuid:notebook_id>/reports/", apis.ReportListCreateApi.as_view(), name="report-list"),
    path("reports/<uuid:report_id>/", apis.ReportDetailApi.as_view(), name="report-detail"),
    path("reports/<uuid:report_id>/download/", apis.ReportDownloadApi.as_view(), name="report-download"),
]
