"""The job runtime end to end: real Redis, real worker processes, the REST API and SSE."""

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from backend.models import Job
from backend.runtime import get_kind
from backend.runtime.reconcile import reconcile
from notebooks.models import Notebook
from tests.helpers import read_events, wait_for


def kind(name: str) -> Any:
    found = get_kind(name)
    assert found is not None
    return found


def finished(job_id: str, timeout: float = 30) -> Job:
    return wait_for(
        lambda: Job.objects.filter(id=job_id, status__in=Job.TERMINAL).first(), timeout=timeout, message=f"job {job_id}"
    )


def test_it_retries_with_backoff_then_succeeds(workers: Any, redis_clean: Any, make_user: Any) -> None:
    user = make_user()
    key = uuid.uuid4().hex
    job = kind("tests.flaky").enqueue({"key": key, "failures": 2}, owner=user)
    job = finished(job.id)

    assert job.status == Job.Status.SUCCEEDED
    assert job.attempts == 3
    assert job.result == 3
    assert job.error == ""
    times = [float(t) for t in redis_clean.lrange(f"{key}:times", 0, -1)]
    # retry_intervals=[2, 3, ...]. RQ scores a scheduled retry in whole seconds (it truncates the
    # due time), so each wait is at least its interval minus one second.
    assert times[1] - times[0] >= 1.0
    assert times[2] - times[1] >= 2.0
    assert times[2] - times[0] < 15  # and it does not wait for some unrelated schedule


def test_it_shows_retrying_between_attempts(workers: Any, redis_clean: Any) -> None:
    job = kind("tests.flaky").enqueue({"key": uuid.uuid4().hex, "failures": 1})
    retrying = wait_for(lambda: Job.objects.filter(id=job.id, status=Job.Status.RETRYING).first(), message="retrying")
    assert retrying.attempts == 1
    assert retrying.error_code == "INTERNAL_ERROR"
    assert finished(job.id).status == Job.Status.SUCCEEDED


def test_it_fails_with_a_safe_message_and_logs_the_traceback(
    workers: Any, redis_clean: Any, make_user: Any, api_client_for: Any
) -> None:
    user = make_user()
    key = uuid.uuid4().hex
    job = finished(kind("tests.always_fails").enqueue({"key": key}, owner=user).id)

    assert job.status == Job.Status.FAILED
    assert job.attempts == 2  # retries=1
    assert int(redis_clean.get(f"{key}:attempts")) == 2
    body = api_client_for(user).get(f"/api/v1/jobs/{job.id}/").json()
    assert body["status"] == "failed"
    assert body["error_code"] == "INTERNAL_ERROR"
    assert "ValueError" in body["error"]
    assert "secret" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    log = workers.log_path("default").read_text()
    assert "Traceback" in log and "secret detail /srv/quire/private/path.txt" in log


def test_a_job_error_fails_at_once_with_its_code(workers: Any, redis_clean: Any) -> None:
    key = uuid.uuid4().hex
    job = finished(kind("tests.rejects").enqueue({"key": key}).id)
    assert job.status == Job.Status.FAILED
    assert job.attempts == 1
    assert (job.error_code, job.error) == ("UNSUPPORTED_TYPE", "This file type is not supported.")
    assert int(redis_clean.get(f"{key}:attempts")) == 1


