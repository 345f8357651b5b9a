from typing import Any

from backend.runtime import job
from reports import services


@job("reports.generate_report", queue="reports", on_change=services.report_follow_job)
def generate_report(*, report_id: str) -> dict[str, Any] | None:
    """Write a cited report from the notebook's passages."""
    return services.report_generate(report_id=report_id)


@job("maintenance.cleanup_old_reports", queue="maintenance", retries=1)
def cleanup_old_reports() -> dict[str, int]:
    """Remove old failed and cancelled reports (and completed ones when a retention is set)."""
    return services.reports_cleanup()
