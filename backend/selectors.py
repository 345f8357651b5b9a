from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from backend.models import Artifact, Batch, Job


def jobs_of(*, user: Any, filters: dict[str, str] | None = None) -> QuerySet[Job]:
    qs = Job.objects.filter(owner=user)
    for field in ("status", "queue", "kind"):
        value = (filters or {}).get(field)
        if value:
            qs = qs.filter(**{field: value})
    notebook = (filters or {}).get("notebook")
    if notebook:
        qs = qs.filter(notebook_id=notebook)
    return qs.order_by("-created_at")


def batch_of(*, user: Any, batch_id: Any) -> Batch:
    return Batch.objects.get(owner=user, id=batch_id)


def artifact_jobs(*, artifacts: Iterable[Artifact]) -> dict[Any, Job]:
    """The Job rows of a page of reports or podcasts in one query (a list does not query once
    per row)."""
    ids = {a.job_id for a in artifacts if a.job_id}
    return {job.id: job for job in Job.objects.filter(id__in=ids)} if ids else {}
