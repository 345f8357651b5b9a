"""Jobs of the reports app beside the hook that moves a report's status (a job's whole effect
is in this file). A service imports the job it enqueues; a job imports its service in its body."""

from __future__ import annotations

from typing import Any

from backend.models import Job
from backend.runtime import job, subject_follow_job
from reports.models import Report


def report_follow_job(run: Job) -> None:
    """Status hook of reports.generate_report."""
    subject_follow_job(run, Report.objects.filter(id=run.subject_id, job_id=run.id), **Report.STATUS_OF_JOB)


@job("reports.generate_report", queue="reports", on_change=report_follow_job)
def report_generate(*, report_id: str) -> dict[str, Any] | None:
    """Write a cited report from the notebook's passages."""
    from reports import services

    return services.report_generate(report_id=report_id)


@job("maintenance.cleanup_old_reports", queue="maintenance", retries=1)
def reports_cleanup() -> dict[str, int]:
    """Remove old failed and cancelled reports (and completed ones when a retention is set)."""
    from reports import services

    return services.reports_cleanup()


# The dotted paths these jobs had until 2026-12 (RQ payloads and Job.func rows already queued
# hold them): kept importable for one release.
generate_report = report_generate
cleanup_old_reports = reports_cleanup
