"""Fair, prioritised dispatch on the long-job queues, against real workers and Redis.

The jobs are the test kinds on the `reports` queue (a forking worker, like ingestion): they
take a fixed, short time, so the order in which they start is the dispatcher's alone.
"""

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from django.db import transaction

from backend.models import Job
from backend.runtime import dispatch, get_kind
from backend.runtime.reconcile import reconcile
from notebooks.models import Notebook
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent


def kind(name: str) -> Any:
    found = get_kind(name)
    assert found is not None
    return found


def all_finished(ids: list[str], timeout: float = 120) -> list[Job]:
    def done() -> list[Job] | None:
        jobs = list(Job.objects.filter(id__in=ids, status__in=Job.TERMINAL))
        return jobs if len(jobs) == len(ids) else None

    return wait_for(done, timeout=timeout, interval=0.2, message=f"{len(ids)} jobs to finish")


def sleeper(owner: Any, seconds: float = 0.05, priority: str = "interactive") -> Job:
    job: Job = kind("tests.sleeper_reports").enqueue(
        {"key": uuid.uuid4().hex, "seconds": seconds, "steps": 1}, owner=owner, priority=priority
    )
    return job


def test_a_one_job_user_starts_before_the_third_remaining_job_of_a_200_job_backlog(
    workers: Any, redis_clean: Any, make_user: Any
) -> None:
    a, b = make_user(), make_user()
    with transaction.atomic():
        a_jobs = [sleeper(a) for _ in range(200)]
    wait_for(lambda: Job.objects.filter(owner=a, started_at__isnull=False).count() >= 3, message="A running")
    b_job = sleeper(b)
    b_done = all_finished([b_job.id])[0]
    assert b_done.status == Job.Status.SUCCEEDED

    after_b = Job.objects.filter(owner=a, started_at__gte=b_done.created_at)
    wait_for(lambda: after_b.count() >= 3, message="three of A's jobs to start after B's enqueue")
    a_started_after_b = list(after_b.order_by("started_at").values_list("started_at", flat=True)[:3])
    print(f"\n[figures] B waited {(b_done.started_at - b_done.created_at).total_seconds():.2f}s behind A's backlog")
    assert b_done.started_at < a_started_after_b[2]
    # Most of A's backlog was still waiting as rows, not in RQ: RQ held about one per worker.
    Job.objects.filter(id__in=[j.id for j in a_jobs], status=Job.Status.QUEUED).update(status=Job.Status.CANCELLED)


def test_interactive_work_goes_first_and_bulk_still_gets_its_share(
    workers: Any, redis_clean: Any, make_user: Any, settings: Any
) -> None:
    a, b = make_user(), make_user()
    with transaction.atomic():  # both backlogs exist before the first dispatch
        bulk = [sleeper(a, priority="bulk") for _ in range(6)]
        interactive = [sleeper(b) for _ in range(9)]
    jobs = all_finished([j.id for j in bulk + interactive])
    order = [j.priority for j in sorted(jobs, key=lambda j: j.started_at)]
    assert all(j.status == Job.Status.SUCCEEDED for j in jobs)
    # QUIRE_FAIR_BULK_SHARE=4: three interactive jobs, then one bulk, while both wait.
    assert settings.QUIRE_FAIR["BULK_SHARE"] == 4
    assert order[:12] == ["interactive"] * 3 + ["bulk"] + ["interactive"] * 3 + ["bulk"] + ["interactive"] * 3 + [
        "bulk"
    ]
    assert order[12:] == ["bulk"] * 3


