"""The Job state machine: every write to a Job row. Every status change is a guarded
transition, a conditional UPDATE from the statuses it may leave, so a late or duplicate signal
can never move a finished job back; fences (the attempt, the worker) keep a stale run from
changing a newer one."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, F, Model
from django.utils import timezone

from backend.errors import Conflict, Overloaded
from backend.models import Batch, Job
from backend.runtime import dispatch, events
from backend.runtime import rq as rq_adapter
from backend.runtime.dispatch import job_push
from backend.runtime.kinds import JobKind, get_kind

logger = logging.getLogger(__name__)

S = Job.Status


class QuotaExceeded(Overloaded):
    code = "QUOTA_EXCEEDED"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


def quota_check(*, owner: Any, kind: str) -> None:
    """Refuse a job of an expensive kind when the user has too many running or started too many
    today. Call inside the transaction that enqueues: the lock on the user's row serialises
    concurrent requests of one user, so 50 parallel requests against a quota of 2 admit 2."""
    quotas = settings.QUIRE_QUOTAS
    if owner is None or kind not in quotas["KINDS"]:
        return
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    mine = Job.objects.filter(owner=owner, kind__in=quotas["KINDS"])
    if mine.filter(status__in=Job.ACTIVE).count() >= quotas["CONCURRENT"]:
        raise QuotaExceeded(
            f"You already have {quotas['CONCURRENT']} reports or podcasts in progress; wait for one to finish.",
            retry_after=30,
        )
    day_ago = timezone.now() - timedelta(days=1)
    today = mine.filter(created_at__gte=day_ago)
    if today.count() >= quotas["DAILY"]:
        oldest = today.order_by("created_at").values_list("created_at", flat=True).first() or timezone.now()
        wait = int((oldest + timedelta(days=1) - timezone.now()).total_seconds()) + 1
        raise QuotaExceeded(
            f"You have started {quotas['DAILY']} reports or podcasts in the last 24 hours.", retry_after=max(wait, 1)
        )


class JobNotCancellable(Conflict):
    code = "JOB_NOT_CANCELLABLE"

    def __init__(self, job: Job) -> None:
        super().__init__(f"The job is already {job.status} and cannot be cancelled.", details={"status": job.status})
        self.job = job


def batch_create(*, owner: Any, notebook_id: Any = None, label: str = "") -> Batch:
    return Batch.objects.create(owner=owner, notebook_id=notebook_id, label=label)


@transaction.atomic
def job_enqueue(
    *,
    kind: JobKind,
    kwargs: dict[str, Any],
    owner: Any = None,
    subject: Model | None = None,
    notebook_id: Any = None,
    batch: Batch | None = None,
    depends_on: Sequence[str] = (),
    job_id: str | None = None,
    priority: str = Job.Priority.INTERACTIVE,
) -> Job:
    """Record the job, then hand it to RQ after commit (a job that ran before the commit
    would find nothing). A given ``job_id`` makes the call idempotent. On a fair queue the
    row joins the backlog and the dispatcher decides when RQ gets it (runtime/dispatch.py)."""
    quota_check(owner=owner, kind=kind.kind)
    fair = dispatch.is_fair(kind.queue)
    job, created = Job.objects.get_or_create(
        id=job_id or str(uuid.uuid4()),
        defaults={
            "kind": kind.kind,
            "queue": kind.queue,
            "func": kind.path,
            "kwargs": kwargs,
            "timeout": kind.timeout,
            "retry_intervals": kind.intervals(),
            "depends_on": list(depends_on),
            "max_attempts": kind.max_attempts,
            "owner": owner,
            "subject_type": subject._meta.label_lower if subject is not None else "",
            "subject_id": str(subject.pk) if subject is not None else "",
            "notebook_id": notebook_id,
            "batch": batch,
            "priority": priority,
            # Off the fair queues (or with fairness off) a row is handed to RQ on commit: it is
            # never the dispatchers' to push, even on a host whose settings differ.
            "dispatched_at": None if fair else timezone.now(),
            "message": "Waiting for a worker" if not depends_on else "Waiting for other jobs",
        },
    )
    if created and fair:
        waiting = job
        transaction.on_commit(lambda: events.publish_job(waiting), robust=True)
        _dispatch_after_commit(kind.queue)
    elif created:
        new, named = job, job_id is not None
        transaction.on_commit(lambda: job_push(job_id=new.id, new=new, replace=named))
    return job


def _dispatch_after_commit(queue: str) -> None:
    """After commit, never inside the transaction (the dispatcher's other hosts could not see
    the row yet). A dispatch that fails is the dispatcher's to log, never the request's. An
    upload of 20 files asks 20 times; all but the first find RQ full and return (a count)."""
    transaction.on_commit(lambda: dispatch.dispatch(queue), robust=True)


def _run_hook(job: Job) -> None:
    """The kind's status hook (``on_change``); a failing hook is logged, never raised."""
    kind = get_kind(job.kind)
    if kind is not None and kind.on_change is not None:
        try:
            kind.on_change(job)
        except Exception:
            logger.exception("Status hook of %s failed for job %s", job.kind, job.id)


