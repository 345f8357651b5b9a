"""Handing Job rows to RQ: ``job_push`` (one row, now) and fair dispatch (the Job rows are the
backlog, RQ's queues are kept shallow).

RQ runs a queue first-in first-out, so one user's import of a thousand files would make
everyone else wait behind it. On the fair queues (settings.QUIRE_FAIR["QUEUES"]) a new job is
written ``queued`` with ``dispatched_at`` null and not pushed; ``dispatch(queue)`` hands RQ the
next jobs in the fair order until RQ's queue holds about one job per live worker. It is called
after the enqueuing transaction commits, when a job starts (a forking worker, in its own process
while the horse runs: ``workers.ForkingWorker.fork_work_horse``; otherwise beside the job,
``execute.run``) and when it ends, and by the reconciler every minute as a backstop.

The fair order, one pick at a time:
1. Class: interactive before bulk, except that when bulk work waits and none of the queue's
   last ``BULK_SHARE - 1`` dispatches was bulk, bulk goes next (bulk is never starved).
2. Owner: within the class, the owner whose last dispatch on this queue is the oldest (never
   dispatched first): round-robin, so one queued job waits for at most about one job of each
   other active owner. An owner at its cap (running + handed out ≥ ``CAPS[queue]``) is skipped
   while any other owner waits; when nobody else waits, its cap lifts (work-conserving).
3. Job: that owner's oldest waiting job of the class whose dependencies have all ended.

Each pick is claimed with ``UPDATE … SET dispatched_at WHERE dispatched_at IS NULL AND status =
queued``: of two dispatchers (two web or worker hosts) that picked the same row, exactly one
pushes it. A short Redis lock per queue keeps two dispatchers from both filling the same free
slots (that would only make RQ a little deeper, never push a job twice). A dispatcher that dies
between the claim and the push leaves a claimed row that RQ does not hold: the reconciler pushes
it again (RQ job ids are the row ids, so a push is idempotent).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Max, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from backend.models import Job
from backend.runtime import events
from backend.runtime import rq as rq_adapter
from backend.runtime.kinds import fault_hook

logger = logging.getLogger(__name__)

S = Job.Status
P = Job.Priority
LOCK_SECONDS = 10


def is_fair(queue: str) -> bool:
    fair = settings.QUIRE_FAIR
    return bool(fair["ENABLED"]) and queue in fair["QUEUES"]


def waiting(queue: str) -> QuerySet[Job]:
    """The backlog of a fair queue: queued rows no dispatcher has handed to RQ yet."""
    return Job.objects.filter(queue=queue, status=S.QUEUED, dispatched_at__isnull=True)


def dispatch(queue: str) -> list[str]:
    """Hand RQ the next jobs of ``queue`` in the fair order until it holds about one waiting
    job per live worker. Returns the ids pushed. Never raises: a dispatcher that cannot reach
    Redis or the database leaves the backlog for the next call."""
    if not is_fair(queue):
        return []
    try:
        # Most calls (a job's end, the 2nd to 20th job of an upload) find RQ full: they return
        # after two Redis reads, without the lock or the database.
        if _free_places(queue) <= 0:
            return []
        conn = rq_adapter.connection(queue)
        lock = conn.lock(f"quire:dispatch:{queue}", timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS)
        if not lock.acquire():
            logger.info("Dispatcher lock of %s busy; leaving it to the holder", queue)
            return []
        try:
            return _fill(queue)
        finally:
            try:
                lock.release()
            except Exception:  # expired meanwhile: harmless, the claims are the guarantee
                logger.info("Dispatcher lock of %s expired before its release", queue)
    except Exception:
        logger.warning("Dispatch on %s failed; the next job end or the reconciler retries", queue, exc_info=True)
        return []


def _fill(queue: str) -> list[str]:
    # RQ's own depth, not the rows marked dispatched: a row claimed by a dispatcher that died
    # before its push, or a job a SIGKILLed worker had just taken, is in no RQ queue; counted,
    # such rows would hold the queue's places until the reconciler heals them (seen: a batch
    # stalled in tests/test_chaos.py while workers and horses were being killed).
    pushed: list[str] = []
    for _ in range(max(_free_places(queue), 0)):
        job_id = pick(queue)
        if job_id is None:
            break
        if claim_and_push(job_id):
            pushed.append(job_id)
    return pushed


def _free_places(queue: str) -> int:
    return max(rq_adapter.live_worker_count(queue), 1) - rq_adapter.queue_depth(queue)


def claim_and_push(job_id: str) -> bool:
    """1. Claim the row (nothing updated: another dispatcher got there first, or it was
    cancelled). 2. Push it to RQ; if Redis fails now, the claimed row waits for the reconciler."""
    now = timezone.now()
    claimed = Job.objects.filter(id=job_id, status=S.QUEUED, dispatched_at__isnull=True).update(
        dispatched_at=now, updated_at=now
    )
    if claimed != 1:
        return False
    _crash_point(job_id)
    job_push(job_id=job_id, replace=False)
    return True


def job_push(*, job_id: str, new: Job | None = None, replace: bool = True) -> bool:
    """Give a queued or retrying job to RQ (again). Redis being down is not an error here:
    the row stays and the reconciler pushes it when Redis is back. ``new``: the row that
    job_enqueue just created and committed (not read again); ``replace=False``: its id is
    fresh, so RQ holds no earlier copy to remove."""
    job = new or Job.objects.filter(id=job_id, status__in=(S.QUEUED, S.RETRYING)).first()
    if job is None:
        return False
    # Dependencies that already ended cannot be waited on in RQ (their keys may be gone).
    pending = (
        list(Job.objects.filter(id__in=job.depends_on).exclude(status__in=Job.TERMINAL).values_list("id", flat=True))
        if job.depends_on
        else []
    )
    # Publish before the push: once in RQ, a worker may publish "running" at any moment, and
    # the stream must keep the causal order.
    events.publish_job(job)
    try:
        rq_adapter.push(
            job_id=job.id,
            queue=job.queue,
            func=job.func,
            kwargs=job.kwargs,
            timeout=job.timeout,
            retries_left=max(job.max_attempts - job.attempts - 1, 0),
            retry_intervals=job.retry_intervals,
            depends_on=pending,
            description=job.kind,
            replace=replace,
        )
    except Exception:
        logger.warning("Could not hand job %s to Redis; the reconciler will retry", job.id, exc_info=True)
        return False
    now = timezone.now()
    # A row pushed without the dispatcher (fairness off, a retry) counts as dispatched too, so a
    # dispatcher (another host's settings, or fairness switched on later) never pushes it again.
    Job.objects.filter(id=job.id).update(enqueued_at=now, dispatched_at=Coalesce(F("dispatched_at"), Value(now)))
    return True


def _crash_point(job_id: str) -> None:
    """Where the tests kill a dispatcher between its claim and its push (settings.QUIRE_FAULT_INJECTION)."""
    hook = fault_hook()
    if hook is not None:
        hook("dispatch", job_id, "Dispatching")


def pick(queue: str) -> str | None:
    """The id of the next job of ``queue`` in the fair order (see the module's docstring)."""
    # One read for who waits in which class (a pass runs for every job a worker takes). order_by():
    # with the model's ordering (-created_at) in the query, DISTINCT would return one row per
    # waiting job instead of one per owner and class (measured: 1,000 rows read per pick).
    pairs = set(waiting(queue).order_by().values_list("priority", "owner_id").distinct())
    classes = {priority for priority, _ in pairs}
    if not classes:
        return None
    for priority in _class_order(queue, classes):
        job_id = _pick_in_class(queue, priority, [owner for p, owner in pairs if p == priority])
        if job_id is not None:
            return job_id
    return None


def _class_order(queue: str, classes: set[str]) -> list[str]:
    share = max(int(settings.QUIRE_FAIR["BULK_SHARE"]), 1)
    order = [p for p in (P.INTERACTIVE, P.BULK) if p in classes]
    if P.BULK in classes and P.INTERACTIVE in classes:
        recent = list(
            Job.objects.filter(queue=queue, dispatched_at__isnull=False)
            .order_by("-dispatched_at")
            .values_list("priority", flat=True)[: share - 1]
        )
        if share == 1 or (len(recent) == share - 1 and P.BULK not in recent):
            order.reverse()
    return [str(p) for p in order]


def _pick_in_class(queue: str, priority: str, owners: list[int | None]) -> str | None:
    """``owners``: those with jobs of this class waiting."""
    backlog = waiting(queue).filter(priority=priority)
    ranked = owners
    if len(owners) > 1:  # one importer alone (the common case under load) needs no ranking
        last_dispatch: dict[int | None, datetime] = dict(
            Job.objects.filter(queue=queue, owner_id__in=owners, dispatched_at__isnull=False)
            .order_by()
            .values_list("owner_id")
            .annotate(last=Max("dispatched_at"))
            .values_list("owner_id", "last")
        )
        # Never dispatched first, then the least recently dispatched (ties: the lower id, stable).
        epoch = datetime.min.replace(tzinfo=UTC)
        ranked = sorted(owners, key=lambda o: (last_dispatch.get(o) or epoch, o is not None, str(o)))
    cap = int(settings.QUIRE_FAIR["CAPS"].get(queue) or 0)
    if cap > 0:
        ranked = _apply_cap(queue, ranked, cap)
    for owner in ranked:
        mine = backlog.filter(owner_id=owner) if owner is not None else backlog.filter(owner__isnull=True)
        job_id = _first_ready(mine)
        if job_id is not None:
            return job_id
    return None


def _apply_cap(queue: str, ranked: list[int | None], cap: int) -> list[int | None]:
    """The owners that may get a job now: those under the cap, and a capped owner only when no
    other owner waits (the cap lifts; work-conserving). When every waiting owner is capped,
    nobody is dispatched: each holds its share, and the next job end frees a place."""
    in_flight = dict(
        Job.objects.filter(queue=queue, owner_id__in=[o for o in ranked if o is not None])
        .filter(Q(status=S.RUNNING) | Q(status=S.QUEUED, dispatched_at__isnull=False))
        .values_list("owner_id")
        .annotate(n=Count("id"))
        .values_list("owner_id", "n")
    )
    allowed: list[int | None] = []
    for owner in ranked:
        if owner is None or in_flight.get(owner, 0) < cap:
            allowed.append(owner)
        elif not waiting(queue).exclude(owner_id=owner).exists():
            allowed.append(owner)
    return allowed


def _first_ready(candidates: QuerySet[Job]) -> str | None:
    """The oldest candidate whose dependencies (an overview waits for its batch) have ended:
    RQ cannot wait on a job it has not been given, so a dependent job is dispatched last."""
    for job_id, depends_on in candidates.order_by("created_at", "id").values_list("id", "depends_on")[:50].iterator():
        if not depends_on or not Job.objects.filter(id__in=depends_on).exclude(status__in=Job.TERMINAL).exists():
            return str(job_id)
    return None


def backlog_stats(queue: str) -> dict[str, Any]:
    """What waits for dispatch on a fair queue (for /healthz, /metrics, manage.py health)."""
    if not is_fair(queue):
        return {"waiting": 0, "oldest_waiting_age_seconds": None}
    rows = waiting(queue)
    oldest = rows.order_by("created_at").values_list("created_at", flat=True).first()
    return {
        "waiting": rows.count(),
        "oldest_waiting_age_seconds": round((timezone.now() - oldest).total_seconds(), 1) if oldest else None,
    }


def fair_position(job: Job, memo: dict[Any, Any] | None = None) -> int:
    """Where a job that waits for dispatch will run (1 = next), under the fair order: behind
    what RQ already holds for the queue, then, if it is the owner's k-th waiting job of its
    class, behind up to k jobs of each other owner of that class (k - 1 for an owner that comes
    after its owner in the round-robin), and a bulk job behind all waiting interactive work.
    An estimate: new arrivals, retries and the bulk share move it (it never counts them).
    ``memo``: one dict for a whole response, so the jobs of an upload share the reads that do
    not depend on the job (measured: positions were 65% of a 20-file upload's time without it)."""
    memo = {} if memo is None else memo
    if ("position", job.id) in memo:
        return int(memo["position", job.id])
    backlog = waiting(job.queue)
    mine = backlog.filter(owner_id=job.owner_id, priority=job.priority)
    k = mine.filter(Q(created_at__lt=job.created_at) | Q(created_at=job.created_at, id__lte=job.id)).count()
    k = max(k, 1)
    key = (job.queue, job.owner_id, job.priority)
    if ("others", key) not in memo:
        same_class = backlog.filter(priority=job.priority).exclude(owner_id=job.owner_id)
        per_owner = dict(same_class.values_list("owner_id").annotate(n=Count("id")).values_list("owner_id", "n"))
        last: dict[int | None, datetime] = dict(
            Job.objects.filter(queue=job.queue, owner_id__in=[*per_owner, job.owner_id], dispatched_at__isnull=False)
            .values_list("owner_id")
            .annotate(last=Max("dispatched_at"))
            .values_list("owner_id", "last")
        )
        epoch = datetime.min.replace(tzinfo=UTC)
        my_turn = last.get(job.owner_id) or epoch
        others = [(n, (last.get(owner) or epoch) < my_turn) for owner, n in per_owner.items()]
        interactive = backlog.filter(priority=P.INTERACTIVE).count() if job.priority == P.BULK else 0
        memo["others", key] = (others, interactive, rq_adapter.queue_depth(job.queue))
    others, interactive, in_rq = memo["others", key]
    ahead = sum(min(n, k if before_me else k - 1) for n, before_me in others) + interactive
    memo["position", job.id] = in_rq + ahead + k
    return int(memo["position", job.id])
