"""The one place that talks to RQ and Redis: the JSON job class, clients, queue access.

The bottom layer of the job runtime with kinds.py; the worker classes are at the top
(workers.py). Everything else in Quire goes through backend.runtime and never imports rq.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import django_rq
from django.conf import settings
from redis import Redis
from redis.sentinel import Sentinel
from rq import Retry, Worker
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.executions import Execution, ExecutionRegistry
from rq.job import Dependency, JobStatus, get_current_job
from rq.job import Job as RQJob
from rq.queue import Queue
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from rq.utils import as_text, utcparse
from rq.worker_registration import get_keys as get_worker_keys

logger = logging.getLogger(__name__)

__all__ = ["JSONJob", "JobTimeoutException"]


class JSONJob(RQJob):
    """An RQ job whose payload is JSON unless a caller insists otherwise.

    rq-scheduler 0.14 creates and fetches jobs without passing a serializer, which would
    silently fall back to pickle; making JSON the class default closes that gap everywhere
    the job class is used (queues, workers, scheduler, dashboard).
    """

    def __init__(self, id: str | None = None, connection: Redis | None = None, serializer: Any = None) -> None:
        super().__init__(id=id, connection=connection, serializer=serializer or JSONSerializer)


_clients: dict[str, Redis] = {}


def use_client(client: Redis, queues: Sequence[str]) -> None:
    """Make ``client`` this process's client for the queues' Redis. A worker passes its own:
    the job runtime's calls (events, pushes) then share RQ's connection, and a work-horse,
    whose pools start empty after the fork, opens one connection per job instead of two
    (each a TCP handshake, a HELLO and two CLIENT SETINFO round trips)."""
    for name in queues:
        config = settings.RQ_QUEUES.get(name)
        if config is not None:
            _clients[_client_key(config)] = client


def connection(queue: str = "default") -> Redis:
    """One client (and connection pool) per Redis URL and process. django-rq builds a new pool
    on every call, which costs a TCP connection per progress event. redis-py resets a pool
    inherited through fork, so work-horses get their own connections."""
    config = settings.RQ_QUEUES[queue]
    key = _client_key(config)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = redis_client(config)
    return client


def _client_key(config: dict[str, Any]) -> str:
    if "URL" in config:
        return str(config["URL"])
    return f"sentinel:{config['MASTER_NAME']}:{config['DB']}:{sorted(config['SENTINELS'])}"


def _sentinel(config: dict[str, Any], **kwargs: Any) -> Sentinel:
    return Sentinel(  # type: ignore[no-untyped-call]
        config["SENTINELS"],
        sentinel_kwargs=config.get("SENTINEL_KWARGS", {}),
        db=config["DB"],
        username=config.get("USERNAME"),
        password=config.get("PASSWORD"),
        **kwargs,
    )


def redis_client(config: dict[str, Any]) -> Redis:
    """A client for a queue's Redis config (settings.REDIS_CONNECTION's shape): from its URL, or
    the master the sentinels name. A Sentinel client asks them again after a connection error,
    so a failover needs no restart; commands in flight at the kill fail and their callers retry."""
    if "URL" in config:
        return Redis.from_url(config["URL"], health_check_interval=30)
    return _sentinel(config, health_check_interval=30).master_for(config["MASTER_NAME"])  # type: ignore[no-untyped-call]


def master_address(queue: str = "default") -> str:
    """host:port of the Redis that takes the writes (for /healthz): the sentinels' answer, or the URL's."""
    config = settings.RQ_QUEUES[queue]
    if "URL" in config:
        kwargs = connection(queue).connection_pool.connection_kwargs
        return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    host, port = _sentinel(config).discover_master(config["MASTER_NAME"])  # type: ignore[no-untyped-call]
    return f"{host}:{port}"


def get_queue(name: str) -> Queue:
    return django_rq.get_queue(
        name, serializer=JSONSerializer, job_class=JSONJob, commit_mode="auto", connection=connection(name)
    )


def current_rq_job() -> RQJob | None:
    return get_current_job()


def push(
    *,
    job_id: str,
    queue: str,
    func: str,
    kwargs: dict[str, Any],
    timeout: int,
    retries_left: int,
    retry_intervals: Sequence[int],
    depends_on: Sequence[str] = (),
    description: str = "",
    replace: bool = True,
) -> None:
    """Put a job into RQ under a known id (the Job row's id). Safe to repeat for the same id;
    ``replace=False`` skips looking for an earlier copy (a job id never pushed before)."""
    q = get_queue(queue)
    existing = fetch(job_id) if replace else None
    if existing is not None:
        _delete(existing)
    retry = Retry(max=retries_left, interval=list(retry_intervals) or 0) if retries_left > 0 else None
    dependency = Dependency(jobs=list(depends_on), allow_failure=True) if depends_on else None
    q.enqueue_call(
        func=func,
        kwargs=kwargs,
        job_id=job_id,
        timeout=timeout,
        retry=retry,
        depends_on=dependency,
        description=description or func,
        result_ttl=settings.RQ["DEFAULT_RESULT_TTL"],
        failure_ttl=24 * 3600,
    )


def fetch(job_id: str) -> RQJob | None:
    try:
        return JSONJob.fetch(job_id, connection=connection())
    except NoSuchJobError:
        return None


def status_of(job_id: str) -> str | None:
    job = fetch(job_id)
    if job is None:
        return None
    status = job.get_status(refresh=False)
    return str(status.value) if status is not None else None


def overdue_seconds(queue: str, job_id: str) -> float | None:
    """How long past its time a scheduled job (a delayed retry) still waits, or None."""
    score = _scheduled_at(queue, job_id)
    return None if score is None else time.time() - score


def _scheduled_at(queue: str, job_id: str) -> float | None:
    """When RQ's scheduled registry of this queue means to enqueue the job (None: not there)."""
    conn = connection(queue)
    score = conn.zscore(ScheduledJobRegistry(queue, connection=conn).key, job_id)  # type: ignore[no-untyped-call]
    return None if score is None else float(score)


def prevent_retry(job: RQJob) -> None:
    """Tell the worker running this job not to retry it (a permanent error, or Quire's own
    attempt count says this was the last)."""
    job.retries_left = 0


def cancel(job_id: str) -> None:
    """Take a job out of RQ wherever it waits (queue, schedule, dependencies); stop it if it runs."""
    job = fetch(job_id)
    if job is None:
        return
    status = job.get_status(refresh=False)
    if status == JobStatus.STARTED and job.worker_name:
        try:
            send_stop_job_command(connection(), job_id, serializer=JSONSerializer)
        except InvalidJobOperation:
            logger.info("Job %s finished before it could be stopped", job_id)
        return
    if status in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
        return
    try:
        job.cancel(enqueue_dependents=True)
    except InvalidJobOperation:
        pass


def delete(job_id: str) -> None:
    job = fetch(job_id)
    if job is not None:
        _delete(job)


def _delete(job: RQJob) -> None:
    """Take a job out of every queue and registry and delete it.

    RQ's Job.delete reads each execution listed for the job, and raises if one has expired: the
    list outlives its entries by a minute. It raises after it has taken the job out of its
    registry and before it deletes the job, leaving a "scheduled" job that no registry holds
    (tests/test_multihost.py caught it: the reconciler's re-push of a job whose host was cut
    off failed this way and nothing ran the job again). So forget expired executions first,
    with their entries in the started registry, which RQ's cleanup would otherwise "retry"
    by job id, acting on whatever copy holds the id by then."""
    conn = job.connection
    executions = ExecutionRegistry(job_id=job.id, connection=conn)
    started = StartedJobRegistry(job.origin, connection=conn)
    for attempt in range(2):
        for raw in conn.zrange(executions.key, 0, -1):
            execution = Execution(
                id=raw.decode() if isinstance(raw, bytes) else str(raw), job_id=job.id, connection=conn
            )
            if not conn.exists(execution.key):
                conn.zrem(executions.key, execution.id)
                conn.zrem(started.key, execution.composite_key)
        try:
            job.delete(remove_from_queue=True)
            return
        except ValueError:
            if attempt:  # one expired again between the check and the delete: once more only
                raise


def held(queue: str, job_id: str, status: str) -> bool:
    """Whether RQ really holds a job it calls queued (in its queue, or being taken from it)
    or scheduled (in the scheduled registry)."""
    if status == "scheduled":
        return _scheduled_at(queue, job_id) is not None
    q = get_queue(queue)
    return q.get_job_position(job_id) is not None or q.connection.lpos(q.intermediate_queue_key, job_id) is not None


def queue_position(queue: str, job_id: str) -> int | None:
    position = get_queue(queue).get_job_position(job_id)
    return None if position is None else position + 1


def queue_depth(queue: str) -> int:
    q = get_queue(queue)
    return int(q.connection.llen(q.key))


def live_workers(queue: str | None = None) -> list[Any]:
    """Workers whose heartbeat key still exists (registration sets outlive a killed worker)."""
    q = get_queue(queue) if queue else None
    return list(Worker.all(connection=connection(), queue=q))


def live_worker_count(queue: str) -> int:
    """How many of the queue's registered workers still have their heartbeat key: two round
    trips, where live_workers() loads every worker (it sits on the enqueue and upload paths)."""
    q = get_queue(queue)
    keys = sorted(get_worker_keys(queue=q))
    if not keys:
        return 0
    with q.connection.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.exists(key)
        return sum(bool(found) for found in pipe.execute())


def live_worker_names() -> set[str]:
    return {w.name for w in live_workers()}


def queue_stats(name: str) -> dict[str, Any]:
    """A queue as /healthz and `manage.py health` show it, read-only and in a few round trips.

    RQ's own counts run each registry's cleanup first, which fails or retries jobs whose worker
    vanished: that is the reconciler's work, not a health probe's (and it cost a dozen round
    trips per queue). Registries scored by expiry count what that cleanup would keep."""
    q = get_queue(name)
    conn = q.connection
    now = time.time()
    with conn.pipeline(transaction=False) as pipe:
        pipe.llen(q.key)
        pipe.lindex(q.key, 0)
        for expiring in (StartedJobRegistry, FailedJobRegistry, FinishedJobRegistry):
            pipe.zcount(expiring(name, connection=conn).key, now, "+inf")
        pipe.zcard(ScheduledJobRegistry(name, connection=conn).key)  # type: ignore[no-untyped-call]  # by run time
        pipe.zcard(DeferredJobRegistry(name, connection=conn).key)  # never expire
        depth, first, started, failed, finished, scheduled, deferred = pipe.execute()
    oldest_age: float | None = None
    if first is not None:
        enqueued_at = conn.hget(JSONJob.key_for(as_text(first)), "enqueued_at")
        if enqueued_at:
            enqueued = utcparse(as_text(enqueued_at)).replace(tzinfo=UTC)
            oldest_age = round((datetime.now(UTC) - enqueued).total_seconds(), 1)
    return {
        "depth": depth,
        "oldest_age_seconds": oldest_age,
        "workers": live_worker_count(name),
        "started": started,
        "scheduled": scheduled,
        "deferred": deferred,
        "failed": failed,
        "finished": finished,
    }


def scheduler_alive() -> bool:
    conn = connection()
    # SCAN walks the whole keyspace (every job hash): a thousand keys per round trip, not ten.
    for key in conn.scan_iter(match="rq:scheduler_instance:*", count=1000):
        if not conn.hexists(key, "death"):
            return True
    return False


def clean_registries(queues: Sequence[str]) -> None:
    """RQ's own housekeeping (normally every 10 minutes in each worker): expire abandoned
    started jobs, drop stale worker registrations."""
    from rq.worker_registration import clean_worker_registry

    for name in queues:
        q = get_queue(name)
        clean_worker_registry(q)
        for registry in (StartedJobRegistry, FinishedJobRegistry, FailedJobRegistry, DeferredJobRegistry):
            registry(name, connection=q.connection, job_class=JSONJob, serializer=JSONSerializer).cleanup()


def scheduler() -> Any:
    return django_rq.get_scheduler("maintenance")
