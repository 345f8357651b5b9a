"""Live progress: from a Job change to its server-sent event at the client, against a bare Redis
stream round trip (XADD in one client, a blocked XREAD in another), both at the same rate.

A ``bench.progress`` job (bench/jobs.py, on the Procfile's ``default`` worker) reports progress
every 50 ms with the wall-clock time it writes it in the message; a client holding
``GET /api/v1/notebooks/{id}/events/`` (token auth) notes when each of those ``job`` events
arrives. Both ends run on this machine, so their clocks agree.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import redis

from bench.context import Context, say
from bench.report import Row, percentile

NAME = "live"
TITLE = "live progress"
INTERVAL = 0.05
TERMINAL = {"succeeded", "failed", "cancelled"}


class EventClient(threading.Thread):
    """Reads a notebook's event stream until the job it watches ends (or a read times out)."""

    def __init__(self, url: str, token: str, notebook: str, prefix: str) -> None:
        super().__init__(daemon=True, name="sse-client")
        self.url = f"{url}/api/v1/notebooks/{notebook}/events/"
        self.headers = {"Authorization": f"Token {token}"}
        self.prefix = prefix
        self.connected = threading.Event()
        self.finished = threading.Event()
        self.latencies: list[float] = []
        self.error = ""

    def run(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=30)) as client,
                client.stream("GET", self.url, headers=self.headers) as response,
            ):
                if response.status_code != 200:
                    self.error = f"events answered {response.status_code}"
                    return
                event = ""
                for line in response.iter_lines():
                    received = time.time()
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "job":
                        job = json.loads(line[5:])
                        message = job.get("message") or ""
                        if message.startswith(self.prefix):
                            self.latencies.append((received - float(message[len(self.prefix) :])) * 1000)
                        if job.get("status") in TERMINAL:
                            return
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.connected.set()
            self.finished.set()


def redis_round_trip(url: str, count: int) -> list[float]:
    """XADD -> blocked XREAD, at the progress job's rate, in milliseconds."""
    key = f"bench:rtt:{uuid.uuid4().hex}"
    writer = redis.Redis.from_url(url)
    reader = redis.Redis.from_url(url)
    latencies: list[float] = []
    listening = threading.Event()

    def read() -> None:
        cursor = "0-0"
        listening.set()
        while len(latencies) < count:
            response = reader.xread({key: cursor}, block=5000, count=100)
            received = time.time()
            if not response:
                return
            for _key, entries in response:
                for event_id, fields in entries:
                    cursor = event_id
                    latencies.append((received - float(fields[b"t"])) * 1000)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    listening.wait()
    time.sleep(0.2)
    for _ in range(count):
        time.sleep(INTERVAL)
        writer.xadd(key, {"t": f"{time.time():.6f}"})
    thread.join(timeout=10)
    writer.delete(key)
    return latencies


def run(ctx: Context) -> list[Row]:
    from bench.jobs import PROGRESS_PREFIX, progress_ticker

    count = ctx.size(60, 30)
    runs = ctx.runs(3)
    notebook = ctx.new_notebook("bench: live progress")
    user = ctx.user()
    sse_p50: list[float] = []
    sse_p99: list[float] = []
    base_p50: list[float] = []
    base_p99: list[float] = []
    for i in range(runs):
        client = EventClient(ctx.web_url, ctx.token, notebook, PROGRESS_PREFIX)
        client.start()
        client.connected.wait(30)
        progress_ticker.enqueue({"count": count, "interval": INTERVAL}, owner=user, notebook_id=notebook)
        client.finished.wait(60 + count * INTERVAL)
        if client.error or not client.latencies:
            raise RuntimeError(f"no progress events received ({client.error or 'nothing'})")
        if len(client.latencies) < count:
            ctx.notes.append(f"live progress: run {i + 1} received {len(client.latencies)} of {count} events")
        rtt = redis_round_trip(ctx.redis_url, count)
        sse_p50.append(percentile(client.latencies, 50))
        sse_p99.append(percentile(client.latencies, 99))
        base_p50.append(percentile(rtt, 50))
        base_p99.append(percentile(rtt, 99))
        say(
            f"  run {i + 1}/{runs}: job change→SSE p50 {sse_p50[-1]:.1f} ms, p99 {sse_p99[-1]:.1f} ms; "
            f"XADD→XREAD p50 {base_p50[-1]:.2f} ms"
        )
    ctx.details[NAME] = {"events_per_run": count, "interval_s": INTERVAL}
    base = "XADD→XREAD"
    return [
        Row(TITLE, "job change→SSE event, p50", "ms", sse_p50, base_p50, base, "≤ 50 ms", lambda v, b: v <= 50),
        Row(TITLE, "job change→SSE event, p99", "ms", sse_p99, base_p99, base),
    ]
