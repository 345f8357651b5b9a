"""The platform: queues and their workers, JSON payloads, schedules, health, dashboard access."""

import json
import pickle
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import Client, override_settings

from backend import schedules
from backend.models import Job
from backend.runtime import get_kind
from backend.runtime import rq as rq_adapter
from tests.helpers import wait_for

QUEUES = ["default", "notebook_processing", "podcast", "reports", "maintenance"]


def test_it_runs_a_job_on_each_queue_by_that_queues_worker_as_json(workers: Any, redis_clean: Any) -> None:
    jobs = {}
    for queue in QUEUES:
        jobs[queue] = get_kind(f"tests.echo_{queue}").enqueue({"value": f"hello {queue}"})  # type: ignore[union-attr]

    for queue, job in jobs.items():
        # The payload in Redis is JSON, readable without unpickling anything.
        raw = redis_clean.hget(f"rq:job:{job.id}", "data")
        assert json.loads(zlib.decompress(raw))[3] == {"value": f"hello {queue}"}

    for queue, job in jobs.items():
        done = wait_for(
            lambda job=job: Job.objects.filter(id=job.id, status=Job.Status.SUCCEEDED).first(),
            message=f"job on {queue}",
        )
        assert done.result["value"] == f"hello {queue}"
        assert done.result["queue"] == queue
        assert done.worker_name == workers.procs[queue].args[-1]  # the --name given to that queue's worker
        assert done.attempts == 1


class Planted:
    """Unpickling this creates a file: proof that a pickle payload was executed."""

    marker = Path("var/test-logs/pickle-executed")

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def test_it_never_executes_a_pickle_payload_planted_in_redis(workers: Any, redis_clean: Any) -> None:
    Planted.marker.unlink(missing_ok=True)
    job_id = "planted-pickle-job"
    payload = zlib.compress(pickle.dumps(("tests.jobs.record", None, [], {"x": Planted()})))
    redis_clean.hset(
        f"rq:job:{job_id}",
        mapping={"data": payload, "origin": "default", "status": "queued", "created_at": "2026-01-01T00:00:00.000000Z"},
    )
    redis_clean.rpush("rq:queue:default", job_id)
    redis_clean.sadd("rq:queues", "rq:queue:default")

    wait_for(lambda: redis_clean.llen("rq:queue:default") == 0, message="the worker to take the planted job")
    follow_up = get_kind("tests.echo_default").enqueue({"value": "still alive"})  # type: ignore[union-attr]
    wait_for(lambda: Job.objects.filter(id=follow_up.id, status=Job.Status.SUCCEEDED).exists(), message="follow-up")

    assert not Planted.marker.exists()
    assert redis_clean.hget(f"rq:job:{job_id}", "status") == b"failed"
    assert "DeserializationError" in workers.log_path("default").read_text()


@pytest.mark.django_db
def test_dashboard_is_for_superusers_only(make_user: Any) -> None:
    client = Client()
    response = client.get("/django-rq/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")

    for user in (make_user(), make_user(is_staff=True)):
        client.force_login(user)
        assert client.get("/django-rq/").status_code == 403

    client.force_login(make_user(is_staff=True, is_superuser=True))
    response = client.get("/django-rq/")
    assert response.status_code == 200
    assert b"notebook_processing" in response.content


def test_schedule_sync_is_idempotent_and_stores_json(redis_clean: Any) -> None:
    from django.conf import settings

    first = schedules.sync()
    second = schedules.sync()
    assert sorted(first["added"]) == sorted(settings.QUIRE_SCHEDULES)
    assert second == {
        "added": [],
        "kept": sorted(settings.QUIRE_SCHEDULES, key=list(settings.QUIRE_SCHEDULES).index),
        "removed": [],
    }

    ids = [job.id for job in rq_adapter.scheduler().get_jobs()]
    assert sorted(ids) == sorted(schedules.schedule_id(name) for name in settings.QUIRE_SCHEDULES)
    for job_id in ids:
        raw = redis_clean.hget(f"rq:job:{job_id}", "data")
        func, _instance, _args, kwargs = json.loads(zlib.decompress(raw))
        assert func == "backend.schedules.fire"
        assert kwargs["name"] in settings.QUIRE_SCHEDULES


