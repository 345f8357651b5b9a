"""Coroutine jobs (``async def``): progress, cancellation, retries and fencing as for a plain
function, in an in-process worker and in a forked work-horse."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from backend.models import Job
from backend.runtime import JobCancelled, JobContext, aprogress, get_kind, job_cancel
from backend.runtime.context import enter, leave
from backend.runtime.events import stream_key
from tests import factories
from tests.helpers import wait_for

QUEUES = {"in-process": "tests.async_steps", "work-horse": "tests.async_steps_reports"}


def finished(job_id: str, timeout: float = 60) -> Job:
    return wait_for(
        lambda: Job.objects.filter(id=job_id, status__in=Job.TERMINAL).first(), timeout=timeout, message=f"job {job_id}"
    )


def step_messages(redis: Any, notebook_id: str, job_id: str) -> list[str]:
    """The progress messages the job published, in order, from the notebook's event stream."""
    messages = []
    for _id, fields in redis.xrange(stream_key(notebook_id)):
        data = json.loads(fields[b"data"])
        if data["id"] == job_id and data["message"].startswith("Step"):
            messages.append(data["message"])
    return messages


@pytest.mark.parametrize("where", list(QUEUES))
def test_a_coroutine_job_reports_progress_and_returns_its_result(workers: Any, redis_clean: Any, where: str) -> None:
    key, notebook_id = uuid.uuid4().hex, str(uuid.uuid4())
    kind = get_kind(QUEUES[where])
    assert kind is not None
    job = kind.enqueue({"key": key, "steps": 4, "seconds": 0.4}, notebook_id=notebook_id)
    done = finished(job.id)
    assert (done.status, done.result, done.attempts, done.progress) == ("succeeded", {"attempt": 1, "steps": 4}, 1, 100)
    assert step_messages(redis_clean, notebook_id, job.id) == ["Step 1/4", "Step 2/4", "Step 3/4", "Step 4/4"]
    assert redis_clean.get(f"{key}:effect") == b"1"


@pytest.mark.parametrize("where", list(QUEUES))
def test_a_failing_coroutine_job_is_retried(workers: Any, redis_clean: Any, where: str) -> None:
    key = uuid.uuid4().hex
    kind = get_kind(QUEUES[where])
    assert kind is not None
    job = kind.enqueue({"key": key, "steps": 2, "seconds": 0.1, "failures": 1})
    done = finished(job.id)
    assert (done.status, done.attempts, done.result) == ("succeeded", 2, {"attempt": 2, "steps": 2})
    assert redis_clean.get(f"{key}:attempts") == b"2"


@pytest.mark.parametrize("where", list(QUEUES))
def test_cancelling_a_running_coroutine_job_stops_it(workers: Any, redis_clean: Any, where: str) -> None:
    key = uuid.uuid4().hex
    kind = get_kind(QUEUES[where])
    assert kind is not None
    job = kind.enqueue({"key": key, "steps": 40, "seconds": 20})
    wait_for(lambda: Job.objects.filter(id=job.id, status="running", progress__gt=0).exists(), message="running")
    job_cancel(job=Job.objects.get(id=job.id))
    # In process: at its next aprogress (every 0.5 s); in a work-horse: the horse is killed.
    wait_for(lambda: redis_clean.hget(f"rq:job:{job.id}", "status") in (b"finished", b"stopped", b"failed"), timeout=10)
    assert redis_clean.get(f"{key}:effect") is None
    row = Job.objects.get(id=job.id)
    assert row.status == "cancelled" and row.progress < 100


@pytest.mark.django_db(transaction=True)
def test_a_stale_attempt_of_a_coroutine_job_is_fenced_off() -> None:
    """aprogress speaks for its attempt, as progress does: a run superseded by a newer attempt
    is told to stop, and leaves the newer run's row alone."""
    job = factories.job(
        kind="tests.async_steps", func="tests.jobs.async_steps", timeout=60, status="running", attempts=2,
        max_attempts=3, worker_name="host-b",
    )  # fmt: skip
    stale = enter(JobContext(job.id, attempt=1, max_attempts=3, kind=job.kind))
    try:
        with pytest.raises(JobCancelled):
            async_to_sync(aprogress)(40, "old")
    finally:
        leave(stale)
    assert Job.objects.get(id=job.id).message == ""
    current = enter(JobContext(job.id, attempt=2, max_attempts=3, kind=job.kind))
    try:
        async_to_sync(aprogress)(60, "new")
    finally:
        leave(current)
    row = Job.objects.get(id=job.id)
    assert (row.progress, row.message) == (60, "new")
