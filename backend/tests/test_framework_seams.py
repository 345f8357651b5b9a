"""The framework internals Quire relies on still look and behave as its overrides expect.

backend/asgi.py replaces methods of Django's ASGIHandler (DJANGO_HANDLER_OVERRIDES) and
backend/runtime/workers.py overrides methods of RQ's workers and scheduler (RQ_WORKER_OVERRIDES,
RQ_SCHEDULER_OVERRIDES), most of them private. An upgrade of Django or RQ that renames one,
changes its parameters or stops calling it where Quire expects fails here, not in production.
Why each override exists, and what it measured: bench/README.md, "Framework seams"."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import rq.scheduler
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpResponse, StreamingHttpResponse
from rq import SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler
from rq.worker.base import BaseWorker

from backend.asgi import DJANGO_HANDLER_OVERRIDES, SyncChainASGIHandler
from backend.runtime.workers import (
    RQ_SCHEDULER_OVERRIDES,
    RQ_WORKER_OVERRIDES,
    ForkingWorker,
    InlineWorker,
    _Scheduler,
)

# --- the checker -----------------------------------------------------------------------------

# Keyword arguments that an override taking (*args, **kwargs) reads or sets: the framework's
# method must still take them.
KWARGS_READ: dict[str, tuple[str, ...]] = {
    "__init__": ("serializer", "job_class", "worker_ttl", "job_monitoring_interval", "maintenance_interval"),
    "work": ("burst", "max_jobs", "max_idle_time", "with_scheduler"),
    "bootstrap": (),
    "_start_scheduler": (),  # ForkingWorker's passes all through to the mixin's, checked by name
}


def parameter_names(func: Callable[..., Any]) -> list[str]:
    return [name for name in inspect.signature(func).parameters if name != "self"]


def takes_anything(func: Callable[..., Any]) -> bool:
    kinds = {p.kind for p in inspect.signature(func).parameters.values()}
    return inspect.Parameter.VAR_POSITIONAL in kinds and inspect.Parameter.VAR_KEYWORD in kinds


def referenced_names(func: Callable[..., Any]) -> set[str]:
    """Attribute and global names a function's code uses, its nested functions' included."""
    names: set[str] = set()
    pending = [inspect.unwrap(func).__code__]
    while pending:
        code = pending.pop()
        names.update(code.co_names)
        pending.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    return names


def seam_problems(
    base: type, name: str, params: Sequence[str] | None = None, *, exact: bool = True, calls: Sequence[str] = ()
) -> list[str]:
    """What no longer holds of ``base.<name>``: it is gone, its parameters are not ``params``
    (or, not ``exact``, lack one of them), or its code no longer uses each name in ``calls``."""
    where = f"{base.__name__}.{name}"
    func = getattr(base, name, None)
    if func is None:
        return [f"{where} is gone"]
    problems = []
    if params is not None:
        actual = parameter_names(func)
        if exact and actual != list(params):
            problems.append(f"{where} takes ({', '.join(actual)}), Quire's code ({', '.join(params)})")
        missing = [p for p in params if p not in actual]
        if not exact and missing:
            problems.append(f"{where} no longer takes {', '.join(missing)}")
    used = referenced_names(func)
    problems += [f"{where} no longer calls {call}" for call in calls if call not in used]
    return problems


def override_problems(ours: type, base: type, names: Sequence[str]) -> list[str]:
    """Each of ``names`` that Quire's class (or a Quire class it inherits) defines still exists
    on the framework's ``base`` and takes what Quire's definition takes (or reads)."""
    problems = []
    for name in names:
        for klass in ours.__mro__:
            if klass.__module__.startswith("backend.") and name in vars(klass):
                func = vars(klass)[name]
                if takes_anything(func):
                    problems += seam_problems(base, name, KWARGS_READ[name], exact=False)
                else:
                    problems += seam_problems(base, name, parameter_names(func))
    return list(dict.fromkeys(problems))  # a method both a mixin and its subclass override: once


def undeclared_overrides(ours: type, base: type, declared: Sequence[str]) -> set[str]:
    """Methods of the framework's ``base`` that Quire's class redefines without declaring them."""
    return {
        name
        for klass in ours.__mro__
        if klass.__module__.startswith("backend.")
        for name, value in vars(klass).items()
        if callable(value) and hasattr(base, name) and name not in declared
    }


# --- the checker reports what an upgrade would break --------------------------------------------


class _RQAsPinned:
    def fork_work_horse(self, job: Any, queue: Any) -> None:
        self.main_work_horse(job, queue)

    def main_work_horse(self, job: Any, queue: Any) -> None: ...


class _RQMethodGone:
    pass


class _RQNewParameter:
    def fork_work_horse(self, job: Any, queue: Any, pipeline: Any = None) -> None:
        self.main_work_horse(job, queue)

    def main_work_horse(self, job: Any, queue: Any) -> None: ...


class _RQNoLongerCalls:
    def fork_work_horse(self, job: Any, queue: Any) -> None:
        self.spawn_horse(job, queue)

    def spawn_horse(self, job: Any, queue: Any) -> None: ...


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        (_RQAsPinned, []),
        (_RQMethodGone, ["_RQMethodGone.fork_work_horse is gone"]),
        (_RQNewParameter, ["_RQNewParameter.fork_work_horse takes (job, queue, pipeline), Quire's code (job, queue)"]),
        (_RQNoLongerCalls, ["_RQNoLongerCalls.fork_work_horse no longer calls main_work_horse"]),
    ],
)
def test_the_checker_reports_a_method_gone_reshaped_or_no_longer_called(base: type, expected: list[str]) -> None:
    assert seam_problems(base, "fork_work_horse", ["job", "queue"], calls=["main_work_horse"]) == expected


def test_the_checker_reports_a_keyword_argument_a_base_no_longer_takes() -> None:
    class OldWorker:
        def work(self, burst: bool = False, max_jobs: int | None = None) -> None: ...

    assert seam_problems(OldWorker, "work", ["burst", "with_scheduler"], exact=False) == [
        "OldWorker.work no longer takes with_scheduler"
    ]


def test_the_checker_finds_an_override_of_a_framework_method_left_undeclared() -> None:
    QuireWorker = type("QuireWorker", (Worker,), {"__module__": "backend.fake", "perform_job": lambda self: None})

    assert undeclared_overrides(QuireWorker, Worker, RQ_WORKER_OVERRIDES) == {"perform_job"}


# --- RQ ------------------------------------------------------------------------------------------


def test_every_override_of_an_rq_method_is_declared() -> None:
    assert undeclared_overrides(ForkingWorker, Worker, RQ_WORKER_OVERRIDES) == set()
    assert undeclared_overrides(InlineWorker, SimpleWorker, RQ_WORKER_OVERRIDES) == set()
    assert undeclared_overrides(_Scheduler, RQScheduler, RQ_SCHEDULER_OVERRIDES) == set()
    overridden = {
        name
        for klass in (ForkingWorker, InlineWorker)
        for name in RQ_WORKER_OVERRIDES
        if any(k.__module__.startswith("backend.") and name in vars(k) for k in klass.__mro__)
    }
    assert overridden == set(RQ_WORKER_OVERRIDES)  # no stale name in the list either


@pytest.mark.parametrize(("ours", "base"), [(ForkingWorker, Worker), (InlineWorker, SimpleWorker)])
def test_rq_workers_still_have_each_overridden_method_with_the_same_parameters(ours: type, base: type) -> None:
    assert override_problems(ours, base, RQ_WORKER_OVERRIDES) == []


def test_rq_scheduler_still_has_the_overridden_methods_and_runs_work_in_its_process() -> None:
    assert override_problems(_Scheduler, RQScheduler, RQ_SCHEDULER_OVERRIDES) == []
    # _Scheduler.start notes the parent's pid; work() must run in the process start() forks.
    assert seam_problems(RQScheduler, "start", calls=["run"]) == []
    assert "work" in referenced_names(rq.scheduler.run)
    expected = ["queues", "connection", "logging_level", "date_format", "log_format", "serializer", "name"]
    assert seam_problems(RQScheduler, "__init__", expected, exact=False) == []
    assert seam_problems(RQScheduler, "acquire_locks") == []
    assert isinstance(inspect.getattr_static(RQScheduler, "acquired_locks"), property)


def test_rq_still_calls_the_overridden_methods_where_quire_expects() -> None:
    problems = [
        # ForkingWorker's horse drops its inherited connections in main_work_horse.
        *seam_problems(Worker, "fork_work_horse", calls=["main_work_horse"]),
        *seam_problems(Worker, "execute_job", calls=["fork_work_horse", "monitor_work_horse"]),
        # A horse that died unseen reaches handle_job_failure, where the Job row is put right.
        *seam_problems(Worker, "monitor_work_horse", calls=["handle_job_failure", "heartbeat"]),
        # InlineWorker's long TTL reaches heartbeat() through get_heartbeat_ttl.
        *seam_problems(BaseWorker, "prepare_job_execution", calls=["get_heartbeat_ttl", "heartbeat"]),
        *seam_problems(BaseWorker, "maintain_heartbeats", calls=["heartbeat", "get_heartbeat_ttl"]),
        *seam_problems(SimpleWorker, "execute_job", calls=["perform_job"]),
        # What the overrides call or read on RQ's worker.
        *seam_problems(BaseWorker, "register_death", []),
        *seam_problems(BaseWorker, "stop_scheduler", []),
        *seam_problems(BaseWorker, "queue_names", []),
        *seam_problems(
            BaseWorker,
            "__init__",
            calls=["_stop_requested", "_shutdown_requested_date", "_stopped_job_id", "scheduler", "worker_ttl"],
        ),
    ]
    assert problems == []


class _RecordingWorker(Worker):
    """RQ's own work() loop, every step it delegates recorded instead of run (no Redis)."""

    should_run_maintenance_tasks = False  # type: ignore[assignment]

    def __init__(self) -> None:  # RQ's constructor would connect to Redis
        self.calls: list[str] = []
        self.name = "recording"
        self.log = logging.getLogger(__name__)
        self._stop_requested = False
        self.worker_ttl = 420
        self._jobs = [("job", "queue")]

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append("bootstrap")

    def _start_scheduler(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append("_start_scheduler")

    def _install_signal_handlers(self) -> None:
        self.calls.append("_install_signal_handlers")

    def check_for_suspension(self, burst: bool) -> None:
        if not self._jobs:
            raise StopRequested

    def dequeue_job_and_maintain_ttl(self, *args: Any, **kwargs: Any) -> Any:
        return self._jobs.pop()

    def execute_job(self, job: Any, queue: Any) -> None:
        self.calls.append("execute_job")

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        self.calls.append("heartbeat")

    def teardown(self) -> None:
        self.calls.append("teardown")


def test_rq_work_bootstraps_then_forks_the_scheduler_before_installing_signal_handlers() -> None:
    # ForkingWorker preloads in bootstrap, or in _start_scheduler when there is a scheduler to
    # fork first; a failed preload there must stop the scheduler itself (no teardown yet).
    worker = _RecordingWorker()

    worked = worker.work(with_scheduler=True)

    assert worked is True
    assert worker.calls == [
        "bootstrap",
        "_start_scheduler",
        "_install_signal_handlers",
        "execute_job",
        "heartbeat",
        "teardown",
    ]


def test_rq_heartbeat_sets_the_workers_key_to_expire_after_the_timeout_given() -> None:
    # Quire's heartbeat override only picks the timeout; RQ's must still apply it.
    class FakeRedis:
        def __init__(self) -> None:
            self.expiries: list[tuple[str, int]] = []

        def hset(self, key: str, field: str, value: str) -> None: ...

        def expire(self, key: str, seconds: int) -> None:
            self.expiries.append((key, seconds))

    worker = Worker.__new__(Worker)
    worker.name = "seam"
    worker.log = logging.getLogger(__name__)
    worker.connection = FakeRedis()  # type: ignore[assignment]

    Worker.heartbeat(worker, 23)

    assert worker.connection.expiries == [(worker.key, 23)]  # type: ignore[attr-defined]


# --- Django --------------------------------------------------------------------------------------


def test_every_override_of_a_django_handler_method_is_declared() -> None:
    assert undeclared_overrides(SyncChainASGIHandler, ASGIHandler, DJANGO_HANDLER_OVERRIDES) == set()
    assert set(DJANGO_HANDLER_OVERRIDES) <= set(vars(SyncChainASGIHandler))


def test_django_handler_still_has_each_replaced_method_with_the_same_parameters() -> None:
    assert override_problems(SyncChainASGIHandler, ASGIHandler, DJANGO_HANDLER_OVERRIDES) == []


def test_djangos_replaced_methods_do_no_more_than_the_copies_in_backend_asgi() -> None:
    # __init__ and __call__ are copies of Django's with one thing changed: work Django adds to
    # them in an upgrade would be skipped here, so any new name in their code fails this.
    assert referenced_names(ASGIHandler.__init__) == {"super", "__init__", "load_middleware"}
    assert referenced_names(ASGIHandler.__call__) == {"ValueError", "ThreadSensitiveContext", "handle"}


def test_django_still_calls_what_the_handler_relies_on() -> None:
    problems = [
        *seam_problems(BaseHandler, "load_middleware", ["is_async"]),
        *seam_problems(BaseHandler, "get_response", ["request"]),
        *seam_problems(ASGIHandler, "handle", ["scope", "receive", "send"], calls=["run_get_response"]),
        *seam_problems(ASGIHandler, "run_get_response", ["request"], calls=["get_response_async"]),
    ]
    assert problems == []


def _get(app: Any, path: str) -> tuple[int, bytes]:
    """One GET through an ASGI app, in process."""
    received: list[dict[str, Any]] = []

    async def call() -> None:
        requested = False
        disconnect = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await disconnect.wait()  # the client stays; Django cancels this when done
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            received.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"localhost")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)

    asyncio.run(call())
    body = b"".join(m.get("body", b"") for m in received if m["type"] == "http.response.body")
    return received[0]["status"], body


