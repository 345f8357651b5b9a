"""Fault injection for crash tests: a worker started with QUIRE_CRASH_AT="<kind>|<step prefix>"
dies (os._exit, like a SIGKILL) the first time a job of that kind reports that step; with
QUIRE_CRASH_EVERY_TIME="<job id>" as well, only that job, and every time (an input that always
kills its process)."""

import os

from backend.runtime import rq as rq_adapter


def maybe_crash(kind: str, job_id: str, message: str) -> None:
    spec = os.environ.get("QUIRE_CRASH_AT")
    if not spec:
        return
    want_kind, prefix = spec.split("|", 1)
    if kind != want_kind or not message.startswith(prefix):
        return
    every_time = os.environ.get("QUIRE_CRASH_EVERY_TIME")
    if every_time:
        if job_id == every_time:
            os._exit(137)
        return
    if rq_adapter.connection().set(f"quire:test:crashed:{job_id}:{prefix}", 1, nx=True):
        os._exit(137)


def maybe_pause(kind: str, job_id: str, message: str) -> None:
    """A worker started with QUIRE_PAUSE_AT="<kind>|<step prefix>" holds a job of that kind at
    that step for as long as the Redis key ``quire:test:hold:<kind>`` exists (at most 120 s)."""
    import time

    spec = os.environ.get("QUIRE_PAUSE_AT")
    if not spec:
        return
    want_kind, prefix = spec.split("|", 1)
    if kind != want_kind or not message.startswith(prefix):
        return
    deadline = time.monotonic() + 120
    while rq_adapter.connection().exists(f"quire:test:hold:{kind}") and time.monotonic() < deadline:
        time.sleep(0.05)


def inject(kind: str, job_id: str, message: str) -> None:
    maybe_pause(kind, job_id, message)
    maybe_crash(kind, job_id, message)
