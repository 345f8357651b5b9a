"""The Jobs app's own services (the job state machine itself is backend/runtime/state.py)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from backend.models import Batch, Job
from backend.runtime import progress


def jobs_purge(*, older_than_days: int) -> int:
    cutoff = timezone.now() - timedelta(days=older_than_days)
    progress(message="Deleting finished jobs")  # step boundaries: where crash tests strike
    deleted, _ = Job.objects.filter(status__in=Job.TERMINAL, finished_at__lt=cutoff).delete()
    progress(message="Deleting empty batches")
    Batch.objects.filter(created_at__lt=cutoff, jobs__isnull=True).delete()
    return deleted
