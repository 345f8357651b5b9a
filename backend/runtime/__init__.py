"""Quire's job runtime: declare a job kind, enqueue it, report progress from inside it.

    @job("notebooks.process_source", queue="notebook_processing", on_change=source_follow_job)
    def process_source(*, source_id: str) -> None:
        source_process(source_id=source_id)

    process_source.enqueue({"source_id": str(source.id)}, owner=user, subject=source,
                           notebook_id=source.notebook_id, batch=batch)

Inside the work, services call ``progress(40, "Embedding chunk 3/10")``, which also raises
``JobCancelled`` when the job was cancelled. A job function raises ``JobError`` for a failure
the user should read (with a machine-readable code); any other exception is logged with its
traceback and shown to the user as a short, safe message.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from django.db.models import Model

    from backend.models import Batch, Job

logger = logging.getLogger(__name__)

DEFAULT_RETRIES = 3


class JobError(Exception):
    """A failure the user should read. ``retryable=False`` ends the job at once."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class JobCancelled(Exception):
    """Raised inside a job when its Job row was cancelled; the runtime ends it quietly."""


@dataclass(frozen=True)
class JobKind:
    """A declared kind of job. Calling it runs the function (inside RQ with bookkeeping)."""

    kind: str
    queue: str
    func: Callable[..., Any]
    path: str
    timeout: int
    retries: int
    retry_intervals: tuple[int, ...] | None
    on_change: Callable[[Job], None] | None = None
    description: str = field(default="")

    def __call__(self, **kwargs: Any) -> Any:
        from backend.runtime.execute import run

        return run(self, kwargs)

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def intervals(self) -> list[int]:
        if self.retry_intervals is not None:
            return list(self.retry_intervals)
        return list(settings.QUIRE_JOBS["DEFAULT_RETRY_INTERVALS"])

    def enqueue(
        self,
        kwargs: dict[str, Any] | None = None,
        *,
        owner: Any = None,
        subject: Model | None = None,
        notebook_id: Any = None,
        batch: Batch | None = None,
        depends_on: Sequence[str] = (),
        job_id: str | None = None,
        priority: str = "interactive",
    ) -> Job:
        """Create the Job row now and hand the job to RQ once the transaction commits (on a
        fair queue: once the dispatcher picks it; ``priority`` is "interactive" or "bulk")."""
        from backend.services import job_enqueue

        return job_enqueue(
            kind=self,
            kwargs=kwargs or {},
            owner=owner,
            subject=subject,
            notebook_id=notebook_id,
            batch=batch,
            depends_on=depends_on,
            job_id=job_id,
            priority=priority,
        )


_kinds: dict[str, JobKind] = {}


def job(
    kind: str,
    *,
    queue: str,
    timeout: int | None = None,
    retries: int = DEFAULT_RETRIES,
    retry_intervals: Sequence[int] | None = None,
    on_change: Callable[[Job], None] | None = None,
) -> Callable[[Callable[..., Any]], JobKind]:
    """Declare a job kind. Queue, time limit and retry policy live here, in one place per kind."""
    if queue not in settings.RQ_QUEUES:
        raise ValueError(f"Unknown queue {queue!r} for job kind {kind!r}")

    def decorate(func: Callable[..., Any]) -> JobKind:
        declared = JobKind(
            kind=kind,
            queue=queue,
            func=func,
            path=f"{func.__module__}.{func.__name__}",
            timeout=timeout or settings.QUEUE_TIMEOUTS[queue],
            retries=retries,
            retry_intervals=tuple(retry_intervals) if retry_intervals is not None else None,
            on_change=on_change,
            description=(func.__doc__ or "").strip().split("\n")[0],
        )
        existing = _kinds.get(kind)
        if existing is not None and existing.path != declared.path:
            raise ValueError(f"Job kind {kind!r} is declared twice ({existing.path}, {declared.path})")
        _kinds[kind] = declared
        return declared

    return decorate


def get_kind(kind: str) -> JobKind | None:
    return _kinds.get(kind)


def all_kinds() -> dict[str, JobKind]:
    return dict(_kinds)


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
        from backend.services import job_progress

        if message and _fault_hook() is not None:
            # Step boundaries are where crash tests strike (settings.QUIRE_FAULT_INJECTION).
            _fault_hook()(self.kind, self.job_id, message)  # type: ignore[misc]
        if not job_progress(job_id=self.job_id, percent=percent, message=message, attempt=self.attempt):
            raise JobCancelled(self.job_id)

    def check_cancelled(self) -> None:
        self.progress()


def _fault_hook() -> Callable[[str, str, str], None] | None:
    path = getattr(settings, "QUIRE_FAULT_INJECTION", None)
    if not path:
        return None
    from django.utils.module_loading import import_string

    hook: Callable[[str, str, str], None] = import_string(path)
    return hook


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar("quire_job", default=None)


def current() -> JobContext | None:
    """The running job's context, or None outside a job (a service called directly)."""
    return _current.get()


def progress(percent: int | None = None, message: str | None = None) -> None:
    """Report progress of the current job (a no-op outside a job); raises JobCancelled."""
    ctx = _current.get()
    if ctx is not None:
        ctx.progress(percent, message)


def check_cancelled() -> None:
    ctx = _current.get()
    if ctx is not None:
        ctx.check_cancelled()