def _after_change(job: Job) -> None:
    _run_hook(job)
    events.publish_job(job)


def _fence(attempt: int | None = None, worker_name: str | None = None) -> dict[str, Any]:
    """Filters that keep a stale run from changing a newer one: a worker cut off from the
    network may wake up after the reconciler gave its job to another worker. The wrapper
    speaks for its attempt, a worker for the jobs it started."""
    fence: dict[str, Any] = {}
    if attempt is not None:
        fence["attempts"] = attempt
    if worker_name is not None:
        fence["worker_name"] = worker_name
    return fence


def _transition(
    job_id: str, sources: Iterable[str], target: str, fence: dict[str, Any] | None = None, **fields: Any
) -> Job | None:
    now = timezone.now()
    if target in Job.TERMINAL:
        fields.setdefault("finished_at", now)
    updated = (
        Job.objects.filter(id=job_id, status__in=list(sources), **(fence or {}))
        .update(status=target, updated_at=now, **fields)
    )  # fmt: skip
    if not updated:
        return None
    job = Job.objects.get(id=job_id)
    _after_change(job)
    return job


def job_start(*, job_id: str, worker_name: str) -> Job | None:
    now = timezone.now()
    return _transition(
        job_id,
        (S.QUEUED, S.RETRYING),
        S.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        worker_name=worker_name,
        led_by="",  # a companion lost with its worker runs again as a job of its own
        message="Running",
    )


def job_progress(
    *, job_id: str, percent: int | None = None, message: str | None = None, attempt: int | None = None
) -> bool:
    """Record progress; False when the job is no longer running (cancelled), or no longer
    running this attempt (superseded after its worker was lost), so the caller stops."""
    fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if percent is not None:
        fields["progress"] = max(0, min(100, int(percent)))
    if message is not None:
        fields["message"] = message[:255]
    updated = Job.objects.filter(id=job_id, status=S.RUNNING, **_fence(attempt)).update(
        updated_at=timezone.now(), **fields
    )
    if not updated:
        return False
    if percent is not None or message is not None:
        events.publish_job(Job.objects.get(id=job_id))
    return True


def job_succeed(*, job_id: str, result: Any = None, attempt: int | None = None) -> Job | None:
    return _transition(
        job_id, (S.RUNNING,), S.SUCCEEDED, _fence(attempt),
        progress=100, message="Done", result=result, error="", error_code="",
    )  # fmt: skip


def job_retry(
    *, job_id: str, error_code: str, error: str, attempt: int | None = None, worker_name: str | None = None
) -> Job | None:
    return _transition(
        job_id,
        (S.RUNNING,),
        S.RETRYING,
        _fence(attempt, worker_name),
        error_code=error_code,
        error=error,
        message="Attempt failed; retrying",
    )


def job_fail(
    *,
    job_id: str,
    error_code: str,
    error: str,
    sources: Iterable[str] = (S.RUNNING,),
    attempt: int | None = None,
    worker_name: str | None = None,
) -> Job | None:
    return _transition(
        job_id, sources, S.FAILED, _fence(attempt, worker_name), error_code=error_code, error=error, message="Failed"
    )