@pytest.fixture
def handler() -> Any:
    handler = SyncChainASGIHandler()
    yield handler
    handler._threads.shutdown(wait=True)


def test_a_request_runs_the_sync_middleware_chain_and_view_on_a_pool_thread(handler: Any) -> None:
    threads: list[str] = []
    get_response = handler.get_response

    def recording_get_response(request: Any) -> Any:
        threads.append(threading.current_thread().name)
        return get_response(request)

    handler.get_response = recording_get_response

    status, _ = _get(handler, "/no-such-page-for-the-seam-test")

    assert status == 404
    assert len(threads) == 1 and threads[0].startswith("request")
    # Built sync: one hop per request. Django's own handler builds it async (a hop per method).
    assert not asyncio.iscoroutinefunction(handler._middleware_chain)
    assert asyncio.iscoroutinefunction(ASGIHandler()._middleware_chain)


def test_a_sync_streaming_body_is_read_chunk_by_chunk_on_pool_threads(handler: Any) -> None:
    readers: list[str] = []

    def chunks() -> Any:
        for part in (b"one ", b"two"):
            readers.append(threading.current_thread().name)
            yield part

    handler.get_response = lambda request: StreamingHttpResponse(chunks())

    async def fetch() -> tuple[bool, list[bytes]]:
        response = await handler.get_response_async(object())
        return response.is_async, [part async for part in response]

    is_async, parts = asyncio.run(fetch())

    # Django's send_response streams an async body from the event loop (no sync_to_async(list)).
    assert is_async is True
    assert parts == [b"one ", b"two"]
    assert len(readers) == 2 and all(name.startswith("request") for name in readers)


def test_a_plain_response_passes_through_get_response_async_unchanged(handler: Any) -> None:
    plain = HttpResponse(b"ok")
    handler.get_response = lambda request: plain

    response = asyncio.run(handler.get_response_async(object()))

    assert response is plain
