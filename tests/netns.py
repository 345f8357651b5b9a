"""Several "hosts" on one machine for tests: network namespaces on a private bridge (iproute2).

Each host is a namespace with one veth into a bridge that lives in the test's own namespace,
on a 10.213.N.0/24 network that exists only on this machine, so the test process reaches
every host and the hosts reach each other. Cutting a host takes its veth down: its open TCP
connections hang, as they do when a real host drops off the network. Needs root and `ip`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any


def unavailable() -> str | None:
    """Why this machine cannot run namespaced hosts, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"quire-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *(("netns", "exec", netns, "ip") if netns else ()), *args]
    subprocess.run(command, check=True, capture_output=True, text=True)


class Lab:
    """The bridge and the hosts on it; close() removes every process, namespace and link."""

    def __init__(self) -> None:
        tag = os.getpid() % 10000
        self.prefix = f"q{tag}"  # interface names are at most 15 characters
        self.subnet = f"10.213.{tag % 250}"
        self.bridge = f"{self.prefix}br"
        self.hosts: dict[str, str] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def _veth(self, host: str) -> str:
        return f"{self.prefix}{host}"[:15]

    def add_host(self, host: str) -> str:
        address = f"{self.subnet}.{len(self.hosts) + 2}"
        ns = self.namespace(host)
        _ip("netns", "add", ns)
        _ip("link", "add", self._veth(host), "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", self._veth(host), "master", self.bridge, "up")
        _ip("addr", "add", f"{address}/24", "dev", "eth0", netns=ns)
        _ip("link", "set", "eth0", "up", netns=ns)
        _ip("link", "set", "lo", "up", netns=ns)
        self.hosts[host] = address
        return address

    def spawn(
        self, host: str, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        out = open(log, "ab")
        self._logs.append(out)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace(host), *args],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def run(self, host: str, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", self.namespace(host), *args], env=env, cwd=cwd, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} on {host} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done.stdout

    def cut(self, host: str) -> None:
        _ip("link", "set", self._veth(host), "down")

    def restore(self, host: str) -> None:
        _ip("link", "set", self._veth(host), "up")

    def pids(self, host: str) -> list[int]:
        listed = subprocess.run(["ip", "netns", "pids", self.namespace(host)], capture_output=True, text=True)
        return [int(p) for p in listed.stdout.split()]

    def close(self) -> None:
        for host in self.hosts:
            for pid in self.pids(host):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for out in self._logs:
            out.close()
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", self.namespace(host)], capture_output=True)
            subprocess.run(["ip", "link", "del", self._veth(host)], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def wait_for_port(address: str, port: int, timeout: float = 30, proc: Any = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:] if log else ""
                raise RuntimeError(f"process for {address}:{port} exited: {tail}") from None
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on {address}:{port} within {timeout}s")