def test_schedule_sync_removes_entries_no_longer_in_the_table(redis_clean: Any) -> None:
    from django.conf import settings

    table = {**settings.QUIRE_SCHEDULES, "old": {"cron": "*/5 * * * *", "kind": "maintenance.purge_jobs"}}
    with override_settings(QUIRE_SCHEDULES=table):
        schedules.sync()
    result = schedules.sync()
    assert result["removed"] == ["old"]
    assert schedules.schedule_id("old") not in [job.id for job in rq_adapter.scheduler().get_jobs()]


def test_a_schedule_fired_many_times_for_one_minute_runs_once(workers: Any, redis_clean: Any) -> None:
    ids = {schedules.fire("purge-jobs") for _ in range(10)}
    assert len(ids) == 1
    (job_id,) = ids
    job = wait_for(lambda: Job.objects.filter(id=job_id, status=Job.Status.SUCCEEDED).first(), message="purge")
    assert job.kind == "maintenance.purge_jobs"
    assert Job.objects.filter(kind="maintenance.purge_jobs").count() == 1


def test_healthz_is_200_with_every_queue_served(scheduler: Any, live_server_url: str) -> None:
    import httpx

    response = httpx.get(f"{live_server_url}/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["ok"] is True
    assert sorted(body["queues"]) == sorted(QUEUES)
    assert all(q["workers"] >= 1 for q in body["queues"].values())
    assert body["scheduler"]["ok"] is True
    assert body["database"]["ok"] is True


def test_healthz_is_503_when_a_queue_has_no_worker(scheduler: Any, workers: Any) -> None:
    workers.stop("podcast")
    response = Client().get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["queues"]["podcast"]["workers"] == 0
    assert "no worker on queue podcast" in body["problems"]


@pytest.mark.django_db
def test_healthz_is_503_when_redis_is_down() -> None:
    from django.conf import settings

    dead = {name: {**cfg, "URL": "redis://127.0.0.1:1/0"} for name, cfg in settings.RQ_QUEUES.items()}
    with override_settings(RQ_QUEUES=dead):
        response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["redis"]["ok"] is False
    assert "redis unreachable" in response.json()["problems"]


def test_check_refuses_a_pickle_queue() -> None:
    from django.conf import settings

    queues = {**settings.RQ_QUEUES, "default": {**settings.RQ_QUEUES["default"], "SERIALIZER": None}}
    with override_settings(RQ_QUEUES=queues):
        errors = [e for e in run_checks(tags=["quire"]) if e.id == "quire.E001"]
    assert len(errors) == 1
    assert "'default'" in errors[0].msg


def test_check_warns_about_a_redis_that_can_lose_jobs(redis_clean: Any) -> None:
    # The suite's Redis keeps nothing on disk, as a default Redis install does.
    redis_clean.config_set("appendonly", "no")
    with override_settings(QUIRE_CHECK_REDIS_DURABILITY=True):
        ids = {e.id for e in run_checks(tags=["quire"])}
    assert "quire.W002" in ids


def _scheduler_locks(conn: Any) -> dict[str, str] | None:
    """Queue -> name of the worker whose RQ scheduler holds its lock, once every queue's is held."""
    from django.conf import settings

    held = {q: conn.get(f"rq:scheduler-lock:{q}") for q in settings.RQ_QUEUES}
    return {q: v.decode() for q, v in held.items()} if all(held.values()) else None


def _locks_held_by_live_inline_workers(conn: Any) -> dict[str, str] | None:
    # A worker killed by an earlier test may hold the locks until they lapse (61 s).
    held = _scheduler_locks(conn)
    return held if held and set(held.values()) <= _inline_worker_names() else None


def _inline_worker_names() -> set[str]:
    from django.conf import settings

    return {w.name for q in settings.RQ_QUEUES if q not in settings.FORKING_QUEUES for w in rq_adapter.live_workers(q)}


def test_one_scheduler_process_moves_the_delayed_retries_of_every_queue(workers: Any, redis_clean: Any) -> None:
    """RQ would fork a scheduler process per worker; Quire's in-process workers offer one that
    serves every queue, and the forking workers run none (their retries are moved all the same)."""
    held = wait_for(
        lambda: _locks_held_by_live_inline_workers(redis_clean), timeout=150, interval=1, message="scheduler locks"
    )
    assert len(set(held.values())) <= 2, held  # no forking worker takes part

    kind = get_kind("tests.flaky_reports")
    assert kind is not None
    key = uuid.uuid4().hex
    job = kind.enqueue({"key": key, "failures": 1})
    done = wait_for(lambda: Job.objects.filter(id=job.id, status__in=Job.TERMINAL).first(), timeout=30)
    assert (done.status, done.attempts, int(redis_clean.get(f"{key}:attempts"))) == ("succeeded", 2, 2)


@pytest.mark.slow
def test_when_the_scheduler_holder_stops_another_worker_takes_its_queues_over(workers: Any, redis_clean: Any) -> None:
    held = wait_for(
        lambda: _locks_held_by_live_inline_workers(redis_clean), timeout=150, interval=1, message="scheduler locks"
    )
    holder = sorted(set(held.values()))[0]
    queue = next(q for q, p in workers.procs.items() if holder.startswith(f"test-{q}-"))
    stopped = time.monotonic()
    workers.stop(queue)

    def taken_over() -> dict[str, str] | None:
        now = _scheduler_locks(redis_clean)
        return now if now and holder not in now.values() else None

    after = wait_for(taken_over, timeout=150, interval=1, message="another worker's scheduler")
    print(f"\n[figures] scheduler locks taken over {time.monotonic() - stopped:.0f}s after their holder stopped")
    assert set(after.values()) <= _inline_worker_names()


def test_a_forking_worker_loads_its_model_at_start_not_in_its_first_job(workers: Any) -> None:
    """Without --with-scheduler (the Procfile's forking workers) the preload runs in bootstrap:
    the first job does not wait for it, and no heartbeat is missed while it loads."""
    import psutil

    workers.stop("notebook_processing")
    proc = workers.start("notebook_processing")
    # Against the maintenance worker, which preloads nothing: the default worker preloads the
    # embedder too (questions) and, late in a suite, holds search caches of many notebooks.
    baseline = psutil.Process(workers.procs["maintenance"].pid).memory_info().rss

    def loaded() -> int | None:
        rss = int(psutil.Process(proc.pid).memory_info().rss)
        return rss if rss > baseline + 100 * 2**20 else None  # the embedding model: ~190 MB

    wait_for(loaded, timeout=120, interval=0.5, message="the embedding model in the idle worker")
    assert Job.objects.count() == 0  # no job ran: the worker loaded it by itself


def _token_client(live_server_url: str, user: Any) -> Any:
    import httpx
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=user)
    return httpx.Client(base_url=live_server_url, headers={"Authorization": f"Token {token.key}"}, timeout=30)


