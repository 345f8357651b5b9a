"""Redis Sentinel failover under load: 1 master, 1 replica and 3 sentinels on loopback ports, the
web process, workers and the scheduler configured with REDIS_SENTINELS (production settings).
The master is SIGKILLed while a batch is ingesting; Sentinel promotes the replica and every
process finds it by itself. Skipped, with the reason, where redis-server or redis-sentinel is
missing (`.ci/run` installs them with apt)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from backend.devrun import supervisord_config
from notebooks.ingest.chunking import chunk_text
from notebooks.ingest.extract import extract
from notebooks.ingest.samples import prose
from tests.helpers import wait_for
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
MASTER = "quire"
pytestmark = [pytest.mark.slow]


def _skip_reason() -> str | None:
    for binary in ("redis-server", "redis-sentinel"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (apt-get install redis-server redis-sentinel)"
    return None


class Topology:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.master_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.web_port = free_port()
        self.db_path = work / "quire.sqlite3"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "QUIRE_", "DATABASE_", "REDIS_"))},
            "DJANGO_SETTINGS_MODULE": "backend.settings.production",
            "DJANGO_SECRET_KEY": "failover-test-secret",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE_COOKIES": "false",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            # Only the database number is taken from the URL behind Sentinel.
            "REDIS_URL": "redis://unused:6379/0",
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
            "REDIS_SENTINEL_MASTER": MASTER,
            "QUIRE_DATA_DIR": str(work / "data"),
            "QUIRE_WORKER_TTL": "15",
            "QUIRE_RECONCILE_GRACE_SECONDS": "10",
            "PYTHONUNBUFFERED": "1",
        }
        self.base_url = f"http://127.0.0.1:{self.web_port}"

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def redis_server(self, name: str, port: int, *extra: str) -> None:
        data = self.work / name
        data.mkdir()
        self.spawn(
            name,
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data), "--appendonly", "yes",
             "--save", "", "--maxmemory-policy", "noeviction", *extra],
        )  # fmt: skip
        wait_for(lambda: _pings(port), timeout=15, message=f"{name} on {port}")

    def start_redis(self) -> None:
        self.redis_server("master", self.master_port)
        self.redis_server("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        for i, port in enumerate(self.sentinel_ports):
            conf = self.work / f"sentinel-{i}.conf"  # Sentinel rewrites its file: one each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.work}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self.spawn(f"sentinel-{i}", ["redis-sentinel", str(conf)])
        for port in self.sentinel_ports:
            wait_for(lambda port=port: _pings(port), timeout=15, message=f"sentinel on {port}")

        def replica_known() -> bool:
            info = Redis(port=self.sentinel_ports[0]).sentinel_master(MASTER)
            return bool(info.get("num-slaves", 0) >= 1 and info.get("num-other-sentinels", 0) >= 2)

        wait_for(replica_known, timeout=30, interval=0.2, message="sentinels to know the replica and each other")

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def worker(self, name: str, queue: str, worker_class: str) -> None:
        scheduler = ["--with-scheduler"] if worker_class == "InlineWorker" else []
        self.spawn(
            name,
            [sys.executable, "manage.py", "rqworker", queue,
             "--worker-class", f"backend.runtime.workers.{worker_class}",
             "--serializer", "rq.serializers.JSONSerializer", *scheduler, "--name", name],
            env=self.env,
        )  # fmt: skip

    def jobs(self, where: str = "1=1", params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with sqlite3.connect(self.db_path, timeout=30) as db:
            db.row_factory = sqlite3.Row
            return list(db.execute(f"SELECT * FROM backend_job WHERE {where}", params))

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(self.logs.iterdir()))

    def close(self) -> None:
        supervisor = self.procs.get("scheduler")
        if supervisor is not None and supervisor.poll() is None:
            supervisor.terminate()  # supervisord stops its programs (their own groups) first
            try:
                supervisor.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _pings(port: int) -> bool:
    try:
        return bool(Redis(port=port, socket_timeout=1, socket_connect_timeout=1).ping())
    except OSError:
        return False
    except Exception:
        return False


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    topo = Topology(tmp_path)
    try:
        yield topo
    finally:
        topo.close()


def test_killing_the_redis_master_mid_batch_loses_no_job(topology: Topology) -> None:
    t = topology
    t.start_redis()
    t.manage("migrate", "--noinput")
    t.manage("sync_schedules")
    t.manage(
        "shell", "-c", "from django.contrib.auth.models import User; User.objects.create_user('ada', password='pw')"
    )
    t.spawn(
        "web",
        [sys.executable, "-m", "uvicorn", "backend.asgi:application", "--host", "127.0.0.1", "--port", str(t.web_port)],
        env=t.env,
    )
    t.worker("np-1", "notebook_processing", "ForkingWorker")
    t.worker("np-2", "notebook_processing", "ForkingWorker")
    t.worker("default", "default", "InlineWorker")
    t.worker("maintenance", "maintenance", "InlineWorker")
    # rq-scheduler's loop ends on a Redis connection error (RQ's workers retry): in production
    # the process manager starts it again, as supervisord does here and under `make run`.
    run_dir = t.work / "supervisor"
    run_dir.mkdir()
    config = run_dir / "supervisord.conf"
    scheduler = f"{sys.executable} manage.py rqscheduler --queue maintenance --interval 5"
    config.write_text(supervisord_config(entries=[("scheduler", scheduler)], run_dir=run_dir))
    supervisord = str(Path(sys.executable).parent / "supervisord")
    t.spawn("scheduler", [supervisord, "-n", "-c", str(config)], env=t.env)

    def healthy() -> dict[str, Any] | None:
        try:
            report = httpx.get(f"{t.base_url}/healthz", timeout=10).json()
        except (httpx.HTTPError, ValueError):
            return None
        ok = report["queues"]["notebook_processing"]["workers"] == 2 and report["scheduler"]["ok"]
        return report if ok else None

    try:
        report = wait_for(healthy, timeout=120, interval=0.5, message="workers and the scheduler")
    except AssertionError:
        raise AssertionError(t.log_tail()) from None
    assert report["redis"]["master"] == f"127.0.0.1:{t.master_port}"

    token = httpx.post(f"{t.base_url}/api/v1/auth/token/", data={"username": "ada", "password": "pw"}).json()["token"]
    api = httpx.Client(base_url=t.base_url, headers={"Authorization": f"Token {token}"}, timeout=30)
    notebook = api.post("/api/v1/notebooks/", json={"title": "Failover"}).json()["id"]
    corpus = {f"doc-{i:02d}.md": f"# Document {i}\n\n{prose(2500, seed=300 + i)}\n".encode() for i in range(24)}
    expected = {}
    for name, data in corpus.items():
        text = extract(data, "md")
        expected[name] = len(chunk_text(text.text, text.pages))
    names = sorted(corpus)
    for start in range(0, len(names), 12):
        files = [("files", (n, corpus[n], "text/markdown")) for n in names[start : start + 12]]
        assert api.post(f"/api/v1/notebooks/{notebook}/sources/", files=files).status_code == 202

    # Kill the master once the batch is under way: some jobs done, most still to run.
    wait_for(lambda: len(t.jobs("status = 'succeeded' AND kind LIKE 'notebooks.%'")) >= 2, timeout=120,
             interval=0.1, message="the first jobs to finish")  # fmt: skip
    t.procs["master"].send_signal(signal.SIGKILL)
    t.procs["master"].wait()
    killed_at = time.monotonic()
    killed_wall = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")

    promoted = wait_for(
        lambda: Redis(port=t.sentinel_ports[1]).sentinel_get_master_addr_by_name(MASTER)[1] == t.replica_port,
        timeout=60,
        interval=0.2,
        message="Sentinel to promote the replica",
    )
    promoted_in = time.monotonic() - killed_at
    assert promoted

    first_after = wait_for(
        lambda: t.jobs("finished_at > ? AND status = 'succeeded'", (killed_wall,)),
        timeout=120,
        interval=0.2,
        message="a job to finish after the kill",
    )
    first_job_in = time.monotonic() - killed_at
    assert first_after

    def sources() -> list[dict[str, Any]]:
        return list(api.get(f"/api/v1/notebooks/{notebook}/sources/").json()["results"])

    def all_ended() -> list[dict[str, Any]] | None:
        found = sources()
        return found if all(s["status"] in ("ready", "failed", "cancelled") for s in found) else None

    try:
        found = wait_for(all_ended, timeout=300, interval=1, message="every source")
    except AssertionError:
        raise AssertionError(t.log_tail()) from None
    all_done_in = time.monotonic() - killed_at

    try:
        health = wait_for(healthy, timeout=60, interval=0.5, message="health after the failover")
    except AssertionError:
        raise AssertionError(f"{httpx.get(f'{t.base_url}/healthz', timeout=10).text}\n{t.log_tail()}") from None
    assert health["redis"]["master"] == f"127.0.0.1:{t.replica_port}"

    # The event stream is served from the new master too.
    with api.stream("GET", f"/api/v1/notebooks/{notebook}/events/", headers={"Last-Event-ID": "0-0"}) as events:
        assert events.status_code == 200
        first_lines = []
        for line in events.iter_lines():
            first_lines.append(line)
            if line.startswith("data:"):
                break
    assert any(line.startswith("data:") for line in first_lines)

    ready = [s for s in found if s["status"] == "ready"]
    wrong_chunks = [s["original_filename"] for s in ready if s["chunk_count"] != expected[s["original_filename"]]]
    # The batch's overview runs after its last source (and now checks its suggested questions by
    # answering them): wait for every notebook job to end before judging them.
    ingest_jobs = wait_for(
        lambda: (
            (jobs := t.jobs("kind LIKE 'notebooks.%'"))
            and all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs)
            and jobs
        ),
        timeout=120,
        interval=1,
        message="every notebook job to end",
    )
    ran_twice = [j["id"] for j in ingest_jobs if j["attempts"] > 1]
    scheduler_restarts = (t.logs / "scheduler.log").read_text().count("exited: scheduler")
    print(
        f"\n[figures] Redis master SIGKILLed mid-batch: sources={len(found)} ready={len(ready)} lost=0 "
        f"wrong chunk counts={len(wrong_chunks)} replica promoted {promoted_in:.1f}s after the kill, "
        f"first job finished {first_job_in:.1f}s after it, all done {all_done_in:.0f}s after it, "
        f"jobs run twice={len(ran_twice)} of {len(ingest_jobs)}, scheduler restarted {scheduler_restarts}x"
    )
    assert len(found) == len(corpus)
    assert len(ready) == len(corpus), [(s["original_filename"], s["error"]) for s in found if s["status"] != "ready"]
    assert wrong_chunks == []
    assert all(j["status"] == "succeeded" for j in ingest_jobs), [(j["id"], j["status"]) for j in ingest_jobs]
