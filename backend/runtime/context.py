"""What a running job sees of itself: its context, ``progress`` and cancellation.

Inside the work, services call ``progress(40, "Embedding chunk 3/10")``, which also raises
``JobCancelled`` when the job was cancelled (or superseded by a newer attempt); outside a job
(a service called from a shell or a test) both are no-ops. A coroutine job (``async def``)
awaits ``aprogress`` and ``acheck_cancelled`` instead: Django refuses database calls from a
thread running an event loop, and these run the write on the job's own thread.
"""

from __future__ import annotations

import contextvars

from asgiref.sync import sync_to_async

from backend.runtime.kinds import JobCancelled, fault_hook
from backend.runtime.state import job_progress


class JobContext:
    """What a running job knows about itself."""

    def __init__(self, job_id: str, attempt: int, max_attempts: int, kind: str = "") -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.kind = kind

    @property
    def is_final_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def progress(self, percent: int | None = None, message: str | None = None) -> None:
        hook = fault_hook() if message else None
        if hook is not None:
            hook(self.kind, self.job_id, message or "")  # step boundaries: where crash tests strike
        if not job_progress(job_id=self.job_id, percent=percent, message=message, attempt=self.attempt):
            raise JobCancelled(self.job_id)

    def check_cancelled(self) -> None:
        self.progress()


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar("quire_job", default=None)


def current() -> JobContext | None:
    """The running job's context, or None outside a job (a service called directly)."""
    return _current.get()


def enter(ctx: JobContext) -> contextvars.Token[JobContext | None]:
    return _current.set(ctx)


def leave(token: contextvars.Token[JobContext | None]) -> None:
    _current.reset(token)


def progress(percent: int | None = None, message: str | None = None) -> None:
    """Report progress of the current job (a no-op outside a job); raises JobCancelled."""
    ctx = _current.get()
    if ctx is not None:
        ctx.progress(percent, message)


def check_cancelled() -> None:
    ctx = _current.get()
    if ctx is not None:
        ctx.check_cancelled()


async def aprogress(percent: int | None = None, message: str | None = None) -> None:
    """``progress`` for a coroutine job; raises JobCancelled the same way."""
    await sync_to_async(progress, thread_sensitive=True)(percent, message)


async def acheck_cancelled() -> None:
    await aprogress()
