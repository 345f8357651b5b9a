"""The one place that talks to RQ: the JSON job class, the worker classes, and queue access.

Everything else in Quire goes through backend.runtime and never imports rq.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import django_rq
from django.conf import settings
from django.db import close_old_connections, connections
from django.utils.module_loading import import_string
from redis import Redis
from redis import exceptions as redis_exceptions
from redis.sentinel import Sentinel
from rq import Retry, SimpleWorker, Worker
from rq.command import send_stop_job_command
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
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
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from rq.utils import as_text, utcparse
from rq.worker_registration import get_keys as get_worker_keys

logger = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # prctl(2)

__all__ = ["JSONJob", "JobTimeoutException"]


class JSONJob(RQJob):
    """An RQ job whose payload is JSON unless a caller insists otherwise.

    rq-scheduler 0.14 creates and fetches jobs without passing a serializer, which would
    silently fall back to pickle; making JSON the class default closes that gap everywhere
    the job class is used (queues, workers, scheduler, dashboard).
    """

    def __init__(self, id: str | None = None, connection: Redis | None = None, serializer: Any = None) -> None:
        super().__init__(id=id, connection=connection, serializer=serializer or JSONSerializer)


class _Scheduler(RQScheduler):
    """RQ's scheduler process, which moves due delayed retries into their queues."""

    def work(self) -> None:
        # Die with the worker that forked it. An orphan keeps its queues' locks, so no other
        # worker's scheduler takes over (seen: scheduler processes outliving in-process workers
        # that a crash test ended with os._exit).
        if sys.platform == "linux":
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != self._parent_pid:  # the worker died before prctl took effect
                return
        super().work()  # type: ignore[no-untyped-call]

    def start(self) -> Any:
        self._parent_pid = os.getpid()
        return super().start()  # type: ignore[no-untyped-call]


