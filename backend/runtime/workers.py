"""The worker classes the Procfile names (``--worker-class backend.runtime.workers.ForkingWorker``),
the top layer of the job runtime. They subclass RQ's workers and override the methods named in
RQ_WORKER_OVERRIDES and RQ_SCHEDULER_OVERRIDES, most of them private to RQ; each override says why."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import sys
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils.module_loading import import_string
from redis import Redis
from redis import exceptions as redis_exceptions
from rq import SimpleWorker, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.queue import Queue
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from backend.runtime.execute import dispatch_next, leave_refill_to_worker, warm_up
from backend.runtime.rq import JSONJob, use_client
from backend.runtime.rq import delete as rq_delete
from backend.runtime.state import GROUP_LOST, companions_release, has_companions, job_lost, job_requeue

logger = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # prctl(2)

# The RQ methods overridden below: RQ's internals, not its documented API (rq is pinned in
# requirements.txt). backend/tests/test_framework_seams.py fails when an upgrade drops one,
# changes its parameters or stops calling it where these overrides expect. Figures: bench/README.md.
RQ_WORKER_OVERRIDES = (
    "__init__",  # JSON payloads only, and a worker TTL short enough to notice a dead worker
    "work",  # restart the loop after a Redis outage: one exited worker makes honcho stop them all
    "bootstrap",  # ForkingWorker: preload before registering, while a stop still ends it at once
    "_start_scheduler",  # one scheduler process for all queues, forked before the preload
    "heartbeat",  # a dead worker's key lapses in seconds, not after RQ's extra minute
    "handle_job_failure",  # bring the Job row in line when the horse died without ending it
    "fork_work_horse",  # gc.freeze around the fork; refill RQ's queue while the horse runs
    "main_work_horse",  # the horse drops the database connections it inherited
    "execute_job",  # InlineWorker: replace a database connection the server closed meanwhile
    "get_heartbeat_ttl",  # InlineWorker: an in-process job cannot heartbeat; cover its time limit
)
RQ_SCHEDULER_OVERRIDES = (
    "start",  # note the worker's pid before the scheduler process is forked
    "work",  # in that process: die with the worker (an orphan keeps the queues' locks)
)


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
        of five, never forked from a worker holding a model."""
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
        try:
            status = job.get_status(refresh=True)
        except (NoSuchJobError, InvalidJobOperation):
            status = None
        will_retry = status in (JobStatus.QUEUED, JobStatus.SCHEDULED)
        timed_out = "JobTimeoutException" in exc_string or "timeout" in exc_string.lower()
        # Jobs it had taken along (runtime/companions.py) wait again, their attempt not counted.
        # After anything but a cancel, whose input ended the horse is unknown: the lead goes back
        # the same way (out of RQ, which may have scheduled its retry), and each runs alone.
        # The lead first: while its companions still run, the reconciler leaves it to us.
        crashed = not stopped
        if not (crashed and has_companions(lead_id=job.id, worker_name=self.name) and self._requeue_lead(job)):
            job_lost(job_id=job.id, stopped=stopped, will_retry=will_retry, timed_out=timed_out, worker_name=self.name)
        companions_release(lead_id=job.id, worker_name=self.name, crashed=crashed)
        dispatch_next(queue.name)  # a killed horse never reached its own dispatch at the end
        connections.close_all()

    def _requeue_lead(self, job: RQJob) -> bool:
        rq_delete(job.id)
        lead = job_requeue(
            job_id=job.id, worker_name=self.name, counted=False, error_code="WORKER_LOST", error=GROUP_LOST
        )
        return lead is not None


# The worker's database connections as a work-horse inherited them: referenced until the horse
# exits (os._exit, no finalizers), never closed nor used.
_inherited_connections: list[Any] = []


def _abandon_inherited_connections() -> None:
    """In a freshly forked horse: the worker's database connections share their sockets with the
    worker, so a query or a close here would corrupt or end the worker's session (closing a
    PostgreSQL connection sends Terminate on the shared socket). The horse forgets them and
    opens its own when the job first queries; the worker is never inside a transaction at a fork."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _inherited_connections.append(conn.connection)
            conn.connection = None


class ForkingWorker(_QuireWorkerMixin, Worker):
    """For long jobs: each job runs in a forked work-horse that RQ can stop or kill."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._warm = False
        self._scheduler_first = False
        leave_refill_to_worker()

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
        # carry the model.
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
        for queue in self.queue_names():
            for path in settings.QUIRE_WORKER_PRELOAD.get(queue, []):
                logger.info("Preloading %s for queue %s", path, queue)
                import_string(path)()
        warm_up()
        self._warm = True

    def fork_work_horse(self, job: RQJob, queue: Queue) -> None:
        self._warm_up()  # no-op once warm (bootstrap or _start_scheduler did it)
        # The horse's first full garbage collection would write to every object the worker
        # loaded, copying each page it touches out of the memory shared with the worker. Frozen
        # objects are left out of collections; the worker unfreezes its own after the fork.
        gc.freeze()
        try:
            super().fork_work_horse(job, queue)
        finally:
            gc.unfreeze()
        # Refill the place the job left in RQ's queue here, while the horse runs: done in the
        # horse, it took the job's CPU. RQ starts watching the horse only after this returns,
        # which delays nothing (its end is seen when it comes, by waitpid). The worker keeps its
        # database connection between jobs; the horse leaves it alone (main_work_horse).
        close_old_connections()
        dispatch_next(queue.name)

    def main_work_horse(self, job: RQJob, queue: Queue) -> None:
        _abandon_inherited_connections()
        super().main_work_horse(job, queue)


class InlineWorker(_QuireWorkerMixin, SimpleWorker):
    """For short jobs: no fork per job (several times the throughput); cancellation is cooperative only."""

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
