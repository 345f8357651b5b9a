"""Bring Job rows and RQ back in line after crashes and Redis faults.

RQ delivers at least once but can forget: a SIGKILLed worker leaves its job "started" until
RQ's own cleanup (minutes later), and a Redis restart without AOF or a FLUSHALL loses every
queued job. The Job rows are the record, so this walks the non-terminal rows and, for each,
either leaves it (RQ has it in hand), puts it back into RQ, or ends it with a reason.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from backend.models import Job
from backend.runtime import dispatch
from backend.runtime import rq as rq_adapter
from backend.runtime.context import progress
from backend.runtime.dispatch import job_push
from backend.runtime.state import GROUP_LOST, job_fail, job_requeue, job_retry

logger = logging.getLogger(__name__)

S = Job.Status
WAITING_IN_RQ = {"queued", "scheduled", "started"}
SETTLE_SECONDS = 15


def reconcile() -> dict[str, int]:
    progress(message="Cleaning RQ registries")  # step boundaries: where crash tests strike
    rq_adapter.clean_registries(list(settings.RQ_QUEUES))
    current_job_of = {w.name: w.get_current_job_id() for w in rq_adapter.live_workers()}
    grace = settings.QUIRE_JOBS["RECONCILE_GRACE_SECONDS"]
    cutoff = timezone.now() - timedelta(seconds=grace)
    # "RQ says started but no worker has it" and "a retry is overdue" are also true for a few
    # milliseconds inside RQ's own bookkeeping (between clearing the worker's current job and
    # scheduling the retry; between the due time and the scheduler's next poll): act only on
    # rows that have been quiet for a while.
    settled = timezone.now() - timedelta(seconds=max(grace, SETTLE_SECONDS))
    counts = {"checked": 0, "pushed": 0, "lost_retried": 0, "lost_failed": 0}
    progress(message="Checking unfinished jobs")

    for job in Job.objects.filter(status__in=Job.ACTIVE, updated_at__lte=cutoff).order_by("created_at"):
        if job.status == S.QUEUED and job.dispatched_at is None and dispatch.is_fair(job.queue):
            continue  # the fair backlog: the dispatcher's, not RQ's (dispatched below)
        counts["checked"] += 1
        rq_status = rq_adapter.status_of(job.id)
        if job.status == S.RUNNING:
            if job.worker_name in current_job_of:
                if current_job_of[job.worker_name] in (job.id, job.led_by):
                    continue  # its worker is alive and on it (or on the job that took it along)
                if job.updated_at > settled and _in_a_group(job):
                    # Its worker is alive and just let go of a group (a killed or dead horse):
                    # the worker puts the members back uncounted within milliseconds
                    # (ForkingWorker.handle_job_failure); a retry now would race it.
                    continue
            if rq_status == "started" and job.worker_name in current_job_of:
                continue  # worker alive, between heartbeats
            _recover_lost(job, counts)
        elif (
            rq_status == "scheduled"
            and job.updated_at <= settled
            and (rq_adapter.overdue_seconds(job.queue, job.id) or 0) > max(grace, SETTLE_SECONDS)
        ):
            # A delayed retry nobody moved: the workers' scheduler is down or its lock is stale.
            if job_push(job_id=job.id):
                logger.warning("Re-enqueued overdue scheduled job %s (%s)", job.id, job.kind)
                counts["pushed"] += 1
        elif rq_status == "started" and job.updated_at <= settled and _abandoned(job.id):
            # RQ says started but no live worker has it: its worker lost Redis mid-job.
            if job_push(job_id=job.id):
                logger.warning("Re-enqueued abandoned job %s (%s)", job.id, job.kind)
                counts["pushed"] += 1
        elif rq_status in ("queued", "scheduled") and job.updated_at <= settled and _held_nowhere(job, rq_status):
            # RQ's job hash says it waits, but no queue or schedule holds it: a half-done
            # delete or a partial loss of Redis. Nothing would ever run it.
            if job_push(job_id=job.id):
                logger.warning("Re-enqueued job %s (%s): RQ had it %s but nowhere", job.id, job.kind, rq_status)
                counts["pushed"] += 1
        elif rq_status in WAITING_IN_RQ:
            continue
        elif rq_status == "deferred" and _dependencies_pending(job):
            continue
        elif job_push(job_id=job.id):
            logger.warning("Re-enqueued job %s (%s): RQ had it as %s", job.id, job.kind, rq_status)
            counts["pushed"] += 1
    # A backstop for the dispatch hooks (after an enqueue, at a job's start and end): a dispatcher
    # that could not reach Redis, or an overview whose batch ended while nothing else ran.
    progress(message="Dispatching waiting jobs")
    counts["dispatched"] = sum(len(dispatch.dispatch(queue)) for queue in settings.QUIRE_FAIR["QUEUES"])
    if any(counts[k] for k in ("pushed", "lost_retried", "lost_failed")):
        logger.warning("Reconciled jobs: %s", counts)
    return counts


def _in_a_group(job: Job) -> bool:
    return bool(job.led_by) or Job.objects.filter(led_by=job.id, status=S.RUNNING).exists()


def _held_nowhere(job: Job, rq_status: str) -> bool:
    # RQ changes a job's status and moves it (schedule -> queue, queue -> started) in one
    # transaction, so a status still the same after the look was not caught mid-move.
    return not rq_adapter.held(job.queue, job.id, rq_status) and rq_adapter.status_of(job.id) == rq_status


def _abandoned(job_id: str) -> bool:
    # A fresh look: RQ marks a job started and sets its worker's current job in one
    # transaction, so a job that just started is always some live worker's current job.
    return job_id not in {w.get_current_job_id() for w in rq_adapter.live_workers()}


def _dependencies_pending(job: Job) -> bool:
    return Job.objects.filter(id__in=job.depends_on).exclude(status__in=Job.TERMINAL).exists()


def _recover_lost(job: Job, counts: dict[str, Any]) -> None:
    # Fenced on the attempt and worker seen above; RQ's copy is dropped only once that holds
    # (a newer attempt that started meanwhile keeps its own). job_push replaces RQ's copy.
    if _in_a_group(job):
        # Lost with a whole group (runtime/companions.py): whose input it was is unknown, as
        # after a horse's crash, so each member waits again uncounted and then runs alone.
        if job_requeue(job_id=job.id, attempt=job.attempts, worker_name=job.worker_name, alone=True,
                       counted=False, error_code="WORKER_LOST", error=GROUP_LOST):  # fmt: skip
            rq_adapter.delete(job.id)
            counts["lost_retried"] += 1
            logger.warning("Job %s (%s) lost with worker %s in a group; it runs again alone", job.id, job.kind,
                           job.worker_name)  # fmt: skip
        return
    if job.attempts < job.max_attempts:
        if job_retry(
            job_id=job.id,
            error_code="WORKER_LOST",
            error="The worker running this job stopped unexpectedly.",
            attempt=job.attempts,
            worker_name=job.worker_name,
        ):
            job_push(job_id=job.id)
            counts["lost_retried"] += 1
            logger.warning("Job %s (%s) lost with worker %s; running it again", job.id, job.kind, job.worker_name)
    elif job_fail(
        job_id=job.id,
        error_code="WORKER_LOST",
        error="The worker running this job stopped unexpectedly, and no attempts are left.",
        attempt=job.attempts,
        worker_name=job.worker_name,
    ):
        rq_adapter.delete(job.id)
        counts["lost_failed"] += 1
