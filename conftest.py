"""Fixtures shared by every test: real Redis, real worker processes, a real ASGI server (the
processes themselves are in tests/processes.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from tests.processes import LOG_DIR, LiveServer, Scheduler, Workers, database_url


@pytest.fixture(scope="session")
def process_env(django_db_setup: Any) -> dict[str, str]:
    """Environment for child processes: same settings, the test database, the test Redis."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings.test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="session")
def _workers(process_env: dict[str, str]) -> Iterator[Workers]:
    workers = Workers(process_env)
    yield workers
    workers.stop_all()


@pytest.fixture
def workers(_workers: Workers, redis_clean: Any, transactional_db: Any) -> Workers:
    """All five queue workers running (restarted if a previous test killed one)."""
    _workers.ensure_all()
    return _workers


@pytest.fixture(scope="session")
def _scheduler(process_env: dict[str, str]) -> Iterator[Scheduler]:
    scheduler = Scheduler(process_env)
    yield scheduler
    scheduler.stop()


@pytest.fixture
def scheduler(_scheduler: Scheduler, workers: Workers) -> Scheduler:
    _scheduler.start()
    return _scheduler


@pytest.fixture(scope="session")
def _live_server(process_env: dict[str, str]) -> Iterator[str]:
    server = LiveServer(process_env)
    yield server.url
    server.stop()


@pytest.fixture
def live_server_url(_live_server: str, transactional_db: Any, redis_clean: Any) -> str:
    return _live_server


KEEP_PREFIXES = (b"rq:worker", b"rq:workers", b"rq:scheduler", b"rq:scheduler_instance")


@pytest.fixture
def redis_clean() -> Iterator[Any]:
    """Empty the test Redis database of jobs and events between tests, but keep the live
    workers' and scheduler's own registrations."""
    from backend.runtime import rq as rq_adapter

    conn = rq_adapter.connection()

    def clean() -> None:
        for key in conn.scan_iter(count=1000):
            if not key.startswith(KEEP_PREFIXES):
                conn.delete(key)

    clean()
    yield conn
    clean()


@pytest.fixture
def make_user(db: Any) -> Any:
    from django.contrib.auth import get_user_model

    def make(username: str | None = None, **extra: Any) -> Any:
        return get_user_model().objects.create_user(
            username=username or f"user-{uuid.uuid4().hex[:8]}", password="pw-Quire-123", **extra
        )

    return make


@pytest.fixture
def api_client_for() -> Any:
    from rest_framework.test import APIClient

    def make(user: Any) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make
