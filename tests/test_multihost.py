"""Several hosts: Redis, PostgreSQL, the web process and two worker hosts, each in its own
network namespace, deployed as the README says (production settings, Procfile commands).
One worker host is cut off the network mid-ingestion; the other finishes its jobs.

The hosts share no folder: files go through django-storages to an S3-compatible server (moto's
standalone server, a dev requirement) on its own host, and the web and worker hosts reach
PostgreSQL through PgBouncer in transaction pooling mode on the database host, with the settings
the README prescribes. Skipped, with the reason, where namespaces, PostgreSQL, PgBouncer or moto
are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from rq import Worker
from rq.serializers import JSONSerializer

from notebooks.ingest.chunking import chunk_text
from notebooks.ingest.extract import extract
from notebooks.ingest.samples import prose
from tests import netns
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
RECOVERY_WINDOW_SECONDS = 120
WORKER_TTL_SECONDS = 15
PGBOUNCER = "/usr/sbin/pgbouncer"
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
BUCKET = "quire-multihost"
pytestmark = [pytest.mark.slow, pytest.mark.multihost]


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def _skip_reason() -> str | None:
    reason = netns.unavailable()
    if reason is None and _postgres_bin() is None:
        reason = "PostgreSQL server binaries (initdb, postgres) are not installed"
    if reason is None and shutil.which("redis-server") is None:
        reason = "redis-server is not installed"
    if reason is None and not Path(PGBOUNCER).exists():
        reason = "pgbouncer is not installed (apt-get install pgbouncer)"
    if reason is None and not MOTO_SERVER.exists():
        reason = "moto[server] is not installed (requirements-dev.txt)"
    return reason


class Deployment:
    """The hosts and what runs on them."""

    def __init__(self, lab: netns.Lab, work: Path) -> None:
        self.lab, self.work = lab, work
        self.logs = work / "logs"
        self.logs.mkdir()
        self.ip = {host: lab.add_host(host) for host in ("redis", "db", "web", "w1", "w2", "s3", "redis2")}
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "QUIRE_", "DATABASE_", "REDIS_"))},
            "DJANGO_SETTINGS_MODULE": "backend.settings.production",
            "DJANGO_SECRET_KEY": "multihost-test-secret",
            "DJANGO_ALLOWED_HOSTS": self.ip["web"],
            "DJANGO_SECURE_COOKIES": "false",
            "DJANGO_SECURE_SSL_REDIRECT": "false",  # plain HTTP between the namespaces
            # PgBouncer (transaction pooling) on the database host, as the README's example.
            "DATABASE_URL": f"postgres://postgres@{self.ip['db']}:6432/postgres",
            "DATABASE_SESSION_OPTIONS": "false",
            "DATABASE_CONN_MAX_AGE": "0",
            "QUIRE_S3_BUCKET": BUCKET,
            "QUIRE_S3_ENDPOINT_URL": f"http://{self.ip['s3']}:5000",
            "QUIRE_S3_REGION": "us-east-1",
            "QUIRE_S3_ACCESS_KEY": "test",
            "QUIRE_S3_SECRET_KEY": "test",
            "REDIS_URL": f"redis://{self.ip['redis']}:6379/0",
            "QUIRE_WORKER_TTL": str(WORKER_TTL_SECONDS),
            "PYTHONUNBUFFERED": "1",
        }
        self.base_url = f"http://{self.ip['web']}:8000"

    def start_redis(self) -> None:
        data = self.work / "redis"
        data.mkdir()
        args = ["redis-server", "--bind", self.ip["redis"], "--port", "6379", "--protected-mode", "no"]
        args += ["--appendonly", "yes", "--save", "", "--dir", str(data)]
        proc = self.lab.spawn("redis", args, self.logs / "redis.log")
        netns.wait_for_port(self.ip["redis"], 6379, proc=proc, log=self.logs / "redis.log")

    def start_sentinel_redis(self) -> None:
        """The master on `redis`, a replica on `redis2`, a sentinel on each of `redis`, `redis2`
        and `db`; every process then finds the master through the sentinels."""
        self.start_redis()
        data = self.work / "redis2"
        data.mkdir()
        args = ["redis-server", "--bind", self.ip["redis2"], "--port", "6379", "--protected-mode", "no"]
        args += ["--appendonly", "yes", "--save", "", "--dir", str(data), "--replicaof", self.ip["redis"], "6379"]
        proc = self.lab.spawn("redis2", args, self.logs / "redis2.log")
        netns.wait_for_port(self.ip["redis2"], 6379, proc=proc, log=self.logs / "redis2.log")
        for host in ("redis", "redis2", "db"):
            conf = self.work / f"sentinel-{host}.conf"
            conf.write_text(
                f"port 26379\nbind {self.ip[host]}\nprotected-mode no\ndir {self.work}\n"
                f"sentinel monitor quire {self.ip['redis']} 6379 2\n"
                "sentinel down-after-milliseconds quire 2000\nsentinel failover-timeout quire 10000\n"
            )
            proc = self.lab.spawn(host, ["redis-sentinel", str(conf)], self.logs / f"sentinel-{host}.log")
            netns.wait_for_port(self.ip[host], 26379, proc=proc, log=self.logs / f"sentinel-{host}.log")
        self.env["REDIS_SENTINELS"] = ",".join(f"{self.ip[h]}:26379" for h in ("redis", "redis2", "db"))
        self.env["REDIS_SENTINEL_MASTER"] = "quire"

        def replica_known() -> bool:
            info = Redis(host=self.ip["db"], port=26379, socket_timeout=5).sentinel_master("quire")
            return bool(info.get("num-slaves", 0) >= 1 and info.get("num-other-sentinels", 0) >= 2)

        wait_for(replica_known, timeout=60, interval=0.5, message="the sentinels to know the replica and each other")

    def start_postgres(self) -> None:
        bin_dir = _postgres_bin()
        assert bin_dir is not None
        data = Path(tempfile.mkdtemp(prefix="quire-pg-"))  # postgres must own it, outside root's tmp
        shutil.chown(data, "postgres", "postgres")
        self.pg_data = data
        as_postgres = ["runuser", "-u", "postgres", "--"]
        self.lab.run(
            "db", [*as_postgres, str(bin_dir / "initdb"), "-D", str(data / "pg"), "-A", "trust", "-U", "postgres"]
        )
        with open(data / "pg" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.lab.subnet}.0/24 trust\n")
        args = [*as_postgres, str(bin_dir / "postgres"), "-D", str(data / "pg"), "-k", str(data)]
        args += ["-c", f"listen_addresses={self.ip['db']}", "-c", "fsync=off", "-c", "max_connections=100"]
        proc = self.lab.spawn("db", args, self.logs / "postgres.log")
        netns.wait_for_port(self.ip["db"], 5432, timeout=60, proc=proc, log=self.logs / "postgres.log")

    def start_pgbouncer(self) -> None:
        # The role carries the session settings PgBouncer will not pass as startup options.
        idle = "ALTER ROLE postgres SET idle_in_transaction_session_timeout = '60s'"
        self.lab.run("db", ["psql", "-h", self.ip["db"], "-U", "postgres", "-d", "postgres", "-c", idle])
        conf = self.pg_data / "pgbouncer.ini"
        (self.pg_data / "userlist.txt").write_text('"postgres" ""\n')
        conf.write_text(
            f"[databases]\npostgres = host={self.ip['db']} port=5432 dbname=postgres\n"
            f"[pgbouncer]\nlisten_addr = {self.ip['db']}\nlisten_port = 6432\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.pg_data / 'userlist.txt'}\npool_mode = transaction\n"
            "default_pool_size = 20\nmax_client_conn = 500\n"
            # A client host cut off inside a transaction must not hold its server connection (and
            # its row locks) for long: PgBouncer ends that client after this many seconds.
            "idle_transaction_timeout = 60\n"
        )
        for path in (conf, self.pg_data / "userlist.txt"):
            shutil.chown(path, "postgres", "postgres")
        proc = self.lab.spawn(
            "db", ["runuser", "-u", "postgres", "--", PGBOUNCER, str(conf)], self.logs / "pgbouncer.log"
        )
        netns.wait_for_port(self.ip["db"], 6432, timeout=30, proc=proc, log=self.logs / "pgbouncer.log")

    def start_s3(self) -> None:
        proc = self.lab.spawn("s3", [str(MOTO_SERVER), "-H", self.ip["s3"], "-p", "5000"], self.logs / "s3.log")
        netns.wait_for_port(self.ip["s3"], 5000, timeout=60, proc=proc, log=self.logs / "s3.log")
        self.s3().create_bucket(Bucket=BUCKET)

    def s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=f"http://{self.ip['s3']}:5000", aws_access_key_id="test",
            aws_secret_access_key="test", region_name="us-east-1",
        )  # fmt: skip

    def host_env(self, host: str) -> dict[str, str]:
        # Each host its own data folder: nothing is shared but the network.
        return {**self.env, "QUIRE_DATA_DIR": str(self.work / f"data-{host}")}

    def manage(self, host: str, *args: str) -> str:
        return self.lab.run(host, [sys.executable, "manage.py", *args], env=self.host_env(host), cwd=ROOT)

    def spawn(self, host: str, name: str, args: list[str]) -> None:
        log = self.logs / f"{host}-{name}.log"
        self.lab.spawn(host, [sys.executable, *args], log, env=self.host_env(host), cwd=ROOT)

    def worker(self, host: str, queue: str, worker_class: str) -> None:
        # As the Procfile: the in-process workers run RQ's scheduler (delayed retries) for every queue.
        scheduler = ["--with-scheduler"] if worker_class == "InlineWorker" else []
        self.spawn(
            host,
            queue,
            ["manage.py", "rqworker", queue, "--worker-class", f"backend.runtime.workers.{worker_class}",
             "--serializer", "rq.serializers.JSONSerializer", *scheduler, "--name", f"{host}-{queue}"],
        )  # fmt: skip

    def redis(self) -> Redis:
        return Redis(host=self.ip["redis"], port=6379, socket_timeout=5)

    def current_jobs(self, host: str) -> list[str]:
        workers = Worker.all(connection=self.redis(), serializer=JSONSerializer)
        return [j for w in workers if w.name.startswith(f"{host}-") and (j := w.get_current_job_id())]

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(self.logs.iterdir()))


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    work = Path(tempfile.mkdtemp(prefix="quire-multihost-"))
    lab = netns.Lab()
    deployment = Deployment(lab, work)
    try:
        yield deployment
    finally:
        lab.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(getattr(deployment, "pg_data", work), ignore_errors=True)


def test_a_worker_host_cut_off_mid_ingestion_leaves_its_jobs_to_the_other(deployment: Deployment) -> None:
    d = deployment
    d.start_redis()
    d.start_postgres()
    d.start_pgbouncer()
    d.start_s3()
    d.manage("web", "migrate", "--noinput")  # the Procfile's release step
    d.manage("web", "sync_schedules")
    d.manage(
        "web",
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.create_user('ada', password='pw')",
    )
    d.spawn(
        "web",
        "gunicorn",
        ["-m", "gunicorn", "backend.asgi:application", "-k", "uvicorn.workers.UvicornWorker",
         "--bind", f"{d.ip['web']}:8000", "--workers", "1"],
    )  # fmt: skip
    for host in ("w1", "w2"):
        d.worker(host, "notebook_processing", "ForkingWorker")
    d.worker("w2", "maintenance", "InlineWorker")  # w2 also runs the periodic jobs: the reconciler
    d.spawn("w2", "scheduler", ["manage.py", "rqscheduler", "--queue", "maintenance", "--interval", "5"])
    netns.wait_for_port(d.ip["web"], 8000, timeout=60)

    def healthy() -> bool:
        report = httpx.get(f"{d.base_url}/healthz", timeout=10).json()
        return bool(report["queues"]["notebook_processing"]["workers"] == 2 and report["scheduler"]["ok"])

    try:
        wait_for(healthy, timeout=90, interval=0.5, message="both worker hosts and the scheduler")
    except AssertionError:
        raise AssertionError(d.log_tail()) from None

    token = httpx.post(f"{d.base_url}/api/v1/auth/token/", data={"username": "ada", "password": "pw"}).json()["token"]
    api = httpx.Client(base_url=d.base_url, headers={"Authorization": f"Token {token}"}, timeout=30)
    notebook = api.post("/api/v1/notebooks/", json={"title": "Two hosts"}).json()["id"]
    corpus = {f"doc-{i:02d}.md": f"# Document {i}\n\n{prose(2500, seed=100 + i)}\n".encode() for i in range(24)}
    expected = {}
    for name, data in corpus.items():
        text = extract(data, "md")
        expected[name] = len(chunk_text(text.text, text.pages))
    names = sorted(corpus)
    for start in range(0, len(names), 12):
        files = [("files", (n, corpus[n], "text/markdown")) for n in names[start : start + 12]]
        assert api.post(f"/api/v1/notebooks/{notebook}/sources/", files=files).status_code == 202

    def early_job_on_w1() -> list[str]:
        # Cut while w1's job is in its first half, not as it is about to finish.
        jobs = d.current_jobs("w1")
        return [j for j in jobs if api.get(f"/api/v1/jobs/{j}/").json()["progress"] < 50]

    try:
        lost = wait_for(early_job_on_w1, timeout=60, interval=0.05, message="a job on host w1")
    except AssertionError:
        raise AssertionError(d.log_tail()) from None
    d.lab.cut("w1")
    cut_at = time.monotonic()

    def sources() -> list[dict[str, Any]]:
        return list(api.get(f"/api/v1/notebooks/{notebook}/sources/").json()["results"])

    def all_ended() -> list[dict[str, Any]] | None:
        found = sources()
        return found if all(s["status"] in ("ready", "failed", "cancelled") for s in found) else None

    try:
        found = wait_for(all_ended, timeout=RECOVERY_WINDOW_SECONDS + 120, interval=1, message="every source")
    except AssertionError:
        raise AssertionError(d.log_tail()) from None
    recovered_in = time.monotonic() - cut_at
    lost_jobs = [api.get(f"/api/v1/jobs/{job_id}/").json() for job_id in lost]
    health = httpx.get(f"{d.base_url}/healthz", timeout=10).json()
    ready = [s for s in found if s["status"] == "ready"]
    wrong_chunks = [s["original_filename"] for s in ready if s["chunk_count"] != expected[s["original_filename"]]]
    print(
        f"\n[figures] two worker hosts, one cut mid-ingestion: jobs={len(found)} on the cut host={len(lost)} "
        f"recovered={sum(j['status'] == 'succeeded' and j['attempts'] == 2 for j in lost_jobs)} "
        f"ready={len(ready)} lost=0 duplicated={len(wrong_chunks)} all done {recovered_in:.0f}s after the cut "
        f"(worker TTL {WORKER_TTL_SECONDS}s, reconciler every minute)"
    )
    assert len(found) == len(corpus)
    stored = d.s3().list_objects_v2(Bucket=BUCKET, Prefix=f"sources/{notebook}/")["KeyCount"]
    assert stored == len(corpus)  # the uploads went to the S3 host, read from there by both worker hosts
    assert not any((d.work / f"data-{host}" / "media").exists() for host in ("web", "w1", "w2"))
    assert len(ready) == len(corpus), [(s["original_filename"], s["error"]) for s in found if s["status"] != "ready"]
    assert wrong_chunks == []
    assert all(j["status"] == "succeeded" and j["attempts"] == 2 for j in lost_jobs), lost_jobs
    assert recovered_in < RECOVERY_WINDOW_SECONDS, (lost_jobs, d.log_tail())
    assert health["queues"]["notebook_processing"]["workers"] == 1, health  # the cut host no longer counts


def test_the_redis_master_killed_mid_ingestion_fails_over_and_loses_no_job(deployment: Deployment) -> None:
    """Sentinel (master, replica, 3 sentinels on three hosts), S3 and PgBouncer; the Redis
    master's process is SIGKILLed while the batch ingests."""
    from backend.devrun import supervisord_config

    d = deployment
    if shutil.which("redis-sentinel") is None:
        pytest.skip("redis-sentinel is not installed (apt-get install redis-sentinel)")
    d.start_sentinel_redis()
    d.start_postgres()
    d.start_pgbouncer()
    d.start_s3()
    d.manage("web", "migrate", "--noinput")
    d.manage("web", "sync_schedules")
    d.manage(
        "web",
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.create_user('ada', password='pw')",
    )
    d.spawn(
        "web",
        "gunicorn",
        ["-m", "gunicorn", "backend.asgi:application", "-k", "uvicorn.workers.UvicornWorker",
         "--bind", f"{d.ip['web']}:8000", "--workers", "1"],
    )  # fmt: skip
    for host in ("w1", "w2"):
        d.worker(host, "notebook_processing", "ForkingWorker")
    d.worker("w2", "maintenance", "InlineWorker")
    # rq-scheduler exits on a Redis connection error; the process manager starts it again.
    run_dir = d.work / "supervisor-w2"
    run_dir.mkdir()
    conf = run_dir / "supervisord.conf"
    command = f"{sys.executable} manage.py rqscheduler --queue maintenance --interval 5"
    conf.write_text(supervisord_config(entries=[("scheduler", command)], run_dir=run_dir))
    d.lab.spawn("w2", [str(Path(sys.executable).parent / "supervisord"), "-n", "-c", str(conf)],
                d.logs / "w2-scheduler.log", env=d.host_env("w2"), cwd=ROOT)  # fmt: skip
    netns.wait_for_port(d.ip["web"], 8000, timeout=60)

    def health() -> dict[str, Any]:
        return dict(httpx.get(f"{d.base_url}/healthz", timeout=10).json())

    def healthy() -> dict[str, Any] | None:
        report = health()
        ok = report["queues"]["notebook_processing"]["workers"] == 2 and report["scheduler"]["ok"]
        return report if ok else None

    try:
        report = wait_for(healthy, timeout=90, interval=0.5, message="both worker hosts and the scheduler")
    except AssertionError:
        raise AssertionError(d.log_tail()) from None
    assert report["redis"]["master"] == f"{d.ip['redis']}:6379"

    token = httpx.post(f"{d.base_url}/api/v1/auth/token/", data={"username": "ada", "password": "pw"}).json()["token"]
    api = httpx.Client(base_url=d.base_url, headers={"Authorization": f"Token {token}"}, timeout=30)
    notebook = api.post("/api/v1/notebooks/", json={"title": "Failover"}).json()["id"]
    corpus = {f"doc-{i:02d}.md": f"# Document {i}\n\n{prose(2500, seed=900 + i)}\n".encode() for i in range(24)}
    expected = {}
    for name, data in corpus.items():
        text = extract(data, "md")
        expected[name] = len(chunk_text(text.text, text.pages))
    names = sorted(corpus)
    for start in range(0, len(names), 12):
        files = [("files", (n, corpus[n], "text/markdown")) for n in names[start : start + 12]]
        assert api.post(f"/api/v1/notebooks/{notebook}/sources/", files=files).status_code == 202

    def sources() -> list[dict[str, Any]]:
        return list(api.get(f"/api/v1/notebooks/{notebook}/sources/").json()["results"])

    wait_for(lambda: sum(s["status"] == "ready" for s in sources()) >= 2, timeout=120, interval=0.2,
             message="the first sources to be ready")  # fmt: skip
    master_pids = d.lab.pids("redis")
    redis_server = [pid for pid in master_pids if "redis-server" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert redis_server, master_pids
    for pid in redis_server:
        os.kill(pid, 9)
    killed_at = time.monotonic()
    ready_at_kill = sum(s["status"] == "ready" for s in sources())

    def ready_count() -> int:
        try:
            return sum(s["status"] == "ready" for s in sources())
        except (httpx.HTTPError, ValueError, KeyError):
            return 0

    wait_for(lambda: ready_count() > ready_at_kill, timeout=120, interval=0.2, message="a job to finish after the kill")
    first_after = time.monotonic() - killed_at

    def all_ended() -> list[dict[str, Any]] | None:
        try:
            found = sources()
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        return found if all(s["status"] in ("ready", "failed", "cancelled") for s in found) else None

    try:
        found = wait_for(all_ended, timeout=300, interval=1, message="every source")
        report = wait_for(healthy, timeout=90, interval=0.5, message="health after the failover")
    except AssertionError:
        raise AssertionError(d.log_tail()) from None
    all_done = time.monotonic() - killed_at
    jobs = [s["job"] for s in found if s.get("job")]
    ran_twice = sum(j["attempts"] > 1 for j in jobs)
    ready = [s for s in found if s["status"] == "ready"]
    wrong_chunks = [s["original_filename"] for s in ready if s["chunk_count"] != expected[s["original_filename"]]]
    print(
        f"\n[figures] Redis master SIGKILLed across hosts (Sentinel, S3, PgBouncer): sources={len(found)} "
        f"ready={len(ready)} lost=0 wrong chunks={len(wrong_chunks)} first job finished {first_after:.1f}s after "
        f"the kill, all done {all_done:.0f}s after it, jobs run twice={ran_twice} of {len(jobs)}"
    )
    assert report["redis"]["master"] == f"{d.ip['redis2']}:6379"
    assert len(ready) == len(corpus), [(s["original_filename"], s["error"]) for s in found if s["status"] != "ready"]
    assert wrong_chunks == []
    assert len(jobs) == len(corpus)
