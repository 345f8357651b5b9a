"""The processes the suite runs as production does: rqworker per queue, rqscheduler and the
ASGI server, each a real child process with its log in var/test-logs/. The fixtures that start
them for a test are in the root conftest.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "var" / "test-logs"
INLINE_QUEUES = [name for name in settings.RQ_QUEUES if name not in settings.FORKING_QUEUES]
QUEUE_WORKER_CLASS = {
    name: "backend.runtime.workers.ForkingWorker"
    if name in settings.FORKING_QUEUES
    else "backend.runtime.workers.InlineWorker"
    for name in settings.RQ_QUEUES
}


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Workers:
    """rqworker processes as the Procfile runs them: one per queue under the queue's name, and
    extra ones (chaos tests) under keys like "notebook_processing#2"."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, queue: str) -> Path:
        return LOG_DIR / f"worker-{queue}.log"

    def start(self, key: str, wait: bool = True, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        queue = key.split("#")[0]
        log = open(self.log_path(key.replace("#", "-")), "ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "rqworker",
                queue,
                "--worker-class",
                QUEUE_WORKER_CLASS[queue],
                "--serializer",
                "rq.serializers.JSONSerializer",
                *(["--with-scheduler"] if queue in INLINE_QUEUES else []),  # as the Procfile does
                "--name",
                f"test-{queue}-{uuid.uuid4().hex[:6]}",
            ],
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[key] = proc
        if wait:
            self.wait_registered(key, proc)
        return proc

    def wait_registered(self, key: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
        from backend.runtime import rq as rq_adapter

        queue = key.split("#")[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(w.pid == proc.pid for w in rq_adapter.live_workers(queue)):
                return
            if proc.poll() is not None:
                raise RuntimeError(f"worker {key} exited: {self.log_path(key.replace('#', '-')).read_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"worker {queue} did not register in {timeout}s")

    def stop(self, queue: str) -> None:
        proc = self.procs.pop(queue, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def kill(self, key: str, horse_pid: int | None = None) -> None:
        """SIGKILL the worker (its process group) and its work-horse (RQ puts the horse in a
        group of its own), as a crash or the OOM killer would."""
        proc = self.procs.pop(key)
        os.killpg(proc.pid, signal.SIGKILL)
        if horse_pid:
            try:
                os.kill(horse_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()

    def ensure_all(self) -> None:
        for key in [k for k in self.procs if "#" in k]:
            self.stop(key)
        for queue in settings.RQ_QUEUES:
            proc = self.procs.get(queue)
            if proc is None or proc.poll() is not None:
                self.start(queue, wait=False)
        for queue, proc in self.procs.items():
            self.wait_registered(queue, proc)

    def stop_all(self) -> None:
        for queue in list(self.procs):
            self.stop(queue)


class Scheduler:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from backend.runtime import rq as rq_adapter

        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(LOG_DIR / "scheduler.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "rqscheduler", "--queue", "maintenance", "--interval", "1"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not rq_adapter.scheduler_alive():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("rqscheduler did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None


UVICORN_OPTIONS = ("--host", "127.0.0.1", "--timeout-graceful-shutdown", "5")


class LiveServer:
    """The ASGI app under uvicorn on a free loopback port, as `make run` serves it."""

    def __init__(self, env: dict[str, str]) -> None:
        port = free_port()
        log = open(LOG_DIR / "uvicorn.log", "ab")
        self.proc = subprocess.Popen(
            # An event stream a test left open must not hold the shutdown (uvicorn waits for it otherwise).
            [sys.executable, "-m", "uvicorn", "backend.asgi:application", "--port", str(port), *UVICORN_OPTIONS],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/healthz", timeout=5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("uvicorn did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
