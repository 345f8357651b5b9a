"""Quire's job runtime: declare a job kind, enqueue it, report progress from inside it.

    @job("notebooks.process_source", queue="notebook_processing", on_change=source_follow_job)
    def source_process(*, source_id: str) -> None:
        from notebooks import ingestion  # a job imports its service in its body

        ingestion.source_process(source_id=source_id)

    source_process.enqueue({"source_id": str(source.id)}, owner=user, subject=source,
                           notebook_id=source.notebook_id, batch=batch)

Inside the work, services call ``progress(40, "Embedding chunk 3/10")``, which also raises
``JobCancelled`` when the job was cancelled. A job may be a coroutine function (``async def``);
it then awaits ``aprogress(...)`` and ``acheck_cancelled()`` instead. A job function raises ``JobError`` for a failure
the user should read (with a machine-readable code); any other exception is logged with its
traceback and shown to the user as a short, safe message.

This module is the façade: the only runtime names the apps import (import-linter checks it,
see pyproject.toml). Behind it, the layers, each importing only those below it:

    workers      the RQ worker classes the Procfile names
    declare      @job and what it returns (call it, enqueue it)
    companions   a running job takes waiting jobs of its kind along (small sources)
    execute      what happens around a job function   │ reconcile  Job rows and RQ back in line
    context      progress, cancellation, current()
    state        the Job state machine: guarded transitions, enqueue, cancel, retry
    dispatch     handing rows to RQ: the push, the fair dispatcher
    events       the live event stream per notebook
    rq │ kinds   the RQ/Redis adapter │ job kinds, their registry, JobError
"""

from backend.runtime.companions import Candidate, Companion, take_along
from backend.runtime.context import JobContext, acheck_cancelled, aprogress, check_cancelled, current, progress
from backend.runtime.declare import DeclaredJob, get_job, job
from backend.runtime.events import EVENT_ID, publish
from backend.runtime.events import cursor_now as event_cursor
from backend.runtime.events import stream as event_stream
from backend.runtime.kinds import JobCancelled, JobError, JobKind, all_kinds
from backend.runtime.state import (
    BatchStillRunning,
    JobNotCancellable,
    QuotaExceeded,
    batch_create,
    batch_retry_failed,
    job_cancel,
    job_retry_now,
    jobs_cancel_active,
    subject_follow_job,
)

get_kind = get_job  # what apps and tests look up is always a declared kind
publish_event = publish  # an event of the notebook's own (an overview, an answer's words)

__all__ = [
    "EVENT_ID",
    "BatchStillRunning",
    "Candidate",
    "Companion",
    "DeclaredJob",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobKind",
    "JobNotCancellable",
    "QuotaExceeded",
    "acheck_cancelled",
    "all_kinds",
    "aprogress",
    "batch_create",
    "batch_retry_failed",
    "check_cancelled",
    "current",
    "event_cursor",
    "event_stream",
    "get_kind",
    "job",
    "job_cancel",
    "job_retry_now",
    "jobs_cancel_active",
    "progress",
    "publish_event",
    "subject_follow_job",
    "take_along",
]
