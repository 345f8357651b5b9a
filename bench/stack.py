"""The processes a benchmark needs, started the way the Procfile starts them, and always stopped.

Every process gets a session of its own (so Ctrl-C reaches only the bench, which then stops them
in order) and a log in ``var/bench-logs/``. Stopping sends SIGTERM, a second SIGTERM a little
later (RQ's cold shutdown, which also kills a running work-horse: RQ puts horses in a process
group of their own), then SIGKILL to the group and to every descendant seen before.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "var" / "bench-logs"
VENV_BIN = Path(sys.executable).parent
MB = 1024 * 1024

_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def procfile() -> dict[str, str]:
    """Process name -> command line, as written in the Procfile."""
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if ":" in line and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def expand(command: str, env: dict[str, str]) -> list[str]:
    """A Procfile command as argv: ``${VAR:-default}`` and ``$VAR`` expanded from ``env``,
    ``python`` and the venv's scripts (gunicorn, rqworker…) resolved to this interpreter's venv."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2) or ""
        return env.get(name) or default

    argv = shlex.split(_VAR.sub(substitute, command))
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    elif (VENV_BIN / argv[0]).exists():
        argv[0] = str(VENV_BIN / argv[0])
    return argv


@dataclass
class Proc:
    name: str
    role: str  # "web", "worker", "scheduler", "baseline"
    popen: subprocess.Popen[bytes]
    log: Path
    argv: list[str]
    seen: dict[int, psutil.Process] = field(default_factory=dict)  # descendants ever seen, killed at the end

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self, children: dict[int, list[int]] | None = None) -> list[psutil.Process]:
        """The process and its descendants (forked work-horses, the RQ scheduler, gunicorn's workers).

        ``children`` (from ``children_map()``) lets several trees share one pass over the
        machine's processes (2.5 ms here)."""
        children = children_map() if children is None else children
        try:
            procs, pending = [psutil.Process(self.pid)], list(children.get(self.pid, ()))
        except psutil.NoSuchProcess:
            return []
        while pending:
            pid = pending.pop()
            with contextlib.suppress(psutil.NoSuchProcess):
                procs.append(psutil.Process(pid))
            pending += children.get(pid, ())
        self.seen.update((p.pid, p) for p in procs[1:])
        return procs

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Stack:
    """The bench's child processes. Use as a context manager: everything stops on the way out."""

    def __init__(self, env: dict[str, str], say: Callable[[str], None]) -> None:
        self.env = env
        self.say = say
        self.procs: dict[str, Proc] = {}
        self.web_url: str | None = None
        LOG_DIR.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_all()

    # --- starting

    def start(self, name: str, argv: list[str], role: str, env: dict[str, str] | None = None) -> Proc:
        if name in self.procs and self.procs[name].alive():
            return self.procs[name]
        log = LOG_DIR / f"{name}.log"
        handle = open(log, "ab")
        try:
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            handle.close()
        proc = Proc(name=name, role=role, popen=popen, log=log, argv=argv)
        self.procs[name] = proc
        return proc

    def start_worker(self, queue: str, *, name: str | None = None) -> Proc:
        """``worker_<queue>`` from the Procfile, with the same flags (plus a recognisable name)."""
        name = name or f"worker_{queue}"
        command = procfile()[f"worker_{queue}"]
        argv = [*expand(command, self.env), "--name", f"bench-{name}-{uuid.uuid4().hex[:6]}"]
        proc = self.start(name, argv, "worker")
        self.wait_until(lambda: self._worker_registered(queue, proc.pid), proc, f"{name} to register")
        return proc

    def start_bare_worker(self, queue: str, redis_url: str, *, name: str) -> Proc:
        """RQ's own ``rqworker`` command with its defaults (pickle, rq.Worker): the baseline."""
        argv = [str(VENV_BIN / "rqworker"), queue, "--url", redis_url, "--name", f"bench-{name}-{uuid.uuid4().hex[:6]}"]
        proc = self.start(name, argv, "baseline")
        self.wait_until(lambda: self._worker_registered(queue, proc.pid), proc, f"{name} to register")
        return proc

    def start_scheduler(self) -> Proc:
        from backend.runtime import rq as rq_adapter

        proc = self.start("scheduler", expand(procfile()["scheduler"], self.env), "scheduler")
        self.wait_until(rq_adapter.scheduler_alive, proc, "rqscheduler to start")
        return proc

    def start_web(self) -> str:
        """``web`` from the Procfile (gunicorn + uvicorn workers) on a free loopback port."""
        if self.web_url is not None and self.procs["web"].alive():
            return self.web_url
        import httpx

        port = free_port()
        env = {**self.env, "PORT": str(port), "WEB_BIND": "127.0.0.1"}
        env.setdefault("WEB_CONCURRENCY", "2")
        proc = self.start("web", expand(procfile()["web"], env), "web", env=env)
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                httpx.get(f"{url}/healthz", timeout=5)
            except httpx.HTTPError:
                return False
            return True

        self.wait_until(answers, proc, "the web process to answer", timeout=90)
        self.web_url = url
        return url

    def start_procfile(self, queues: Iterable[str]) -> str:
        """Web, one worker per queue and the scheduler, as ``make run`` starts them."""
        for queue in queues:
            self.start_worker(queue)
        self.start_scheduler()
        return self.start_web()

    def wait_until(self, predicate: Callable[[], bool], proc: Proc, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n{proc.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}:\n{proc.log_tail()}")
            time.sleep(0.1)

    @staticmethod
    def _worker_registered(queue: str, pid: int) -> bool:
        from rq import Queue, Worker

        from backend.runtime import rq as rq_adapter

        conn = rq_adapter.connection()
        return any(w.pid == pid for w in Worker.all(connection=conn, queue=Queue(queue, connection=conn)))

    # --- looking at them

    def roles(self, *roles: str) -> list[Proc]:
        return [p for p in self.procs.values() if p.role in roles and p.alive()]

    # --- stopping

    def stop(self, name: str, timeout: float = 15) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.tree()  # remember the descendants (a running work-horse) before signalling
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout=2.5)
            except subprocess.TimeoutExpired:
                # A second SIGTERM (after RQ's 1 s guard) is RQ's cold shutdown: it kills the horse.
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(signal.SIGTERM)
                try:
                    proc.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.popen.wait()
        for child in proc.seen.values():
            # psutil checks the creation time first: a reused pid is never signalled.
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()

    def stop_all(self) -> None:
        if not self.procs:
            return
        # A second Ctrl-C must not leave half the processes running.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            names = list(self.procs)
            self.say(f"stopping {len(names)} processes")
            # Workers first (they may be writing), then the scheduler, then web.
            order = {"baseline": 0, "worker": 0, "scheduler": 1, "web": 2}
            for name in sorted(names, key=lambda n: order.get(self.procs[n].role, 0)):
                try:
                    self.stop(name)
                except Exception as exc:  # keep stopping the others
                    print(f"[bench] could not stop {name}: {exc}", file=sys.stderr)
            self.web_url = None
        finally:
            signal.signal(signal.SIGINT, previous)


