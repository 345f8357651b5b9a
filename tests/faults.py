"""Fault injection for crash tests: a worker started with QUIRE_CRASH_AT="<kind>|<step prefix>"
dies (os._exit, like a SIGKILL) the first time a job of that kind reports that step."""

import os

from backend.runtime import rq as rq_adapter


def maybe_crash(kind: str, job_id: str, message: str) -> None:
    spec = os.environ.get("QUIRE_CRASH_AT")
    if not spec:
        return
    want_kind, prefix = spec.split("|", 1)
    if kind != want_kind or not message.startswith(prefix):
        return
    if rq_adapter.connection().set(f"quire:test:crashed:{job_id}:{prefix}", 1, nx=True):
        os._exit(137)