def companions_claim(*, lead: Job, job_ids: Sequence[str], worker_name: str) -> list[Job]:
    """Take these waiting rows of the fair backlog along with ``lead`` (runtime/companions.py):
    each that still waits turns running under the lead's worker, with an attempt of its own.
    One conditional UPDATE: a row a dispatcher claimed or a user cancelled meanwhile is left."""
    now = timezone.now()
    Job.objects.filter(
        id__in=list(job_ids), status=S.QUEUED, dispatched_at__isnull=True, alone=False, kind=lead.kind
    ).update(
        status=S.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        dispatched_at=now,
        updated_at=now,
        worker_name=worker_name,
        led_by=lead.id,
        message="Running",
    )
    taken = list(Job.objects.filter(id__in=list(job_ids), status=S.RUNNING, led_by=lead.id, started_at=now))
    for job in taken:
        _after_change(job)
    return taken


def job_requeue(
    *,
    job_id: str,
    attempt: int | None = None,
    worker_name: str | None = None,
    alone: bool = True,
    counted: bool = True,
    error_code: str = "",
    error: str = "",
) -> Job | None:
    """A running companion goes back to the fair backlog (its RQ-less way of being retried).
    ``counted=False``: the attempt it had did not happen as far as its budget goes (its group
    crashed or its lead was cancelled, through no fault of its own)."""
    fields: dict[str, Any] = {
        "dispatched_at": None,
        "led_by": "",
        "alone": alone,
        "started_at": None,
        "message": "Attempt failed; waiting to run again" if error_code else "Waiting for a worker",
    }
    if error_code:
        fields.update(error_code=error_code, error=error)
    if not counted:
        fields["attempts"] = F("attempts") - 1
    requeued = _transition(job_id, (S.RUNNING,), S.QUEUED, _fence(attempt, worker_name), **fields)
    if requeued is not None:
        transaction.on_commit(lambda: dispatch.dispatch(requeued.queue), robust=True)
    return requeued


# The error a group's members show after their process died with the group (a crash, a lost
# worker): written by the worker, the state machine and the reconciler alike.
GROUP_LOST = "The process running this job with others stopped unexpectedly; it runs again by itself."


def has_companions(*, lead_id: str, worker_name: str) -> bool:
    return Job.objects.filter(led_by=lead_id, worker_name=worker_name, status=S.RUNNING).exists()


def companions_release(*, lead_id: str, worker_name: str, crashed: bool) -> list[str]:
    """The lead's run ended before its companions did (its horse was killed or died, or the
    group's shared step raised): each goes back to the backlog, its attempt not counted. After a
    crash, which member caused it is unknown: each then runs alone, so only the culprit fails."""
    released = []
    for job in Job.objects.filter(led_by=lead_id, worker_name=worker_name, status=S.RUNNING):
        if job_requeue(
            job_id=job.id,
            attempt=job.attempts,
            worker_name=worker_name,
            alone=crashed,
            counted=False,
            error_code="WORKER_LOST" if crashed else "",
            error=GROUP_LOST if crashed else "",
        ):
            released.append(job.id)
    if released:
        logger.warning("Job %s ended before %s of its companions; they wait again", lead_id, len(released))
    return released


def job_lost(
    *, job_id: str, stopped: bool, will_retry: bool, timed_out: bool, worker_name: str | None = None
) -> Job | None:
    """RQ ended a job behind the wrapper's back (horse killed, stopped, or hard time-out).
    ``worker_name``: only if that worker still runs it (not a newer attempt elsewhere)."""
    if stopped:
        cancelled = _transition(job_id, (S.RUNNING,), S.CANCELLED, _fence(worker_name=worker_name), message="Cancelled")
        if cancelled is None:  # cancelled through the API before the horse was killed
            job_settled(job_id=job_id)
        return cancelled
    code, error = (
        ("TIMEOUT", "The job ran longer than its time limit and was stopped.")
        if timed_out
        else ("WORKER_LOST", "The worker running this job stopped unexpectedly.")
    )
    if will_retry:
        return job_retry(job_id=job_id, error_code=code, error=error, worker_name=worker_name)
    return job_fail(job_id=job_id, error_code=code, error=error, worker_name=worker_name)


def job_settled(*, job_id: str) -> None:
    """The code that ran a cancelled job has stopped for good (it returned, or its horse was
    killed). The status hook ran when the row turned cancelled, possibly while the job was
    still writing; it runs once more now, so it can remove whatever the run wrote after that.
    Status hooks are idempotent, so a second pass is safe."""
    job = Job.objects.filter(id=job_id, status=S.CANCELLED).first()
    if job is not None:
        _run_hook(job)


