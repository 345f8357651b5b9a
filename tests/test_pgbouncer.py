"""PostgreSQL behind PgBouncer in transaction pooling mode, with the settings the README
prescribes (DATABASE_SESSION_OPTIONS=false, DATABASE_CONN_MAX_AGE=0): migrations, the web
process and a worker run through it and a batch ingests. Needs the PostgreSQL at
127.0.0.1:5432 the PostgreSQL CI run uses, and the pgbouncer binary (apt); skips otherwise."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend import embedded_redis
from notebooks.ingest.chunking import chunk_text
from notebooks.ingest.extract import extract
from notebooks.ingest.samples import prose
from tests.helpers import wait_for
from tests.processes import LOG_DIR, free_port

ROOT = Path(__file__).resolve().parent.parent
PGBOUNCER = "/usr/sbin/pgbouncer"
DATABASE = "quire_pgbouncer_test"
pytestmark = [pytest.mark.slow]


def _skip_reason() -> str | None:
    if not Path(PGBOUNCER).exists():
        return "pgbouncer is not installed (apt-get install pgbouncer)"
    if shutil.which("psql") is None:
        return "psql is not installed"
    with socket.socket() as s:
        s.settimeout(1)
        if s.connect_ex(("127.0.0.1", 5432)) != 0:
            return "no PostgreSQL answers on 127.0.0.1:5432"
    if os.geteuid() != 0:
        return "pgbouncer refuses to run as root and the test switches to the postgres user: needs root"
    return None


def _psql(port: int, database: str, sql: str) -> str:
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database, "-At", "-c", sql],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def pgbouncer() -> Iterator[int]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    _psql(5432, "postgres", f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    _psql(5432, "postgres", f"CREATE DATABASE {DATABASE}")
    work = Path(tempfile.mkdtemp(prefix="quire-pgbouncer-"))  # the postgres user must read it
    shutil.chown(work, "postgres", "postgres")
    port = free_port()
    (work / "userlist.txt").write_text('"postgres" ""\n')
    (work / "pgbouncer.ini").write_text(
        f"[databases]\n{DATABASE} = host=127.0.0.1 port=5432 dbname={DATABASE}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {work / 'userlist.txt'}\nadmin_users = postgres\n"
        "pool_mode = transaction\ndefault_pool_size = 10\nmax_client_conn = 200\n"
        f"logfile = {work / 'pgbouncer.log'}\npidfile = {work / 'pgbouncer.pid'}\n"
    )
    for path in work.iterdir():
        shutil.chown(path, "postgres", "postgres")
    proc = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", PGBOUNCER, str(work / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip

    def answers() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(answers, timeout=20, message="pgbouncer")
    try:
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
        _psql(5432, "postgres", f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def test_web_and_workers_run_through_pgbouncer_in_transaction_mode(pgbouncer: int, tmp_path: Path) -> None:
    redis_server, redis_url = embedded_redis.start(tmp_path / "redis")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "QUIRE_", "DATABASE_", "REDIS_"))},
        "DJANGO_SETTINGS_MODULE": "backend.settings.production",
        "DJANGO_SECRET_KEY": "pgbouncer-test-secret",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_COOKIES": "false",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{pgbouncer}/{DATABASE}",
        "DATABASE_SESSION_OPTIONS": "false",
        "DATABASE_CONN_MAX_AGE": "0",
        "REDIS_URL": redis_url,
        "QUIRE_DATA_DIR": str(tmp_path / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    procs: list[subprocess.Popen[bytes]] = []

    def manage(*args: str) -> None:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def spawn(name: str, args: list[str]) -> None:
        log = open(LOG_DIR / f"pgbouncer-{name}.log", "ab")
        procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))  # fmt: skip

    try:
        manage("migrate", "--noinput")
        manage(
            "shell", "-c", "from django.contrib.auth.models import User; User.objects.create_user('ada', password='pw')"
        )
        web_port = free_port()
        spawn("web", [sys.executable, "-m", "uvicorn", "backend.asgi:application", "--host", "127.0.0.1", "--port",
                      str(web_port)])  # fmt: skip
        for queue, worker_class in (("notebook_processing", "ForkingWorker"), ("default", "InlineWorker")):
            worker = f"backend.runtime.workers.{worker_class}"
            spawn(queue, [sys.executable, "manage.py", "rqworker", queue, "--worker-class", worker,
                          "--serializer", "rq.serializers.JSONSerializer"])  # fmt: skip
        base = f"http://127.0.0.1:{web_port}"

        def web_up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=5).json()["database"]["ok"] is True
            except (httpx.HTTPError, ValueError, KeyError):
                return False

        wait_for(web_up, timeout=90, message="the web process")
        token = httpx.post(f"{base}/api/v1/auth/token/", data={"username": "ada", "password": "pw"}).json()["token"]
        api = httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30)
        notebook = api.post("/api/v1/notebooks/", json={"title": "Pooled"}).json()["id"]
        corpus = {f"doc-{i}.md": f"# Doc {i}\n\n{prose(1500, seed=700 + i)}\n".encode() for i in range(6)}
        expected = {}
        for name, data in corpus.items():
            text = extract(data, "md")
            expected[name] = len(chunk_text(text.text, text.pages))
        files = [("files", (n, d, "text/markdown")) for n, d in corpus.items()]
        assert api.post(f"/api/v1/notebooks/{notebook}/sources/", files=files).status_code == 202

        def all_ended() -> list[dict[str, Any]] | None:
            found = api.get(f"/api/v1/notebooks/{notebook}/sources/").json()["results"]
            return found if all(s["status"] in ("ready", "failed") for s in found) else None

        found = wait_for(all_ended, timeout=180, interval=0.5, message="every source")
        assert {s["original_filename"]: (s["status"], s["chunk_count"]) for s in found} == {
            n: ("ready", c) for n, c in expected.items()
        }
        hits = api.get(f"/api/v1/notebooks/{notebook}/search/", params={"q": "document"})
        assert hits.status_code == 200, hits.text
        # The transactions went through PgBouncer's pool, not around it.
        stats = _psql(pgbouncer, "pgbouncer", "SHOW STATS")
        row = next(line.split("|") for line in stats.splitlines() if line.startswith(f"{DATABASE}|"))
        print(f"\n[figures] through PgBouncer (transaction pooling): 6/6 ready, {row[1]} transactions pooled")
        assert int(row[1]) > 50
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        redis_server.terminate()
        redis_server.wait(timeout=10)
