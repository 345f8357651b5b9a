"""Redis memory per queued and per finished job, for the README's capacity plan.

    .venv/bin/python -m bench.redis_memory [N]

Starts a private Redis (AOF on, as production) and a scratch SQLite database in a temporary
folder, enqueues N ingestion-sized jobs through the job runtime (a Job row and an RQ job each,
with their events), measures Redis's used_memory, runs them with a burst worker and measures
again while their results are kept (RQ's result TTL, 500 s). Nothing else shares that Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    work = Path(tempfile.mkdtemp(prefix="quire-redis-memory-"))
    from backend import embedded_redis

    server, url = embedded_redis.start(work / "redis")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings.test",
        "REDIS_URL": url,
        "QUIRE_TEST_REDIS_DB": "0",
        "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}",
        "QUIRE_DATA_DIR": str(work),
    }
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        subprocess.run(
            [sys.executable, "-m", "bench.redis_memory", "--measure", str(count)], cwd=ROOT, env=env, check=True
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


def measure(count: int) -> None:
    import django

    django.setup()
    from backend.runtime import get_kind
    from backend.runtime import rq as rq_adapter

    conn = rq_adapter.connection("default")
    conn.flushdb()
    base = conn.info("memory")["used_memory"]
    kind = get_kind("tests.echo_default")
    for i in range(count):
        kind.enqueue({"value": f"source {i:06d} " + "x" * 40})  # type: ignore[union-attr]
    queued = conn.info("memory")["used_memory"]
    worker = rq_adapter.get_queue("default")
    subprocess.run(
        [sys.executable, "manage.py", "rqworker", "default", "--burst", "--worker-class",
         "backend.runtime.workers.InlineWorker", "--serializer", "rq.serializers.JSONSerializer"],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert worker.count == 0
    finished = conn.info("memory")["used_memory"]
    print(
        f"[figures] {count} jobs: Redis used_memory baseline {base / 1e6:.1f} MB, "
        f"{(queued - base) / count:.0f} B per queued job, {(finished - base) / count:.0f} B per finished job "
        f"(result kept 500 s, events capped per notebook)"
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--measure":
        measure(int(sys.argv[2]))
    else:
        main()
