"""A Job renders its own event (backend/models.py, runtime/events.py); the API's serializer
must render the same fields the same way, so a page reads one shape from both."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from backend.models import Batch, Job
from backend.runtime.events import job_event
from backend.serializers import JobSerializer


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["queued", "running", "succeeded", "failed"])
def test_a_jobs_event_is_what_the_api_serializer_renders_for_events(
    make_user: Any, redis_clean: Any, status: str
) -> None:
    owner = make_user()
    batch = Batch.objects.create(owner=owner, notebook_id="6f1c2a9e-3b7d-4e51-9a0c-1d2e3f4a5b6c")
    now = timezone.now()
    job = Job.objects.create(
        id=f"job-{status}",
        kind="notebooks.process_source",
        queue="notebook_processing",
        func="notebooks.jobs.source_process",
        timeout=600,
        owner=owner,
        subject_type="notebooks.source",
        subject_id="42",
        notebook_id=batch.notebook_id,
        batch=batch,
        status=status,
        progress=100 if status == "succeeded" else 30,
        message="Embedding chunk 3/10",
        attempts=1,
        max_attempts=4,
        error="It broke." if status == "failed" else "",
        error_code="EXTRACTION_FAILED" if status == "failed" else "",
        result={"chunks": 7} if status == "succeeded" else None,
        started_at=None if status == "queued" else now - timedelta(seconds=3, microseconds=123456),
        finished_at=now if status in ("succeeded", "failed") else None,
    )
    job.refresh_from_db()
    expected = dict(JobSerializer(context={"event": True}).to_representation(job))
    assert job_event(job) == expected
    assert job_event(job)["subject"] == {"type": "source", "id": "42"}
    assert job_event(job)["created_at"].endswith("Z")
