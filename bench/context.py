"""What every scenario gets: options, the running processes, an API user with a token, helpers."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from bench.stack import Stack

T = TypeVar("T")

USERNAME = "bench"
PASSWORD = "bench-Quire-123"


_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[bench {time.monotonic() - _STARTED:5.0f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Context:
    quick: bool
    runs_override: int | None
    stack: Stack
    redis_url: str
    token: str = ""
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)

    def runs(self, full: int, quick: int | None = None) -> int:
        if self.runs_override:
            return self.runs_override
        return quick if (self.quick and quick is not None) else full

    def size(self, full: T, quick: T) -> T:
        return quick if self.quick else full

    @property
    def web_url(self) -> str:
        return self.stack.start_web()

    def http(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.web_url, headers={"Authorization": f"Token {self.token}"}, timeout=timeout)

    def user(self) -> Any:
        from django.contrib.auth import get_user_model

        return get_user_model().objects.get(username=USERNAME)

    def new_notebook(self, title: str) -> str:
        with self.http() as client:
            response = client.post("/api/v1/notebooks/", json={"title": title})
        response.raise_for_status()
        return str(response.json()["id"])

    def delete_notebook(self, notebook_id: str) -> None:
        """Through the service (cancels the notebook's queued and running jobs), then wait for the
        ingestion worker to be idle so the next measurement starts on a quiet machine."""
        from notebooks import services
        from notebooks.models import Notebook

        notebook = Notebook.objects.filter(id=notebook_id).first()
        if notebook is not None:
            services.notebook_delete(notebook=notebook)
        wait_idle(["notebook_processing"])


def setup_user(ctx: Context) -> None:
    """A user in the bench database and an API token obtained through the API, like a client."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    if not model.objects.filter(username=USERNAME).exists():
        model.objects.create_user(USERNAME, password=PASSWORD)
    response = httpx.post(
        f"{ctx.web_url}/api/v1/auth/token/", data={"username": USERNAME, "password": PASSWORD}, timeout=30
    )
    response.raise_for_status()
    ctx.token = str(response.json()["token"])


def wait_for(predicate: Callable[[], T | None], *, timeout: float, interval: float = 0.1, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_idle(queues: list[str], timeout: float = 120) -> None:
    """No job waiting or running on these queues."""
    from backend.runtime import rq as rq_adapter

    def idle() -> bool:
        for queue in queues:
            stats = rq_adapter.queue_stats(queue)
            if stats["depth"] or stats["started"]:
                return False
        return True

    wait_for(idle, timeout=timeout, interval=0.2, what=f"{', '.join(queues)} to be idle")