def test_a_job_shows_its_priority_and_its_fair_queue_position(
    workers: Any, redis_clean: Any, make_user: Any, api_client_for: Any
) -> None:
    a, b = make_user(), make_user()
    workers.stop("reports")  # nothing runs: the positions stay put
    try:
        with transaction.atomic():
            a_jobs = [sleeper(a) for _ in range(5)]
        b_job = sleeper(b, priority="bulk")
        b_body = api_client_for(b).get(f"/api/v1/jobs/{b_job.id}/").json()
        a_last = api_client_for(a).get(f"/api/v1/jobs/{a_jobs[-1].id}/").json()
        assert b_body["priority"] == "bulk"
        assert a_last["priority"] == "interactive"
        # RQ holds A's first job (one per worker, at least one); 4 interactive of A wait as rows.
        assert redis_clean.llen("rq:queue:reports") == 1
        assert b_body["queue_position"] == 1 + 4 + 1
        assert a_last["queue_position"] == 1 + 4
        health = api_client_for(a).get("/healthz").json()["queues"]["reports"]
        assert health["waiting"] == 5 and health["backlog"] == 6
        assert health["oldest_age_seconds"] is not None
        metrics = api_client_for(a).get("/metrics", HTTP_AUTHORIZATION="Bearer test-metrics-token")
        assert 'quire_jobs_waiting_dispatch{queue="reports"} 5.0' in metrics.content.decode()
    finally:
        workers.start("reports")
    all_finished([j.id for j in [*a_jobs, b_job]])


def test_a_dispatcher_killed_between_claim_and_push_loses_and_duplicates_nothing(
    workers: Any, redis_clean: Any, make_user: Any, monkeypatch: Any
) -> None:
    user = make_user()
    workers.stop("reports")
    keys = [uuid.uuid4().hex for _ in range(3)]
    with monkeypatch.context() as patched:
        patched.setattr(dispatch, "dispatch", lambda queue: [])  # this process does not dispatch
        with transaction.atomic():
            jobs = [
                kind("tests.sleeper_reports").enqueue({"key": k, "seconds": 0.05, "steps": 1}, owner=user) for k in keys
            ]
    assert not Job.objects.filter(dispatched_at__isnull=False).exists()

    crashed = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from backend.runtime import dispatch; dispatch.dispatch('reports')",
        ],
        cwd=ROOT,
        env={**workers.env, "QUIRE_CRASH_AT": "dispatch|Dispatching"},
        capture_output=True,
        timeout=60,
    )
    assert crashed.returncode == 137, crashed.stderr.decode()[-2000:]
    claimed = list(Job.objects.filter(dispatched_at__isnull=False))
    assert len(claimed) == 1 and redis_clean.llen("rq:queue:reports") == 0  # claimed, never pushed

    workers.start("reports")
    counts = reconcile()  # pushes the claimed row again; its start dispatches the rest
    assert counts["pushed"] + counts["dispatched"] >= 1
    done = all_finished([j.id for j in jobs], timeout=60)
    assert all(j.status == Job.Status.SUCCEEDED and j.attempts == 1 for j in done)
    assert [int(redis_clean.get(f"{k}:starts")) for k in keys] == [1, 1, 1]


RACE = """
import sys, time
from backend.runtime import dispatch
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print("claimed" if dispatch.claim_and_push(sys.argv[1]) else "lost")
"""


