"""The Job state machine alone (backend/runtime/state.py): guarded transitions and fences, on
the database only. Redis is replaced by recorders at its two seams (the event stream and RQ)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from backend.models import Job
from backend.runtime import state
from reports.jobs import report_follow_job
from reports.models import Report
from tests import factories

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


@pytest.mark.django_db
def test_a_lead_takes_along_only_waiting_rows_of_its_kind_each_with_an_attempt_of_its_own(
    make_job: Any, published: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state.dispatch, "dispatch", lambda queue: [])
    lead = state.job_start(job_id=make_job().id, worker_name="w1")
    assert lead is not None
    waiting = make_job()
    handed_to_rq = make_job(dispatched_at=lead.started_at)
    alone = make_job(alone=True)
    other_kind = make_job(kind="tests.other")
    cancelled = make_job(status=S.CANCELLED)
    ids = [waiting.id, handed_to_rq.id, alone.id, other_kind.id, cancelled.id]
    taken = state.companions_claim(lead=lead, job_ids=ids, worker_name="w1")
    assert [job.id for job in taken] == [waiting.id]
    row = Job.objects.get(id=waiting.id)
    assert (row.status, row.attempts, row.worker_name, row.led_by) == (S.RUNNING, 1, "w1", lead.id)
    assert row.dispatched_at is not None  # out of the backlog: no dispatcher hands it to RQ too
    assert state.companions_claim(lead=lead, job_ids=ids, worker_name="w1") == []  # never twice
    assert Job.objects.filter(id__in=ids[1:], status=S.RUNNING).count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("crashed", [True, False])
def test_companions_of_a_lead_that_ended_early_wait_again_uncounted(
    make_job: Any, published: list[Any], monkeypatch: pytest.MonkeyPatch, crashed: bool
) -> None:
    monkeypatch.setattr(state.dispatch, "dispatch", lambda queue: [])
    lead = state.job_start(job_id=make_job().id, worker_name="w1")
    assert lead is not None
    companion = make_job()
    state.companions_claim(lead=lead, job_ids=[companion.id], worker_name="w1")
    # Another worker's release (a stale signal) changes nothing.
    assert state.companions_release(lead_id=lead.id, worker_name="w2", crashed=crashed) == []
    assert state.companions_release(lead_id=lead.id, worker_name="w1", crashed=crashed) == [companion.id]
    row = Job.objects.get(id=companion.id)
    assert (row.status, row.attempts, row.led_by, row.dispatched_at, row.alone) == (S.QUEUED, 0, "", None, crashed)
    assert row.error_code == ("WORKER_LOST" if crashed else "")
    # Run again as a job of its own, it starts as any job does.
    again = state.job_start(job_id=companion.id, worker_name="w1")
    assert again is not None and (again.attempts, again.led_by) == (1, "")


@pytest.fixture
def report_of(make_job: Any) -> Any:
    def make() -> tuple[Report, Job]:
        job = make_job(kind="reports.generate_report")
        report = factories.report(factories.notebook(job.owner), job_id=job.id)
        Job.objects.filter(id=job.id).update(subject_id=str(report.id))
        return report, Job.objects.get(id=job.id)

    return make


@pytest.mark.django_db
def test_a_failed_report_run_again_goes_back_to_generating_until_its_job_ends(
    report_of: Any, published: list[Any]
) -> None:
    report, job = report_of()
    state.job_start(job_id=job.id, worker_name="w")
    assert Report.objects.get(id=report.id).status == Report.Status.GENERATING
    state.job_fail(job_id=job.id, error_code="LLM_DOWN", error="The model is down.")
    failed = Report.objects.get(id=report.id)
    assert (failed.status, failed.error_code) == (Report.Status.FAILED, "LLM_DOWN")

    state.job_retry_now(job=Job.objects.get(id=job.id))  # the admin's "run again"
    waiting = Report.objects.get(id=report.id)
    assert (waiting.status, waiting.error, waiting.error_code) == (Report.Status.PENDING, "", "")
    state.job_start(job_id=job.id, worker_name="w")
    again = Report.objects.get(id=report.id)
    assert (again.status, again.error, again.error_code) == (Report.Status.GENERATING, "", "")


@pytest.mark.django_db
def test_a_start_whose_hook_comes_after_a_cancel_does_not_undo_it(report_of: Any, published: list[Any]) -> None:
    report, job = report_of()
    started = state.job_start(job_id=job.id, worker_name="w")
    assert started is not None
    state.job_cancel(job=Job.objects.get(id=job.id))
    assert Report.objects.get(id=report.id).status == Report.Status.CANCELLED
    report_follow_job(started)  # the start's hook, late: the job it saw running is cancelled now
    assert Report.objects.get(id=report.id).status == Report.Status.CANCELLED


@pytest.mark.django_db
def test_a_start_whose_hook_comes_after_a_cancel_and_a_run_again_leaves_the_report_waiting(
    report_of: Any, published: list[Any]
) -> None:
    report, job = report_of()
    started = state.job_start(job_id=job.id, worker_name="w")
    assert started is not None
    state.job_cancel(job=Job.objects.get(id=job.id))
    state.job_retry_now(job=Job.objects.get(id=job.id))  # queued again, the same attempt count
    assert Report.objects.get(id=report.id).status == Report.Status.PENDING
    report_follow_job(started)  # the first start's hook, late: its job waits, it does not run
    assert Report.objects.get(id=report.id).status == Report.Status.PENDING
