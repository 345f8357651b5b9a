"""Reads of reports. A report's notebook is read through ``notebooks.selectors``: this app
never queries another app's models (checked by import-linter, pyproject.toml)."""

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from backend.models import Job
from reports.models import Report


def reports_of_notebook(*, notebook: Any) -> QuerySet[Report]:
    return Report.objects.filter(notebook=notebook)


def reports_of(*, user: Any) -> QuerySet[Report]:
    """Every report ``user`` asked for: the only ones a request may reach (anyone else's is a 404)."""
    return Report.objects.filter(owner=user)


def report_job(*, report: Report, jobs: dict[Any, Job] | None = None) -> Job | None:
    """The report's Job row, from ``jobs`` (see ``jobs_of``) when a list has loaded them."""
    if not report.job_id:
        return None
    if jobs is not None:
        return jobs.get(report.job_id)
    return Job.objects.filter(id=report.job_id).first()


def jobs_of(*, reports: Iterable[Report]) -> dict[Any, Job]:
    """The Job rows of a page of reports in one query (a list does not query once per row)."""
    ids = {r.job_id for r in reports if r.job_id}
    return {job.id: job for job in Job.objects.filter(id__in=ids)} if ids else {}