def _postgresql_only() -> Any:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL server sessions only")
    return connection


def test_the_web_process_keeps_its_database_connections_between_requests(live_server_url: str, make_user: Any) -> None:
    """Django under ASGI would open a connection per request (a new server process each, on
    PostgreSQL); the web's request threads keep theirs (backend.asgi)."""
    connection = _postgresql_only()
    user = make_user()
    from notebooks.models import Notebook

    notebook = Notebook.objects.create(owner=user, title="reuse")

    def sessions() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            return int(cursor.fetchone()[0])

    with _token_client(live_server_url, user) as http:
        http.get(f"/api/v1/notebooks/{notebook.id}/").raise_for_status()  # a request thread connects
        before = sessions()
        for _ in range(40):
            assert http.get(f"/api/v1/notebooks/{notebook.id}/").status_code == 200
        opened = sessions() - before
    # Anything else that connects meanwhile counts too (a scheduled job, a work-horse): a margin.
    assert opened <= 10, f"{opened} new database sessions for 40 sequential requests"


def test_a_request_after_the_database_dropped_the_webs_connection_is_answered(
    live_server_url: str, make_user: Any
) -> None:
    """A kept connection the server has closed (a restart, a failover, an idle timeout) is
    noticed at the start of the next request and replaced, instead of failing it."""
    connection = _postgresql_only()
    user = make_user()
    from notebooks.models import Notebook

    notebook = Notebook.objects.create(owner=user, title="dropped")
    with _token_client(live_server_url, user) as http:
        for _ in range(20):  # several request threads hold a connection now
            assert http.get(f"/api/v1/notebooks/{notebook.id}/").status_code == 200
        with connection.cursor() as cursor:
            # Every other session of the test database goes: the web's request threads' (and the
            # workers', which replace theirs before their next job).
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] >= 1
        answers = [http.get(f"/api/v1/notebooks/{notebook.id}/").status_code for _ in range(20)]
    assert answers == [200] * 20


