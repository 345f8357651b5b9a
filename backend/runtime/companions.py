"""Jobs a running job takes along: waiting jobs of its own kind done in the same run.

Some jobs are mostly fixed cost. A small source (an abstract, a note, a clipping: one or two
chunks) spends far longer on its work-horse's fork, its claim and its bookkeeping than on its
embedding, and the model itself is fastest on many texts at once. So such a job may take up to
a few dozen waiting jobs of its kind and owner off the fair backlog and do their work with its
own (``take_along``). Each companion keeps its own Job row, attempts, status hook and events:
it is claimed (running, an attempt, the lead's worker, ``led_by`` the lead) and ends
succeeded, failed, back in the backlog or cancelled on its own. What a fork per job bought
still holds:

- Cancelling a companion turns its row (and subject) cancelled; the lead leaves it out at its
  next step, within the group's run (about a second of work: groups are small on purpose).
- Cancelling the lead kills its horse, as for any job; its companions go back to the backlog,
  their attempt not counted, and run later (``state.companions_release``).
- A crash, an out-of-memory kill or a time-out ends the horse, and nobody can tell which
  member's input caused it: every companion goes back to the backlog uncounted and marked
  ``alone`` (it never joins a group again), the lead's own attempt fails or retries as usual,
  and each then runs by itself, so only the culprit uses up its attempts.
- A companion whose own step raises fails, or returns to the backlog to run again alone, by
  the same rules as a job (``execute.describe_failure``), without touching the others.

Fairness: a job takes companions only while no other owner's job of its queue waits (in the
backlog or in RQ), so another user's job waits for at most one group. Companions come only
from the fair backlog, so with fair scheduling off (FIFO: every job is in RQ at once) nothing
is grouped. The reconciler knows a companion of a live lead is in hand (``led_by``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from backend.models import Job
from backend.runtime import dispatch, state
from backend.runtime import rq as rq_adapter
from backend.runtime.context import JobContext, current, enter, leave
from backend.runtime.execute import describe_failure
from backend.runtime.kinds import JobCancelled, fault_hook, get_kind

logger = logging.getLogger("quire.jobs")

T = TypeVar("T")


@dataclass(frozen=True)
class Candidate:
    """A waiting job the lead may take: its row id and its subject (a source's id)."""

    job_id: str
    subject_id: str
    kwargs: dict[str, Any]


class CompanionContext(JobContext):
    """What a companion's work sees as its job. Its progress is its lead's (the group runs for
    about a second); a report here only marks a step for the crash tests' fault hook, and its
    cancellation is noticed where the work writes its result (the subject's status)."""

    def progress(self, percent: int | None = None, message: str | None = None) -> None:
        hook = fault_hook() if message else None
        if hook is not None:
            hook(self.kind, self.job_id, message or "")


class Companion:
    """A job taken along: run its steps with ``step``, then ``succeed``."""

    def __init__(self, row: Job, worker_name: str) -> None:
        self.job_id = row.id
        self.subject_id = row.subject_id
        self.kwargs = dict(row.kwargs)
        self._row = row
        self._worker = worker_name
        self._context = CompanionContext(row.id, row.attempts, row.max_attempts, row.kind)
        self.ended = False

    def step(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Run one step of this companion's work as its job: ``progress`` inside reaches it,
        and an exception ends this companion (failed, or back to the backlog) and no other.
        Returns None once it has ended."""
        if self.ended:
            return None
        token = enter(self._context)
        try:
            return work(*args, **kwargs)
        except JobCancelled:
            self.ended = True
            state.job_settled(job_id=self.job_id)
        except Exception as exc:
            self.ended = True
            self._failed(exc)
        finally:
            leave(token)
        return None

    def _failed(self, exc: Exception) -> None:
        kind = get_kind(self._row.kind)
        code, message, retryable = describe_failure(exc, kind.timeout if kind else self._row.timeout)
        attempt = self._row.attempts
        if retryable and attempt < self._row.max_attempts:
            logger.warning("Job %s (companion of %s) failed; it will run again alone", self.job_id, self._row.led_by,
                           exc_info=True)  # fmt: skip
            state.job_requeue(job_id=self.job_id, attempt=attempt, worker_name=self._worker, error_code=code,
                              error=message)  # fmt: skip
        else:
            logger.error("Job %s (companion of %s) failed on attempt %s/%s", self.job_id, self._row.led_by, attempt,
                         self._row.max_attempts, exc_info=True)  # fmt: skip
            state.job_fail(job_id=self.job_id, error_code=code, error=message, attempt=attempt)

    def succeed(self, result: Any = None) -> None:
        if self.ended:
            return
        self.ended = True
        if state.job_succeed(job_id=self.job_id, result=result, attempt=self._row.attempts) is None:
            state.job_settled(job_id=self.job_id)  # cancelled meanwhile: its hook tidies up


@contextmanager
def take_along(*, limit: int, choose: Callable[[Sequence[Candidate]], Sequence[str]]) -> Iterator[list[Companion]]:
    """Inside a running job: take up to ``limit`` waiting jobs of its kind and owner, the ones
    ``choose`` keeps of the candidates offered (oldest first), and yield them. Outside a job, on
    a queue without a backlog, for a job that must run alone, or while another owner waits:
    none. A companion still running when the block ends goes back to the backlog, its attempt
    not counted, and alone if the block raised (the shared step failed: whose fault is unknown)."""
    ctx = current()
    in_worker = ctx is not None and rq_adapter.current_rq_job() is not None  # not a shell or a direct call
    lead = Job.objects.filter(id=ctx.job_id).first() if ctx is not None and in_worker else None
    if lead is None or lead.alone or limit <= 0 or not dispatch.is_fair(lead.queue) or _others_wait(lead):
        yield []
        return
    offered = [
        Candidate(job_id, subject_id, kwargs)
        for job_id, subject_id, kwargs, depends_on in dispatch.waiting(lead.queue)
        .filter(kind=lead.kind, owner_id=lead.owner_id, alone=False)
        .order_by("created_at")
        .values_list("id", "subject_id", "kwargs", "depends_on")[: limit * 2]
        if not depends_on
    ]
    chosen = list(choose(offered))[:limit] if offered else []
    worker_name = lead.worker_name  # job_start wrote it: the worker running this job
    taken = state.companions_claim(lead=lead, job_ids=chosen, worker_name=worker_name) if chosen else []
    companions = [Companion(row, worker_name) for row in taken]
    crashed = True
    try:
        yield companions
        crashed = False  # the work forgot some: nothing went wrong, they simply wait again
    except JobCancelled:
        crashed = False  # the lead was cancelled: its companions did nothing wrong
        raise
    finally:
        if any(not c.ended for c in companions):
            state.companions_release(lead_id=lead.id, worker_name=worker_name, crashed=crashed)


def _others_wait(lead: Job) -> bool:
    """Another owner's job of this queue waits, in the backlog or in RQ."""
    return Job.objects.filter(queue=lead.queue, status=Job.Status.QUEUED).exclude(owner_id=lead.owner_id).exists()