class _QuireWorkerMixin:
    """Shared behaviour of both worker classes.

    - JSON only: whatever serializer the command line asks for, a worker never unpickles.
    - Heartbeats short enough that a killed worker is noticed in seconds, not minutes.
    - When RQ gives up on a job the wrapper never saw end (the horse was killed, stopped, or
      timed out hard), the Job row is brought in line.
    """

    name: str
    connection: Redis
    queues: list[Queue]
    _stop_requested: bool
    _shutdown_requested_date: Any
    worker_ttl: int
    job_monitoring_interval: int
    _stopped_job_id: str | None
    serializer: Any
    scheduler: RQScheduler | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        requested = kwargs.get("serializer")
        if requested not in (None, JSONSerializer, settings.JSON_SERIALIZER, "json"):
            logger.warning("Ignoring serializer %r: Quire workers only read JSON payloads", requested)
        kwargs["serializer"] = JSONSerializer
        kwargs["job_class"] = JSONJob
        # rqworker passes --worker-ttl 420 unless told otherwise; Quire wants dead workers found fast.
        kwargs["worker_ttl"] = settings.QUIRE_JOBS["WORKER_TTL"]
        kwargs.setdefault("job_monitoring_interval", 5)
        kwargs.setdefault("maintenance_interval", 60)
        super().__init__(*args, **kwargs)
        use_client(self.connection, [queue.name for queue in self.queues])

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ gives each worker started with --with-scheduler a scheduler process for its own
        queues. A Quire worker's scheduler offers to serve every queue instead: the first to
        take the queues' locks runs the one process, the others stand by and take the locks
        over at their next maintenance (every minute) once the holder's have lapsed (61 s).
        The Procfile asks it of the two in-process workers only: one scheduler process instead
        of five (about 80 MB each), never forked from a worker holding a model."""
        if burst:
            super()._start_scheduler(burst, logging_level, date_format, log_format)  # type: ignore[misc]
            return
        self.scheduler = _Scheduler(
            list(settings.RQ_QUEUES),
            connection=self.connection,
            logging_level=logging_level or "INFO",
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
            name=self.name,  # the queues' locks name the worker that holds them
        )
        self.scheduler.acquire_locks()  # type: ignore[no-untyped-call]
        if self.scheduler.acquired_locks:
            self.scheduler.start()

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        # RQ adds 60 s to every routine heartbeat; a dead worker would then look alive for over
        # a minute. Keep the key only a little longer than the interval between heartbeats.
        # A longer timeout asked for on purpose (an in-process job that cannot heartbeat while
        # it runs, see InlineWorker.get_heartbeat_ttl) is kept.
        ttl = max(self.worker_ttl, self.job_monitoring_interval * 3) + 5
        if timeout is None or timeout <= self.job_monitoring_interval + 60:
            timeout = ttl
        super().heartbeat(timeout, pipeline=pipeline)  # type: ignore[misc]

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's loop survives a failed dequeue but quits on a connection error anywhere else
        (heartbeat, maintenance), and one exited worker makes honcho stop every process. So
        when the loop ends without being asked to stop, wait for Redis and start it again."""
        delay = 1.0
        while True:
            try:
                worked = bool(super().work(*args, **kwargs))  # type: ignore[misc]
            except redis_exceptions.ConnectionError:
                worked = False  # teardown could not reach Redis either
            stopping = self._stop_requested or self._shutdown_requested_date is not None
            if stopping or kwargs.get("burst") or kwargs.get("max_jobs") or kwargs.get("max_idle_time"):
                return worked
            logger.warning("Worker %s left its loop (Redis unreachable?); restarting it in %.0f s", self.name, delay)
            time.sleep(delay)
            delay = min(delay * 2, 15)
            try:
                self.connection.ping()
                # Mark the old registration dead so the fresh start may register the same name.
                self.register_death()  # type: ignore[attr-defined]
            except redis_exceptions.ConnectionError:
                continue
            delay = 1.0

    def handle_job_failure(
        self, job: RQJob, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        stopped = self._stopped_job_id == job.id
        super().handle_job_failure(  # type: ignore[misc]
            job, queue, started_job_registry=started_job_registry, exc_string=exc_string
        )
        from backend import services

        try:
            status = job.get_status(refresh=True)
        except (NoSuchJobError, InvalidJobOperation):
            status = None
        will_retry = status in (JobStatus.QUEUED, JobStatus.SCHEDULED)
        timed_out = "JobTimeoutException" in exc_string or "timeout" in exc_string.lower()
        services.job_lost(
            job_id=job.id, stopped=stopped, will_retry=will_retry, timed_out=timed_out, worker_name=self.name
        )
        from backend.runtime.execute import dispatch_next

        dispatch_next(queue.name)  # a killed horse never reached its own dispatch at the end
        connections.close_all()


class ForkingWorker(_QuireWorkerMixin, Worker):
    """For long jobs: each job runs in a forked work-horse that RQ can stop or kill."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._warm = False
        self._scheduler_first = False

    def work(self, *args: Any, **kwargs: Any) -> bool:
        self._scheduler_first = bool(kwargs.get("with_scheduler"))
        return super().work(*args, **kwargs)

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        if not self._scheduler_first:
            # At start, not in the first job (see _start_scheduler otherwise), and before the
            # worker registers: RQ installs its signal handlers only after bootstrap, so a
            # worker stopped while it loads dies on the spot; unregistered, it leaves nothing
            # behind that would count as a live worker until its key expired.
            self._warm_up()
        super().bootstrap(*args, **kwargs)

    def _start_scheduler(self, *args: Any, **kwargs: Any) -> None:
        # RQ forks its scheduler process here: before the preload, so that process does not
        # carry the model (measured: the podcast worker's scheduler child had 379 MB RSS).
        super()._start_scheduler(*args, **kwargs)
        try:
            self._warm_up()
            self.heartbeat()  # registered before the preload, which may have taken a while
        except BaseException:
            # RQ's work() has not entered its try/finally yet: stop the scheduler process here,
            # or the interpreter would wait for it forever instead of exiting with the error.
            self.stop_scheduler()  # type: ignore[no-untyped-call]
            raise

    def _warm_up(self) -> None:
        """Load what every job needs once, before the first work-horse: each horse inherits it
        copy-on-write instead of loading it per job. The queue's own preloads (the embedding
        model, the voice) come from settings.QUIRE_WORKER_PRELOAD."""
        if self._warm:
            return
        from backend.runtime.execute import warm_up

        for queue in self.queue_names():
            for path in settings.QUIRE_WORKER_PRELOAD.get(queue, []):
                logger.info("Preloading %s for queue %s", path, queue)
                import_string(path)()
        warm_up()
        self._warm = True

    def fork_work_horse(self, job: RQJob, queue: Queue) -> None:
        self._warm_up()  # no-op once warm (bootstrap or _start_scheduler did it)
        # A database socket shared by parent and horse corrupts both sides' protocol state.
        connections.close_all()
        # The horse's first full garbage collection would walk every object the worker loaded
        # (Django, the extraction libraries, the model's wrappers), writing to each one's header:
        # measured 0.1 s of a 0.9 s ingestion job, and every page it touches is copied out of
        # the memory the horse shares with the worker. Frozen objects are left out of
        # collections; the worker unfreezes its own once the horse is forked.
        gc.freeze()
        try:
            super().fork_work_horse(job, queue)
        finally:
            gc.unfreeze()


class InlineWorker(_QuireWorkerMixin, SimpleWorker):
    """For short jobs: no fork (about 7x the throughput); cancellation is cooperative only."""

    def execute_job(self, job: RQJob, queue: Queue) -> Any:
        # Jobs run in this process on the connection the last one used: one the server has
        # closed meanwhile (a restart, a failover) is replaced here, not discovered by the job
        # (seen: every later job stuck on the dead connection). A forking worker's horses start
        # without one (fork_work_horse closes them all).
        close_old_connections()
        return super().execute_job(job, queue)

    def get_heartbeat_ttl(self, job: RQJob) -> int:
        # Nothing heartbeats while an in-process job runs, so cover its whole time limit.
        return int(job.timeout or 180) + 60


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