def test_two_dispatchers_racing_for_one_job_push_it_once(
    workers: Any, redis_clean: Any, make_user: Any, monkeypatch: Any
) -> None:
    user = make_user()
    workers.stop("reports")
    try:
        for _ in range(5):  # five forced races: both processes claim the same row at the same instant
            with monkeypatch.context() as patched:
                patched.setattr(dispatch, "dispatch", lambda queue: [])
                job = sleeper(user)
            start_at = str(time.time() + 4)
            script = ["-c", "import django; django.setup()\n" + RACE]
            procs = [
                subprocess.Popen(
                    [sys.executable, *script, job.id, start_at],
                    cwd=ROOT,
                    env=workers.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                for _ in range(2)
            ]
            outcomes = sorted(p.communicate(timeout=60)[0].decode().strip() for p in procs)
            assert outcomes == ["claimed", "lost"]
            held = [x.decode() for x in redis_clean.lrange("rq:queue:reports", 0, -1)]
            assert held.count(job.id) == 1
            Job.objects.filter(id=job.id).update(status=Job.Status.CANCELLED)
            redis_clean.delete("rq:queue:reports")
    finally:
        workers.start("reports")


def test_retry_failed_reruns_exactly_the_failed_jobs_of_a_batch(
    workers: Any, redis_clean: Any, make_user: Any, api_client_for: Any
) -> None:
    from backend.runtime import batch_create

    owner, other = make_user(), make_user()
    batch = batch_create(owner=owner, label="five")
    keys = [uuid.uuid4().hex for _ in range(5)]
    fails = [False, True, False, True, False]
    with transaction.atomic():
        jobs = [
            kind("tests.fails_once_reports").enqueue({"key": k, "fail": f}, owner=owner, batch=batch)
            for k, f in zip(keys, fails, strict=True)
        ]
    client = api_client_for(owner)
    early = client.post(f"/api/v1/batches/{batch.id}/retry-failed/")  # one job at a time: still running
    assert early.status_code == 409 and early.json()["error"]["code"] == "BATCH_RUNNING"
    all_finished([j.id for j in jobs])

    body = client.get(f"/api/v1/batches/{batch.id}/").json()
    assert body["failures"] == [{"error_code": "EXTRACTION_FAILED", "count": 2}]
    assert body["coverage"] == "3 of 5 ready, 2 failed: 2 EXTRACTION_FAILED"

    assert api_client_for(other).post(f"/api/v1/batches/{batch.id}/retry-failed/").status_code == 404
    response = client.post(f"/api/v1/batches/{batch.id}/retry-failed/")
    assert response.status_code == 202, response.content
    failed_ids = [j.id for j, f in zip(jobs, fails, strict=True) if f]
    assert sorted(response.json()["retried"]) == sorted(failed_ids)

    all_finished([j.id for j in jobs])
    body = client.get(f"/api/v1/batches/{batch.id}/").json()
    assert body["coverage"] == "5 of 5 ready"
    assert body["failures"] == []
    assert [int(redis_clean.get(f"{k}:runs")) for k in keys] == [1, 2, 1, 2, 1]
    again = client.post(f"/api/v1/batches/{batch.id}/retry-failed/")
    assert again.status_code == 202 and again.json()["retried"] == []


def test_it_is_plain_fifo_when_fair_scheduling_is_off(
    workers: Any, redis_clean: Any, make_user: Any, settings: Any
) -> None:
    settings.QUIRE_FAIR = {**settings.QUIRE_FAIR, "ENABLED": False}
    user = make_user()
    with transaction.atomic():
        jobs = [sleeper(user) for _ in range(3)]
    # Pushed on commit, all of them, as before the dispatcher existed (fair: one per worker).
    assert Job.objects.filter(id__in=[j.id for j in jobs], enqueued_at__isnull=False).count() == 3
    all_finished([j.id for j in jobs])


def test_a_cap_holds_with_two_workers_while_another_user_waits_and_lifts_after(
    workers: Any, redis_clean: Any, make_user: Any, settings: Any
) -> None:
    settings.QUIRE_FAIR = {**settings.QUIRE_FAIR, "CAPS": {**settings.QUIRE_FAIR["CAPS"], "reports": 1}}
    capped = {"QUIRE_FAIR_CAP_REPORTS": "1"}
    workers.stop("reports")
    workers.start("reports", extra_env=capped)
    workers.start("reports#2", extra_env=capped)
    try:
        a, b = make_user(), make_user()
        with transaction.atomic():
            a_jobs = [sleeper(a, seconds=1.0) for _ in range(8)]
        wait_for(lambda: Job.objects.filter(owner=a, status=Job.Status.RUNNING).count() == 2, message="A on both")
        with transaction.atomic():
            b_jobs = [sleeper(b, seconds=1.0) for _ in range(2)]
        done = all_finished([j.id for j in a_jobs + b_jobs], timeout=90)
    finally:
        workers.stop("reports#2")
        workers.stop("reports")
        workers.start("reports")

    assert all(j.status == Job.Status.SUCCEEDED for j in done)
    a_done = sorted((j for j in done if j.owner_id == a.id), key=lambda j: j.started_at)
    b_done = sorted((j for j in done if j.owner_id == b.id), key=lambda j: j.started_at)

    def overlap(x: Job, y: Job) -> bool:
        return x.started_at < y.finished_at and y.started_at < x.finished_at

    # Alone, A had both workers (the cap lifted: nobody else waited).
    assert overlap(a_done[0], a_done[1])
    # While B had work, A's jobs dispatched after B's first never ran two at a time. (Not "started
    # after": jobs RQ already held for A when B arrived were handed out under the lifted cap, and
    # the refill that hands B its first job runs beside the start of the job that freed the place,
    # so one of those may start a moment after B's dispatch; the cap governs dispatch, not RQ.)
    b_first_dispatch, b_end = min(j.dispatched_at for j in b_done), max(j.finished_at for j in b_done)
    during = [j for j in a_done if j.dispatched_at > b_first_dispatch and j.started_at < b_end]
    assert during, "A ran nothing while B had work"
    assert not any(overlap(x, y) for i, x in enumerate(during) for y in during[i + 1 :])
    # And B was not made to wait for A's backlog.
    assert b_done[-1].started_at < a_done[-1].started_at


def test_the_enqueuing_service_chooses_the_class_and_a_request_may_override_it(
    transactional_db: Any, redis_clean: Any, make_user: Any, api_client_for: Any
) -> None:
    from notebooks.services import notebook_create

    user = make_user()
    client = api_client_for(user)
    nb = notebook_create(owner=user, title="Classes")
    url = f"/api/v1/notebooks/{nb.id}/sources/"

    def files(n: int) -> list[Any]:
        from django.core.files.uploadedfile import SimpleUploadedFile

        return [
            SimpleUploadedFile(f"n{i}-{uuid.uuid4().hex}.txt", f"note {uuid.uuid4().hex}".encode()) for i in range(n)
        ]

    def classes(response: Any) -> set[str]:
        assert response.status_code == 202, response.content
        return {job["priority"] for job in response.json()["batch"]["jobs"]}

    assert classes(client.post(url, {"files": files(1)}, format="multipart")) == {"interactive"}
    assert classes(client.post(url, {"files": files(6)}, format="multipart")) == {"bulk"}  # > 5 in one request
    assert classes(client.post(url, {"files": files(1), "priority": "bulk"}, format="multipart")) == {"bulk"}
    assert classes(client.post(url, {"files": files(6), "priority": "interactive"}, format="multipart")) == {
        "interactive"
    }
    assert classes(client.post(url, {"text": "A note", "priority": "bulk"}, format="json")) == {"bulk"}
    refused = client.post(url, {"text": "A note", "priority": "urgent"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "VALIDATION_ERROR"
    # The overview rebuild a batch asks for when it ends (coalesced, #18) carries the batch's class.
    from notebooks.services import overview_request

    Job.objects.filter(kind="notebooks.build_overview").delete()
    Notebook.objects.filter(id=nb.id).update(overview_waiting_job_id="")
    overview = overview_request(notebook_id=str(nb.id), owner=user, priority="bulk")
    assert overview is not None and overview.priority == "bulk"


def test_add_sources_imports_as_bulk(transactional_db: Any, redis_clean: Any, make_user: Any, tmp_path: Path) -> None:
    from django.core.management import call_command

    from notebooks.services import notebook_create

    user = make_user()
    notebook_create(owner=user, title="Imported")
    note = tmp_path / "one.txt"
    note.write_text("just one file, still an import")
    call_command("add_sources", "--notebook", "Imported", "--user", user.username, "--no-wait", str(note))
    assert set(Job.objects.filter(owner=user).values_list("priority", flat=True)) == {"bulk"}
