"""Job kinds used only by the test suite (loaded by workers through the `tests` test app).

They keep their bookkeeping in Redis (counters under keys the test chooses) so a test can
see from outside how often and how far a job ran.
"""

import asyncio
import os
import time
from typing import Any

from django.conf import settings

from backend.runtime import JobError, aprogress, job, progress
from backend.runtime import rq as rq_adapter


def _redis() -> Any:
    return rq_adapter.connection()


def _echo_for(queue: str) -> Any:
    def echo(*, value: str) -> dict[str, Any]:
        return {"value": value, "queue": queue, "pid": os.getpid(), "worker": os.environ.get("RQ_WORKER_ID", "")}

    echo.__name__ = f"echo_{queue}"
    return job(f"tests.echo_{queue}", queue=queue)(echo)


for _queue in settings.RQ_QUEUES:
    globals()[f"echo_{_queue}"] = _echo_for(_queue)


@job("tests.flaky", queue="default", retries=3, retry_intervals=[2, 3, 3])
def flaky(*, key: str, failures: int) -> int:
    """Fails `failures` times, then succeeds."""
    return _flaky(key, failures)


@job("tests.flaky_reports", queue="reports", retries=1, retry_intervals=[1])
def flaky_reports(*, key: str, failures: int) -> int:
    """tests.flaky on a queue served by a forking worker, which runs no scheduler of its own."""
    return _flaky(key, failures)


def _flaky(key: str, failures: int) -> int:
    attempt = int(_redis().incr(f"{key}:attempts"))
    _redis().rpush(f"{key}:times", time.time())
    if attempt <= failures:
        raise ConnectionError(f"transient failure {attempt}")
    return attempt


@job("tests.always_fails", queue="default", retries=1, retry_intervals=[1])
def always_fails(*, key: str) -> None:
    _redis().incr(f"{key}:attempts")
    raise ValueError("secret detail /srv/quire/private/path.txt must not reach the API")


@job("tests.rejects", queue="default", retries=3)
def rejects(*, key: str) -> None:
    _redis().incr(f"{key}:attempts")
    raise JobError("UNSUPPORTED_TYPE", "This file type is not supported.")


def _sleeper(*, key: str, seconds: float, steps: int = 10) -> str:
    r = _redis()
    r.incr(f"{key}:starts")
    r.set(f"{key}:pid", os.getpid())
    for step in range(steps):
        progress(int(100 * step / steps), f"Step {step + 1}/{steps}")
        time.sleep(seconds / steps)
    r.incr(f"{key}:effect")
    return "done"


@job("tests.sleeper_reports", queue="reports", retries=2, retry_intervals=[1, 1])
def sleeper_reports(*, key: str, seconds: float, steps: int = 10) -> str:
    return _sleeper(key=key, seconds=seconds, steps=steps)


@job("tests.sleeper_default", queue="default", retries=2, retry_intervals=[1, 1])
def sleeper_default(*, key: str, seconds: float, steps: int = 10) -> str:
    return _sleeper(key=key, seconds=seconds, steps=steps)


@job("tests.record", queue="default")
def record(*, key: str, name: str, delay: float = 0.0) -> str:
    time.sleep(delay)
    _redis().rpush(f"{key}:order", name)
    return name


@job("tests.fails_once_reports", queue="reports", retries=0)
def fails_once_reports(*, key: str, fail: bool) -> int:
    """On a fair queue: counts its runs; with ``fail``, its first run fails with a code."""
    runs = int(_redis().incr(f"{key}:runs"))
    if fail and runs == 1:
        raise JobError("EXTRACTION_FAILED", "The text could not be extracted.")
    return runs


async def _async_steps(*, key: str, steps: int = 4, seconds: float = 0.4, failures: int = 0) -> dict[str, Any]:
    """A coroutine job: reports progress between awaits; fails ``failures`` times, then succeeds."""
    r = _redis()
    attempt = int(r.incr(f"{key}:attempts"))
    r.set(f"{key}:pid", os.getpid())
    for step in range(steps):
        await aprogress(int(100 * step / steps), f"Step {step + 1}/{steps}")
        await asyncio.sleep(seconds / steps)
    if attempt <= failures:
        raise ConnectionError(f"transient failure {attempt}")
    r.incr(f"{key}:effect")
    return {"attempt": attempt, "steps": steps}


@job("tests.async_steps", queue="default", retries=1, retry_intervals=[1])
async def async_steps(*, key: str, steps: int = 4, seconds: float = 0.4, failures: int = 0) -> dict[str, Any]:
    return await _async_steps(key=key, steps=steps, seconds=seconds, failures=failures)


@job("tests.async_steps_reports", queue="reports", retries=1, retry_intervals=[1])
async def async_steps_reports(*, key: str, steps: int = 4, seconds: float = 0.4, failures: int = 0) -> dict[str, Any]:
    """tests.async_steps in a forked work-horse."""
    return await _async_steps(key=key, steps=steps, seconds=seconds, failures=failures)