def job_cancel(*, job: Job) -> Job:
    """Cancel a waiting job, or stop a running one (its work-horse is killed)."""
    cancelled = _transition(job.id, Job.ACTIVE, S.CANCELLED, message="Cancelled")
    if cancelled is None:
        job.refresh_from_db()
        raise JobNotCancellable(job)
    try:
        rq_adapter.cancel(job.id)
    except Exception:
        # The row already says cancelled, and a job checks its row before and while it runs.
        logger.warning("Could not cancel job %s in Redis", job.id, exc_info=True)
    return cancelled


def jobs_cancel_active(*, job_ids: Iterable[str]) -> None:
    """Stop whatever of these jobs still runs or waits (before deleting what they work on); a
    job that ends meanwhile is fine."""
    for job in Job.objects.filter(id__in=[i for i in job_ids if i], status__in=Job.ACTIVE):
        try:
            job_cancel(job=job)
        except JobNotCancellable:
            pass


def subject_follow_job(
    job: Job, subjects: Any, *, working: str, done: str, failed: str, cancelled: str, pending: str
) -> int:
    """The usual status hook: a generated thing (report, podcast, question) follows its job.
    ``subjects`` is the subject's queryset filtered to this job; a finished subject is never
    unmade. Returns how many rows turned failed or cancelled (for hooks that clean up after)."""
    now = timezone.now()
    if job.status in Job.ACTIVE:
        # Only while the job is still as this hook saw it: a hook that comes late (after a cancel,
        # or a cancel and a run again) changes nothing.
        as_seen = Exists(Job.objects.filter(id=job.id, attempts=job.attempts, status=job.status))
        if job.status != S.QUEUED:
            subjects.filter(status=pending).filter(as_seen).update(status=working, updated_at=now)
        # A failed or cancelled job run again (job_retry_now) takes its subject back to waiting,
        # then to work, so the retention sweep does not take it for an old failure meanwhile.
        subjects.filter(status__in=(failed, cancelled)).filter(as_seen).update(
            status=pending if job.status == S.QUEUED else working, error="", error_code="", updated_at=now
        )
    elif job.status in (S.FAILED, S.CANCELLED):
        was_cancelled = job.status == S.CANCELLED
        return int(
            subjects.exclude(status=done).update(
                status=cancelled if was_cancelled else failed,
                error="Generation was cancelled." if was_cancelled else job.error,
                error_code="CANCELLED" if was_cancelled else job.error_code,
                updated_at=now,
            )
        )
    return 0


def job_retry_now(*, job: Job) -> Job:
    """Admin action: run a failed or cancelled job again with a fresh attempt budget. The
    attempt count goes on (not back to 0), so a stale run of an earlier attempt stays fenced."""
    kind = get_kind(job.kind)
    budget = kind.max_attempts if kind is not None else job.max_attempts
    updated = Job.objects.filter(id=job.id, status__in=(S.FAILED, S.CANCELLED)).update(
        status=S.QUEUED,
        dispatched_at=None,  # back into the fair backlog (ignored on the other queues)
        max_attempts=F("attempts") + budget,
        progress=0,
        error="",
        error_code="",
        finished_at=None,
        message="Waiting for a worker",
        updated_at=timezone.now(),
    )
    job.refresh_from_db()
    if updated:
        _after_change(job)
        if dispatch.is_fair(job.queue):
            transaction.on_commit(lambda: dispatch.dispatch(job.queue), robust=True)
        else:
            job_push(job_id=job.id)
    return job


class BatchStillRunning(Conflict):
    code = "BATCH_RUNNING"


def batch_retry_failed(*, batch: Batch) -> list[str]:
    """Run every failed job of the batch again (each with a fresh attempt budget, as the
    admin's retry); the succeeded and cancelled ones are left alone. Refused while any job of
    the batch is still waiting or running: a retry then would race the batch's own end."""
    jobs = batch.jobs.all()
    if jobs.filter(status__in=Job.ACTIVE).exists():
        raise BatchStillRunning("The batch is still running; retry its failed jobs once it has ended.")
    retried: list[str] = []
    with transaction.atomic():
        for job in jobs.filter(status=S.FAILED).order_by("created_at"):
            if job_retry_now(job=job).status == S.QUEUED:
                retried.append(job.id)
    return retried
