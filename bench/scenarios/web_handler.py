"""Web handler: Quire's ``backend.asgi.SyncChainASGIHandler`` against Django's own
``django.core.handlers.asgi.ASGIHandler`` (the baseline), per request, both in this process.

Each handler is called as an ASGI application (a scope, ``receive`` and ``send`` in one uvloop
event loop, as uvicorn runs it, but no server and no socket) with the bench settings (SQLite,
``DEBUG`` off, the same middleware). Two requests: ``GET /nope`` (a 404: the middleware chain
and URL resolution alone) and ``GET /api/v1/notebooks/`` with a token (a user of its own with
five notebooks, so what other scenarios leave in the database does not change the page).

Per endpoint: 50 untimed requests to each handler, then 2,000 timed ones each (quick: 300) in
interleaved rounds (4; quick 3), the handler that goes first alternating, so drift on the
machine hits both alike. A row's runs are the rounds (p50 and p99 of the round's requests);
the note under the table gives p50 and p99 over all of a handler's requests and Django's time
over Quire's. ``django.request``'s "Not Found" warnings are silenced meanwhile (one a 404).
Before timing, the Procfile's processes are left to go quiet (a worker preloading its model
right after starting uses a CPU).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.context import Context, say, wait_idle
from bench.report import Row, percentile
from bench.stack import cpu_seconds

NAME = "web_handler"
TITLE = "web handler"
USERNAME = "bench-web-handler"
NOTEBOOKS = 5
WARM_UP = 50
QUIRE = "SyncChainASGIHandler"
DJANGO = "Django's ASGIHandler"
QUIET_CPU = 0.05  # the Procfile's processes count as quiet under this share of one CPU
QUIET_TIMEOUT = 60.0

Message = dict[str, Any]
App = Callable[..., Awaitable[None]]  # an ASGI application (scope, receive, send)


@dataclass(frozen=True)
class Endpoint:
    label: str
    path: str
    token: bool
    status: int


ENDPOINTS = [
    Endpoint("GET /nope (404)", "/nope", False, 404),
    Endpoint(f"GET /api/v1/notebooks/ with a token ({NOTEBOOKS} notebooks)", "/api/v1/notebooks/", True, 200),
]


def api_token() -> str:
    """A user of this scenario's own, with its notebooks and a token."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from notebooks.models import Notebook

    user, _ = get_user_model().objects.get_or_create(username=USERNAME)
    for i in range(Notebook.objects.filter(owner=user).count(), NOTEBOOKS):
        Notebook.objects.create(owner=user, title=f"bench: web handler {i}")
    token, _ = Token.objects.get_or_create(user=user)
    return str(token.key)


