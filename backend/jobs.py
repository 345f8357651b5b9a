"""Maintenance jobs of the job runtime itself (scheduled in settings.QUIRE_SCHEDULES)."""

from django.conf import settings

from backend import services
from backend.runtime import job
from backend.runtime.reconcile import reconcile


@job("maintenance.reconcile_jobs", queue="maintenance", retries=0, timeout=120)
def jobs_reconcile() -> dict[str, int]:
    """Re-enqueue or fail jobs that RQ lost or whose worker died."""
    return reconcile()


@job("maintenance.purge_jobs", queue="maintenance", retries=1, timeout=600)
def jobs_purge() -> dict[str, int]:
    """Delete finished Job rows older than the retention period."""
    return {"deleted": services.jobs_purge(older_than_days=settings.QUIRE_JOBS["RETENTION_DAYS"])}


# The dotted paths these jobs had until 2026-12 (RQ payloads and Job.func rows already queued
# hold them): kept importable for one release.
reconcile_jobs = jobs_reconcile
purge_jobs = jobs_purge
