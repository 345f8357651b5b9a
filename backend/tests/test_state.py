"""The Job state machine alone (backend/runtime/state.py): guarded transitions and fences, on
the database only. Redis is replaced by recorders at its two seams (the event stream and RQ)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from backend.models import Job
from backend.runtime import state

S = Job.Status
_ids = itertools.count()


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(state.events, "publish_job", lambda job: seen.append((job.id, job.status)))
    monkeypatch.setattr(state.rq_adapter, "cancel", lambda job_id: seen.append((job_id, "rq-cancel")))
    return seen


@pytest.fixture
def make_job(make_user: Any) -> Any:
    owner = make_user()

    def make(**fields: Any) -> Job:
        defaults: dict[str, Any] = {
            "id": f"job-{next(_ids)}",
            "kind": "tests.steps",
            "queue": "default",
            "func": "tests.jobs.steps",
            "timeout": 60,
            "owner": owner,
            "status": S.QUEUED,
            "max_attempts": 3,
        }
        return Job.objects.create(**{**defaults, **fields})

    return make


@pytest.mark.django_db
def test_a_job_starts_only_from_waiting_and_counts_its_attempts(make_job: Any, published: list[Any]) -> None:
    job = make_job()
    started = state.job_start(job_id=job.id, worker_name="w1")
    assert started is not None and (started.status, started.attempts, started.worker_name) == (S.RUNNING, 1, "w1")
    assert state.job_start(job_id=job.id, worker_name="w2") is None  # a duplicate delivery
    assert Job.objects.get(id=job.id).worker_name == "w1"
    assert published == [(job.id, S.RUNNING)]


@pytest.mark.django_db
def test_a_finished_job_never_moves_back(make_job: Any, published: list[Any]) -> None:
    job = make_job(status=S.SUCCEEDED, attempts=1)
    assert state.job_start(job_id=job.id, worker_name="w") is None
    assert state.job_fail(job_id=job.id, error_code="X", error="late") is None
    assert state.job_retry(job_id=job.id, error_code="X", error="late") is None
    assert not state.job_progress(job_id=job.id, percent=50)
    with pytest.raises(state.JobNotCancellable) as refused:
        state.job_cancel(job=job)
    assert refused.value.code == "JOB_NOT_CANCELLABLE"
    assert Job.objects.get(id=job.id).status == S.SUCCEEDED and published == []


@pytest.mark.django_db
def test_a_stale_attempt_cannot_change_the_newer_one(make_job: Any, published: list[Any]) -> None:
    # Attempt 1's worker was lost; the reconciler ran attempt 2 elsewhere; attempt 1 wakes up.
    job = make_job(status=S.RUNNING, attempts=2, worker_name="w2")
    assert not state.job_progress(job_id=job.id, percent=90, attempt=1)
    assert state.job_succeed(job_id=job.id, attempt=1) is None
    assert state.job_lost(job_id=job.id, stopped=False, will_retry=True, timed_out=False, worker_name="w1") is None
    assert Job.objects.get(id=job.id).status == S.RUNNING
    # The current attempt still can.
    assert state.job_progress(job_id=job.id, percent=140, message="Almost", attempt=2)
    assert Job.objects.get(id=job.id).progress == 100  # clamped
    done = state.job_succeed(job_id=job.id, attempt=2, result={"chunks": 3})
    assert done is not None and (done.status, done.result, done.finished_at is not None) == (
        S.SUCCEEDED,
        {"chunks": 3},
        True,
    )
    assert published == [(job.id, S.RUNNING), (job.id, S.SUCCEEDED)]  # the progress report, the end


@pytest.mark.django_db
def test_a_lost_job_is_retried_failed_or_cancelled_as_rq_says(make_job: Any, published: list[Any]) -> None:
    retried, failed, stopped = (make_job(status=S.RUNNING, attempts=1, worker_name="w") for _ in range(3))
    assert state.job_lost(job_id=retried.id, stopped=False, will_retry=True, timed_out=False).status == S.RETRYING
    lost = state.job_lost(job_id=failed.id, stopped=False, will_retry=False, timed_out=True)
    assert (lost.status, lost.error_code) == (S.FAILED, "TIMEOUT")
    assert state.job_lost(job_id=stopped.id, stopped=True, will_retry=False, timed_out=False).status == S.CANCELLED
    assert Job.objects.get(id=retried.id).error_code == "WORKER_LOST"


@pytest.mark.django_db
def test_cancelling_a_running_job_reaches_rq_and_its_next_progress_stops_it(
    make_job: Any, published: list[Any]
) -> None:
    job = make_job(status=S.RUNNING, attempts=1)
    cancelled = state.job_cancel(job=job)
    assert cancelled.status == S.CANCELLED and cancelled.finished_at is not None
    assert published == [(job.id, S.CANCELLED), (job.id, "rq-cancel")]
    assert not state.job_progress(job_id=job.id, percent=60)  # the running code stops at its next report