def cpu_seconds(procs: Iterable[Proc], *, kernel_only: bool = False) -> float:
    """CPU used so far by these processes' trees (or by the kernel for them): the living members
    (gunicorn's workers, a running work-horse) and the children each has reaped (finished
    work-horses)."""
    total = 0.0
    children = children_map()
    for proc in procs:
        for member in proc.tree(children):
            with contextlib.suppress(psutil.Error):
                t = member.cpu_times()
                total += t.system + t.children_system
                if not kernel_only:
                    total += t.user + t.children_user
    return total


def children_map() -> dict[int, list[int]]:
    """Every process's children, from one pass over the machine's processes."""
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
    return children


def process_memory(proc: psutil.Process, *, full: bool = True) -> dict[str, Any] | None:
    """RSS, and with ``full`` PSS (shared pages divided among the processes that share them) and
    USS of one process. RSS is cheap (/proc/PID/statm); PSS and USS walk the process's page
    tables (4.5 ms for a worker holding the model, measured)."""
    try:
        info = proc.memory_full_info() if full else proc.memory_info()
        cmd = " ".join(proc.cmdline()[:6])
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    figures = {"pid": proc.pid, "cmd": cmd[:160], "rss": int(info.rss)}
    if full:
        figures.update(pss=int(getattr(info, "pss", info.rss)), uss=int(getattr(info, "uss", info.rss)))
    return figures


def stack_memory(procs: Iterable[Proc], *, full: bool = True) -> dict[str, Any]:
    """Memory of the given processes' trees, per process and summed (PSS only with ``full``)."""
    entries = []
    children = children_map()
    for proc in procs:
        tree = proc.tree(children)
        for index, member in enumerate(tree):
            figures = process_memory(member, full=full)
            if figures is not None:
                figures["proc"] = proc.name
                figures["role"] = proc.role if index == 0 else "child"
                entries.append(figures)
    return {
        "rss": sum(e["rss"] for e in entries),
        "pss": sum(e["pss"] for e in entries) if full else None,
        "processes": entries,
    }
