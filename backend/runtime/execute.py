"""What happens around a job function when a worker runs it."""

from __future__ import annotations

import inspect
import json
import logging
import threading
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connections
from django.utils import timezone

from backend.models import Job
from backend.runtime import rq as rq_adapter
from backend.runtime import state
from backend.runtime.context import JobContext, enter, leave
from backend.runtime.dispatch import dispatch, is_fair
from backend.runtime.events import job_event
from backend.runtime.kinds import JobCancelled, JobError, JobKind

logger = logging.getLogger("quire.jobs")


def warm_up() -> None:
    """Run once in a forking worker before its first work-horse: load what every job run
    needs (this module, the ORM's query compiler, the serializer behind events, time zone
    data), so each horse inherits it instead of loading it again and losing it at exit."""
    list(Job.objects.filter(id="").values_list("id", flat=True))
    sample = Job(id="warm-up", kind="", queue="default", func="", timeout=1, status=Job.Status.RUNNING)
    job_event(sample)
    timezone.localtime()


def describe_failure(exc: BaseException, timeout: int) -> tuple[str, str, bool]:
    """(error_code, user-readable message, retryable) for an exception; never a traceback."""
    if isinstance(exc, JobError):
        return exc.code, exc.message, exc.retryable
    if isinstance(exc, rq_adapter.JobTimeoutException):
        return "TIMEOUT", f"The job ran longer than its time limit of {timeout} seconds.", True
    return "INTERNAL_ERROR", f"Unexpected error ({type(exc).__name__}); the details are in the worker log.", True


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return {"value": str(value)}
    return value


def dispatch_next(queue: str) -> None:
    """The fair dispatcher's one hook in the worker: a job that starts leaves a place in RQ's
    queue, and one that ends may release dependents (an overview) or a capped owner."""
    dispatch(queue)


# Who refills RQ for a job that starts: a forking worker does it itself, in the parent, while its
# horse runs (see workers.ForkingWorker.fork_work_horse); anything else that runs jobs (an
# in-process worker, a test's worker) leaves it to run() below.
_refill_at_start = True


def leave_refill_to_worker() -> None:
    """Called by a worker that refills RQ itself when it hands a job to a process of its own."""
    global _refill_at_start
    _refill_at_start = False


def _dispatch_beside(queue: str) -> threading.Thread | None:
    """Refill RQ for the job just taken on a thread beside the job, not before it: the picking
    and the push (about ten queries and round trips) then overlap the work instead of adding
    to every job's time."""
    if not _refill_at_start or not is_fair(queue):
        return None

    def refill() -> None:
        try:
            dispatch_next(queue)
        finally:
            connections.close_all()  # this thread's own database connection

    thread = threading.Thread(target=refill, name="quire-dispatch", daemon=True)
    thread.start()
    return thread


def call(kind: JobKind, kwargs: dict[str, Any]) -> Any:
    """The job function itself. A coroutine function runs to completion on an event loop of
    its own (asgiref's async_to_sync, as Django runs async views from sync code); its
    ``aprogress`` calls come back to this thread, where the job's database connection is.
    One job at a time per worker still: RQ 2 runs one job at a time."""
    if inspect.iscoroutinefunction(kind.func):
        return async_to_sync(kind.func)(**kwargs)
    return kind.func(**kwargs)


def run(kind: JobKind, kwargs: dict[str, Any]) -> Any:
    rq_job = rq_adapter.current_rq_job()
    if rq_job is None:
        # Called directly (a test, a shell): just the work, no bookkeeping.
        return call(kind, kwargs)
    beside = _dispatch_beside(kind.queue)
    try:
        return _run(kind, kwargs, rq_job)
    finally:
        if beside is not None:
            beside.join()
        dispatch_next(kind.queue)


def _run(kind: JobKind, kwargs: dict[str, Any], rq_job: Any) -> Any:
    job_id = rq_job.id
    claimed = state.job_start(job_id=job_id, worker_name=rq_job.worker_name or "")
    if claimed is None:
        logger.info("Job %s (%s) is cancelled, finished or unknown; not running it", job_id, kind.kind)
        rq_adapter.prevent_retry(rq_job)
        return None

    token = enter(JobContext(job_id, claimed.attempts, claimed.max_attempts, kind.kind))
    try:
        result = _json_safe(call(kind, kwargs))
    except JobCancelled:
        logger.info("Job %s (%s) stopped: cancelled, or superseded by a newer attempt", job_id, kind.kind)
        rq_adapter.prevent_retry(rq_job)
        state.job_settled(job_id=job_id)
        return None
    except Exception as exc:
        code, message, retryable = describe_failure(exc, kind.timeout)
        if retryable and claimed.attempts < claimed.max_attempts:
            logger.warning(
                "Job %s (%s) attempt %s/%s failed; will retry",
                job_id,
                kind.kind,
                claimed.attempts,
                claimed.max_attempts,
                exc_info=True,
            )
            if state.job_retry(job_id=job_id, error_code=code, error=message, attempt=claimed.attempts) is None:
                rq_adapter.prevent_retry(rq_job)  # superseded or cancelled: the id is not ours to retry
        else:
            logger.error(
                "Job %s (%s) failed on attempt %s/%s",
                job_id,
                kind.kind,
                claimed.attempts,
                claimed.max_attempts,
                exc_info=True,
            )
            rq_adapter.prevent_retry(rq_job)
            state.job_fail(job_id=job_id, error_code=code, error=message, attempt=claimed.attempts)
        raise
    finally:
        leave(token)
    state.job_succeed(job_id=job_id, result=result, attempt=claimed.attempts)
    return result
