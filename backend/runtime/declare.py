"""``@job``: declare a kind of job; what it returns runs the function with the runtime's
bookkeeping when RQ calls it, and enqueues it when a service asks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings

from backend.runtime.execute import run
from backend.runtime.kinds import DEFAULT_RETRIES, JobKind, get_kind, register
from backend.runtime.state import job_enqueue

if TYPE_CHECKING:
    from django.db.models import Model

    from backend.models import Batch, Job


@dataclass(frozen=True)
class DeclaredJob(JobKind):
    """A declared kind of job. Calling it runs the function (inside RQ with bookkeeping)."""

    def __call__(self, **kwargs: Any) -> Any:
        return run(self, kwargs)

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


def job(
    kind: str,
    *,
    queue: str,
    timeout: int | None = None,
    retries: int = DEFAULT_RETRIES,
    retry_intervals: Sequence[int] | None = None,
    on_change: Callable[[Job], None] | None = None,
) -> Callable[[Callable[..., Any]], DeclaredJob]:
    """Declare a job kind. Queue, time limit and retry policy live here, in one place per kind."""
    if queue not in settings.RQ_QUEUES:
        raise ValueError(f"Unknown queue {queue!r} for job kind {kind!r}")

    def decorate(func: Callable[..., Any]) -> DeclaredJob:
        declared = DeclaredJob(
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
        register(declared)
        return declared

    return decorate


def get_job(kind: str) -> DeclaredJob | None:
    """The declared kind named ``kind`` (every registered kind is declared here)."""
    declared = get_kind(kind)
    return declared if isinstance(declared, DeclaredJob) else None