def scope(endpoint: Endpoint, token: str) -> dict[str, Any]:
    headers = [(b"host", b"localhost")]
    if endpoint.token:
        headers.append((b"authorization", f"Token {token}".encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": endpoint.path,
        "raw_path": endpoint.path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: App, request_scope: dict[str, Any]) -> int:
    """One request; its response's status. The client never disconnects."""
    sent = False
    never = asyncio.Event()
    status = 0

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(request_scope, receive, send)
    return status


async def timed(app: App, request_scope: dict[str, Any], endpoint: Endpoint, n: int) -> list[float]:
    """``n`` sequential requests: each one's milliseconds."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        status = await call(app, request_scope)
        times.append((time.perf_counter() - start) * 1000)
        if status != endpoint.status:
            raise RuntimeError(f"{endpoint.label} answered {status}, not {endpoint.status}")
    return times


async def measure(
    handlers: dict[str, App], token: str, rounds: int, per_round: int
) -> dict[str, dict[str, list[list[float]]]]:
    """Endpoint label -> handler name -> each round's request times."""
    figures: dict[str, dict[str, list[list[float]]]] = {}
    names = list(handlers)
    for endpoint in ENDPOINTS:
        request_scope = scope(endpoint, token)
        for app in handlers.values():
            await timed(app, request_scope, endpoint, WARM_UP)
        per: dict[str, list[list[float]]] = {name: [] for name in names}
        for r in range(rounds):
            for name in names if r % 2 == 0 else reversed(names):
                per[name].append(await timed(handlers[name], request_scope, endpoint, per_round))
        figures[endpoint.label] = per
        say(
            f"  {endpoint.label}: "
            + "; ".join(
                f"{name} p50 {percentile(pooled(per[name]), 50):.2f} ms, p99 {percentile(pooled(per[name]), 99):.2f} ms"
                for name in names
            )
        )
    return figures


def pooled(rounds: list[list[float]]) -> list[float]:
    return [t for times in rounds for t in times]


def wait_quiet(ctx: Context) -> None:
    """Until the Procfile's processes use under QUIET_CPU of a CPU over a second (or a minute passed)."""
    procs = ctx.stack.roles("web", "worker", "scheduler", "baseline")
    deadline = time.monotonic() + QUIET_TIMEOUT
    before = cpu_seconds(procs)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        after = cpu_seconds(procs)
        if after - before < QUIET_CPU:
            return
        before = after
    say(f"  the Procfile's processes still busy after {QUIET_TIMEOUT:.0f} s; measuring anyway")


def run(ctx: Context) -> list[Row]:
    import uvloop
    from django.conf import settings
    from django.core.handlers.asgi import ASGIHandler

    from backend.asgi import SyncChainASGIHandler

    requests = ctx.size(2000, 300)
    rounds = ctx.runs(4, 3)
    per_round = max(1, requests // rounds)
    token = api_token()
    wait_idle(list(settings.RQ_QUEUES))
    wait_quiet(ctx)

    quire = SyncChainASGIHandler()  # its own request threads, stopped below
    handlers: dict[str, App] = {QUIRE: quire, DJANGO: ASGIHandler()}
    not_found = logging.getLogger("django.request")
    level = not_found.level
    not_found.setLevel(logging.ERROR)
    try:
        figures = uvloop.run(measure(handlers, token, rounds, per_round))
    finally:
        not_found.setLevel(level)
        quire._threads.shutdown(wait=True)

    rows: list[Row] = []
    summary: dict[str, Any] = {}
    ratios = []
    for endpoint in ENDPOINTS:
        per = figures[endpoint.label]
        summary[endpoint.label] = {
            name: {
                "p50": percentile(pooled(per[name]), 50),
                "p99": percentile(pooled(per[name]), 99),
                "rounds_p50": [percentile(times, 50) for times in per[name]],
                "rounds_p99": [percentile(times, 99) for times in per[name]],
            }
            for name in handlers
        }
        ours, theirs = summary[endpoint.label][QUIRE], summary[endpoint.label][DJANGO]
        rows.append(
            Row(
                TITLE,
                f"{QUIRE}, {endpoint.label}, p50",
                "ms",
                ours["rounds_p50"],
                theirs["rounds_p50"],
                DJANGO,
                "< Django's (else the override goes)",
                lambda v, b: b is not None and v < b,
            )
        )
        rows.append(
            Row(TITLE, f"{QUIRE}, {endpoint.label}, p99", "ms", ours["rounds_p99"], theirs["rounds_p99"], DJANGO)
        )
        ratios.append(
            f"{endpoint.label}: p50 {theirs['p50']:.2f} / {ours['p50']:.2f} ms = "
            f"{theirs['p50'] / ours['p50']:.1f}x, p99 {theirs['p99']:.2f} / {ours['p99']:.2f} ms = "
            f"{theirs['p99'] / ours['p99']:.1f}x"
        )
    ctx.details[NAME] = {
        "requests_per_handler_per_endpoint": per_round * rounds,
        "rounds": rounds,
        "warm_up": WARM_UP,
        "endpoints": summary,
    }
    ctx.notes.append(
        f"web handler: Django's ASGIHandler over SyncChainASGIHandler, per request, all {per_round * rounds} "
        f"requests of each ({rounds} interleaved rounds of {per_round}, in-process ASGI calls): " + "; ".join(ratios)
    )
    return rows