def test_cancelling_a_queued_job_means_it_never_runs(
    workers: Any, redis_clean: Any, make_user: Any, api_client_for: Any
) -> None:
    user = make_user()
    client = api_client_for(user)
    blocker_key, queued_key = uuid.uuid4().hex, uuid.uuid4().hex
    blocker = kind("tests.sleeper_reports").enqueue({"key": blocker_key, "seconds": 3}, owner=user)
    queued = kind("tests.sleeper_reports").enqueue({"key": queued_key, "seconds": 0.1}, owner=user)
    wait_for(lambda: Job.objects.filter(id=blocker.id, status=Job.Status.RUNNING).exists(), message="blocker runs")
    body = client.get(f"/api/v1/jobs/{queued.id}/").json()
    assert body["status"] == "queued"
    assert body["queue_position"] == 1
    assert body["workers"] == 1

    response = client.post(f"/api/v1/jobs/{queued.id}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert finished(blocker.id).status == Job.Status.SUCCEEDED
    time.sleep(1)
    assert redis_clean.get(f"{queued_key}:starts") is None
    assert Job.objects.get(id=queued.id).status == Job.Status.CANCELLED

    again = client.post(f"/api/v1/jobs/{queued.id}/cancel/")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "JOB_NOT_CANCELLABLE"


def test_cancelling_a_running_job_kills_its_work_horse_within_seconds(
    workers: Any, redis_clean: Any, make_user: Any, api_client_for: Any
) -> None:
    import os

    user = make_user()
    key = uuid.uuid4().hex
    job = kind("tests.sleeper_reports").enqueue({"key": key, "seconds": 60, "steps": 120}, owner=user)
    wait_for(lambda: redis_clean.get(f"{key}:pid"), message="horse started")
    horse_pid = int(redis_clean.get(f"{key}:pid"))

    started = time.monotonic()
    response = api_client_for(user).post(f"/api/v1/jobs/{job.id}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"

    def horse_gone() -> bool:
        try:
            os.kill(horse_pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(horse_gone, timeout=5, message="work-horse to die")
    assert time.monotonic() - started < 5
    assert redis_clean.hget(f"rq:job:{job.id}", "status") == b"stopped"
    time.sleep(1.5)  # no retry brings it back
    assert Job.objects.get(id=job.id).status == Job.Status.CANCELLED
    assert redis_clean.get(f"{key}:effect") is None
    assert int(redis_clean.get(f"{key}:starts")) == 1
    # The worker itself survives and takes the next job.
    follow_up = kind("tests.echo_reports").enqueue({"value": "next"})
    assert finished(follow_up.id).status == Job.Status.SUCCEEDED


def test_cancelling_a_running_inline_job_stops_it_at_its_next_progress_report(workers: Any, redis_clean: Any) -> None:
    key = uuid.uuid4().hex
    job = kind("tests.sleeper_default").enqueue({"key": key, "seconds": 20, "steps": 40})
    wait_for(lambda: Job.objects.filter(id=job.id, status=Job.Status.RUNNING).exists(), message="running")
    from backend.runtime import job_cancel

    job_cancel(job=Job.objects.get(id=job.id))
    wait_for(lambda: redis_clean.hget(f"rq:job:{job.id}", "status") == b"finished", timeout=5, message="job stops")
    assert redis_clean.get(f"{key}:effect") is None
    assert Job.objects.get(id=job.id).status == Job.Status.CANCELLED


def test_a_sigkilled_worker_s_job_runs_again_on_a_restarted_worker(workers: Any, redis_clean: Any) -> None:
    key = uuid.uuid4().hex
    job = kind("tests.sleeper_reports").enqueue({"key": key, "seconds": 6, "steps": 12})
    wait_for(lambda: redis_clean.get(f"{key}:pid"), message="job started")
    killed_at = time.monotonic()
    workers.kill("reports", horse_pid=int(redis_clean.get(f"{key}:pid")))
    workers.start("reports")

    # The dead worker's heartbeat key expires (WORKER_TTL + 5 s); the reconciler then finds
    # the orphaned row. In production the schedule runs it every minute.
    def recovered() -> bool:
        reconcile()
        return Job.objects.filter(id=job.id, attempts=2).exists()

    wait_for(recovered, timeout=60, interval=1, message="reconciler to re-run the job")
    job = finished(job.id, timeout=30)
    elapsed = time.monotonic() - killed_at
    print(f"\n[figures] worker SIGKILL -> job succeeded again in {elapsed:.1f}s")
    assert job.status == Job.Status.SUCCEEDED
    assert job.attempts == 2
    assert int(redis_clean.get(f"{key}:starts")) == 2
    assert int(redis_clean.get(f"{key}:effect")) == 1
    assert elapsed < 120


def test_fan_in_runs_the_dependent_job_once_after_all_three(workers: Any, redis_clean: Any) -> None:
    key = uuid.uuid4().hex
    record = kind("tests.record")
    deps = [record.enqueue({"key": key, "name": f"dep{i}", "delay": 0.3 * (3 - i)}) for i in range(3)]
    final = record.enqueue({"key": key, "name": "final"}, depends_on=[d.id for d in deps])
    assert finished(final.id).status == Job.Status.SUCCEEDED
    order = [x.decode() for x in redis_clean.lrange(f"{key}:order", 0, -1)]
    assert sorted(order[:3]) == ["dep0", "dep1", "dep2"]
    assert order[3:] == ["final"]


def test_batch_reports_aggregate_progress(workers: Any, redis_clean: Any, make_user: Any, api_client_for: Any) -> None:
    from backend.runtime import batch_create

    user = make_user()
    batch = batch_create(owner=user, label="three echoes")
    jobs = [kind("tests.echo_default").enqueue({"value": str(i)}, owner=user, batch=batch) for i in range(2)]
    jobs.append(kind("tests.rejects").enqueue({"key": uuid.uuid4().hex}, owner=user, batch=batch))
    for job in jobs:
        finished(job.id)
    body = api_client_for(user).get(f"/api/v1/batches/{batch.id}/").json()
    assert body["totals"]["total"] == 3
    assert body["succeeded"] == 2 and body["failed"] == 1
    assert body["progress"] == 100
    assert body["status"] == "partial"
    assert {j["id"] for j in body["jobs"]} == {j.id for j in jobs}


@pytest.mark.django_db
def test_job_list_shows_only_own_jobs_with_filters(make_user: Any, api_client_for: Any) -> None:
    alice, bob = make_user(), make_user()
    from backend.runtime.state import job_enqueue

    mine = job_enqueue(kind=kind("tests.echo_default"), kwargs={"value": "a"}, owner=alice)
    job_enqueue(kind=kind("tests.echo_reports"), kwargs={"value": "b"}, owner=alice)
    job_enqueue(kind=kind("tests.echo_default"), kwargs={"value": "c"}, owner=bob)
    client = api_client_for(alice)
    body = client.get("/api/v1/jobs/").json()
    assert body["count"] == 2
    body = client.get("/api/v1/jobs/?queue=default").json()
    assert [j["id"] for j in body["results"]] == [mine.id]
    assert client.get("/api/v1/jobs/?status=bogus").status_code == 400


def test_another_users_jobs_batches_and_events_are_404(
    make_user: Any, api_client_for: Any, live_server_url: str
) -> None:
    from backend.runtime.state import batch_create, job_enqueue

    alice, bob = make_user(), make_user()
    notebook = Notebook.objects.create(owner=alice, title="A's")
    batch = batch_create(owner=alice)
    job = job_enqueue(kind=kind("tests.echo_default"), kwargs={"value": "x"}, owner=alice, batch=batch)
    client = api_client_for(bob)
    assert client.get(f"/api/v1/jobs/{job.id}/").status_code == 404
    assert client.post(f"/api/v1/jobs/{job.id}/cancel/").status_code == 404
    assert client.get(f"/api/v1/batches/{batch.id}/").status_code == 404
    assert client.get("/api/v1/jobs/").json()["count"] == 0
    token = Token.objects.create(user=bob)
    response = httpx.get(
        f"{live_server_url}/api/v1/notebooks/{notebook.id}/events/", headers={"Authorization": f"Token {token.key}"}
    )
    assert response.status_code == 404
    assert httpx.get(f"{live_server_url}/api/v1/notebooks/{notebook.id}/events/").status_code == 401
    assert Job.objects.get(id=job.id).status != Job.Status.CANCELLED  # bob's cancel did nothing


def test_sse_streams_a_jobs_progress_in_order_and_resumes(workers: Any, live_server_url: str, make_user: Any) -> None:
    user = make_user()
    token = Token.objects.create(user=user)
    notebook = Notebook.objects.create(owner=user, title="events")
    url = f"{live_server_url}/api/v1/notebooks/{notebook.id}/events/"
    headers = {"Authorization": f"Token {token.key}"}

    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        job = kind("tests.sleeper_default").enqueue(
            {"key": uuid.uuid4().hex, "seconds": 1, "steps": 5}, owner=user, notebook_id=notebook.id
        )
        events = read_events(response, {"succeeded", "failed"})

    statuses = [e["status"] for _, e in events]
    assert all(e["id"] == job.id for _, e in events)
    assert statuses[0] == "queued" and statuses[-1] == "succeeded"
    assert "running" in statuses
    progress = [e["progress"] for _, e in events]
    assert progress == sorted(progress) and progress[-1] == 100
    assert [e["message"] for _, e in events if e["message"].startswith("Step")] == [f"Step {i}/5" for i in range(1, 6)]

    # Reconnect with Last-Event-ID: the events after it are replayed.
    resume_from = events[2][0]
    with httpx.stream("GET", url, headers={**headers, "Last-Event-ID": resume_from}, timeout=30) as response:
        replayed = read_events(response, {"succeeded"})
    assert [i for i, _ in replayed] == [i for i, _ in events[3:]]


def test_a_workers_own_redis_client_serves_the_job_runtime_in_its_process(
    redis_clean: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events and pushes from a job share the connection RQ opened for it: a work-horse opens
    one Redis connection per job, not two."""
    from django.conf import settings
    from redis import Redis

    from backend.runtime import rq as rq_adapter
    from backend.runtime.workers import ForkingWorker

    monkeypatch.setattr(rq_adapter, "_clients", {})
    before = rq_adapter.connection("notebook_processing")  # made before the worker, as at start-up
    client = Redis.from_url(settings.RQ_QUEUES["notebook_processing"]["URL"])
    worker = ForkingWorker(["notebook_processing", "podcast"], connection=client)

    assert worker.connection is client and before is not client
    assert rq_adapter.connection("notebook_processing") is client
    assert rq_adapter.connection("podcast") is client
    assert rq_adapter.get_queue("notebook_processing").connection is client


@pytest.mark.django_db
def test_a_stale_attempt_cannot_change_the_run_that_replaced_it() -> None:
    """A worker cut off from the network wakes up after the reconciler gave its job to another
    worker: its progress, success, failure and "horse lost" reports leave the new run alone."""
    from backend.runtime import state as services

    job = Job.objects.create(
        id=str(uuid.uuid4()), kind="tests.record", queue="default", func="tests.jobs.record", timeout=60,
        status="running", attempts=2, max_attempts=3, worker_name="host-b",
    )  # fmt: skip
    assert services.job_progress(job_id=job.id, percent=40, message="old", attempt=1) is False
    assert services.job_succeed(job_id=job.id, result={"from": "old"}, attempt=1) is None
    assert services.job_fail(job_id=job.id, error_code="X", error="old", attempt=1) is None
    for stopped in (True, False):
        lost = services.job_lost(job_id=job.id, stopped=stopped, will_retry=True, timed_out=False, worker_name="host-a")
        assert lost is None
    row = Job.objects.get(id=job.id)
    assert (row.status, row.progress, row.result, row.error) == ("running", 0, None, "")

    assert services.job_progress(job_id=job.id, percent=60, message="new", attempt=2) is True
    done = services.job_succeed(job_id=job.id, result={"from": "new"}, attempt=2)
    assert done is not None and (done.status, done.result) == ("succeeded", {"from": "new"})