def test_a_job_after_the_database_dropped_the_workers_connection_runs(workers: Any, redis_clean: Any) -> None:
    """An in-process worker keeps its connection from job to job; one the server has closed is
    replaced before the next job instead of failing it (and every job after it)."""
    connection = _postgresql_only()
    echo = get_kind("tests.echo_default")
    assert echo is not None
    first = echo.enqueue({"value": "before"})
    wait_for(lambda: Job.objects.filter(id=first.id, status=Job.Status.SUCCEEDED).exists(), message="first job")
    with connection.cursor() as cursor:
        # The worker's session is the one whose last query named that job (its success).
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE %s",
            [f"%{first.id}%"],
        )
        assert [row[0] for row in cursor.fetchall()] == [True]
    second = echo.enqueue({"value": "after"})
    done = wait_for(
        lambda: Job.objects.filter(id=second.id, status__in=Job.TERMINAL).first(), message="second job", timeout=30
    )
    assert (done.status, done.attempts) == (Job.Status.SUCCEEDED, 1), done.error


def test_a_queues_health_figures_are_read_without_changing_anything(workers: Any, redis_clean: Any) -> None:
    """RQ's own counts first clean their registries (failing or retrying the jobs of vanished
    workers): the reconciler's work, not a health probe's."""
    workers.stop("reports")  # it would take the made-up job ids off the queue
    from datetime import UTC, datetime, timedelta

    from rq.registry import DeferredJobRegistry, FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

    conn = redis_clean
    q = rq_adapter.get_queue("reports")
    now = time.time()
    enqueued = (datetime.now(UTC) - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    conn.rpush(q.key, "oldest", "newer")
    conn.hset("rq:job:oldest", "enqueued_at", enqueued)
    conn.zadd(StartedJobRegistry("reports", connection=conn).key, {"running:x1": now + 60, "abandoned:x2": now - 60})
    conn.zadd(FailedJobRegistry("reports", connection=conn).key, {"kept": now + 3600, "expired": now - 1})
    conn.zadd(FinishedJobRegistry("reports", connection=conn).key, {"done": now + 500})
    conn.zadd(DeferredJobRegistry("reports", connection=conn).key, {"waits": now + 10})
    before = {key: conn.dump(key) for key in conn.keys("rq:*")}

    stats = rq_adapter.queue_stats("reports")

    assert {k: stats[k] for k in ("depth", "started", "failed", "finished", "deferred", "scheduled")} == {
        "depth": 2,
        "started": 1,
        "failed": 1,
        "finished": 1,
        "deferred": 1,
        "scheduled": 0,
    }
    assert 29 <= stats["oldest_age_seconds"] <= 60
    assert {key: conn.dump(key) for key in conn.keys("rq:*")} == before
