"""Crashes: a worker dying at every step boundary, and workers killed during a batch.

Each test prints its figures (jobs, kills, recovered, lost, duplicated, seconds). The default
suite runs a small variant of each; the full ones carry the `slow` marker and run in CI too.
"""

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import pytest
from rest_framework.test import APIClient

from backend.models import Job
from backend.runtime.reconcile import reconcile
from notebooks.ingest.chunking import chunk_text
from notebooks.ingest.extract import extract
from notebooks.ingest.samples import prose
from notebooks.models import Chunk, Notebook, Source
from podcast.models import Podcast
from reports.models import Report
from tests import documents as docs
from tests import factories
from tests.helpers import wait_for, work_horse


@contextmanager
def crashing(workers: Any, queue: str, kind: str, step: str) -> Iterator[None]:
    """The queue's worker restarted so that it dies at `step` of the first job of `kind`."""
    workers.stop(queue)
    workers.start(queue, extra_env={"QUIRE_CRASH_AT": f"{kind}|{step}"})
    try:
        yield
    finally:
        workers.stop(queue)  # the next test gets a well-behaved worker


def expected_chunks(data: bytes, kind: str) -> list[tuple[int, str, int | None]]:
    extracted = extract(data, kind)  # type: ignore[arg-type]
    return [(c.position, c.text, c.page) for c in chunk_text(extracted.text, extracted.pages)]


def add_file(client: APIClient, notebook: Notebook, name: str, data: bytes) -> Source:
    response = client.post(f"/api/v1/notebooks/{notebook.id}/sources/", {"files": [_upload(name, data)]})
    assert response.status_code == 202, response.content
    return Source.objects.get(id=response.json()["sources"][0]["id"])


def _upload(name: str, data: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


def finished_source(source_id: Any, timeout: float = 90) -> Source:
    return wait_for(
        lambda: Source.objects.filter(id=source_id, status__in=["ready", "failed", "cancelled"]).first(),
        timeout=timeout,
        interval=0.2,
        message="source",
    )


INGESTION_STEPS = [
    "Reading file",
    pytest.param("Extracting text", marks=pytest.mark.slow),
    "Embedding chunk",
    "Indexing",
]


@pytest.mark.parametrize("step", INGESTION_STEPS)
def test_a_crash_at_an_ingestion_step_is_rerun_to_the_same_chunks(
    workers: Any, make_user: Any, api_client_for: Any, step: str
) -> None:
    user = make_user()
    client = api_client_for(user)
    notebook = factories.notebook(user, title="crash")
    data = docs.volcano_pdf()
    with crashing(workers, "notebook_processing", "notebooks.process_source", step):
        started = time.monotonic()
        source = finished_source(add_file(client, notebook, "v.pdf", data).id)
    job = Job.objects.get(id=source.job_id)
    print(f"\n[figures] crash at '{step}': {job.attempts} attempts, ready after {time.monotonic() - started:.1f}s")
    assert source.status == "ready", source.error
    assert job.attempts == 2  # the crashed attempt, then the re-run
    got = list(Chunk.objects.filter(source=source).order_by("position").values_list("position", "text", "page"))
    assert got == expected_chunks(data, "pdf")


@pytest.mark.parametrize(
    "step",
    [
        pytest.param("Retrieving", marks=pytest.mark.slow),
        "Writing section",
        pytest.param("Saving", marks=pytest.mark.slow),
    ],
)
def test_a_crash_while_writing_a_report_gives_the_same_report(
    workers: Any, make_user: Any, api_client_for: Any, step: str
) -> None:
    user = make_user()
    client = api_client_for(user)
    notebook = factories.notebook(user, title="crash report")
    for name, data in [("v.pdf", docs.volcano_pdf()), ("r.md", docs.roman_roads_markdown())]:
        assert finished_source(add_file(client, notebook, name, data).id).status == "ready"

    def report() -> Report:
        response = client.post(f"/api/v1/notebooks/{notebook.id}/reports/", {"length": "short"}, format="json")
        assert response.status_code == 202, response.content
        rid = response.json()["id"]
        return wait_for(lambda: Report.objects.filter(id=rid, status__in=["completed", "failed"]).first(), timeout=90)

    reference = report()
    with crashing(workers, "reports", "reports.generate_report", step):
        crashed = report()
    assert crashed.status == "completed", crashed.error
    assert Job.objects.get(id=crashed.job_id).attempts == 2
    assert (crashed.markdown, crashed.citations) == (reference.markdown, reference.citations)


def test_a_crash_while_voicing_a_podcast_only_redoes_what_is_missing(
    workers: Any, make_user: Any, api_client_for: Any
) -> None:
    user = make_user()
    client = api_client_for(user)
    notebook = factories.notebook(user, title="crash podcast")
    assert finished_source(add_file(client, notebook, "v.pdf", docs.volcano_pdf()).id).status == "ready"
    with crashing(workers, "podcast", "podcast.generate_podcast", "Voicing turn 3/"):
        response = client.post(f"/api/v1/notebooks/{notebook.id}/podcasts/", {"minutes": 0.75}, format="json")
        pid = response.json()["id"]
        podcast = wait_for(
            lambda: Podcast.objects.filter(id=pid, status__in=["completed", "failed"]).first(), timeout=180
        )
    assert podcast.status == "completed", podcast.error
    assert Job.objects.get(id=podcast.job_id).attempts == 2
    assert podcast.duration_seconds == pytest.approx(podcast.expected_seconds, rel=0.3)


KILL_WINDOW = 120


def run_kill_chaos(workers: Any, user: Any, documents: int, worker_count: int, kills: int) -> None:
    client = APIClient()
    client.force_authenticate(user)
    notebook = factories.notebook(user, title="chaos")
    corpus = {f"doc-{i:03d}.md": f"# Document {i}\n\n{prose(320, seed=i)}\n".encode() for i in range(documents)}
    expected = {name: len(expected_chunks(data, "md")) for name, data in corpus.items()}

    workers.stop("notebook_processing")
    keys = [f"notebook_processing#{i}" for i in range(worker_count)]
    for key in keys:
        workers.start(key)
    names = sorted(corpus)
    for start in range(0, len(names), 20):
        files = [_upload(n, corpus[n]) for n in names[start : start + 20]]
        assert client.post(f"/api/v1/notebooks/{notebook.id}/sources/", {"files": files}).status_code == 202

    rng = random.Random(7)
    whole, horses, started = 0, 0, time.monotonic()
    reconciled = started
    # Killing stops after KILL_WINDOW seconds even with kills unspent: once only lost jobs are
    # left, no horse is found to kill, and the loop waited on the every-minute reconciler of
    # the maintenance worker, whose scheduler earlier tests may have left stopped (a CI run
    # spent its 300 s here). The reconciler runs here every 10 s, as in settled() below.
    while (whole < kills or horses < kills) and time.monotonic() - started < KILL_WINDOW:
        time.sleep(rng.uniform(0.5, 2.0))
        if time.monotonic() - reconciled > 10:
            reconcile()
            reconciled = time.monotonic()
        key = rng.choice(keys)
        worker = psutil.Process(workers.procs[key].pid)
        horse = work_horse(worker)
        if horses < kills and horse is not None and (whole >= kills or rng.random() < 0.5):
            horse.send_signal(signal.SIGKILL)
            horses += 1
        elif whole < kills:
            workers.kill(key, horse_pid=horse.pid if horse else None)
            workers.start(key, wait=False)  # restarted, as a process manager would
            whole += 1
        if not Source.objects.filter(notebook=notebook, status__in=["pending", "processing"]).exists():
            break  # everything finished before all kills were spent
    last_kill = time.monotonic()

    def settled() -> bool:
        reconcile()  # the every-minute maintenance job, run more often here
        return not Source.objects.filter(notebook=notebook, status__in=["pending", "processing"]).exists()

    wait_for(settled, timeout=300, interval=2, message="every source to end")
    settle = time.monotonic() - last_kill
    sources = list(Source.objects.filter(notebook=notebook))
    ready = [s for s in sources if s.status == "ready"]
    failed = [s for s in sources if s.status == "failed"]
    jobs = Job.objects.filter(id__in=[s.job_id for s in sources])
    recovered = jobs.filter(status="succeeded", attempts__gt=1).count()
    duplicated = sum(
        Chunk.objects.filter(source=s).count() != expected[s.original_filename]
        or s.chunk_count != expected[s.original_filename]
        for s in ready
    )
    print(
        f"\n[figures] kill chaos: jobs={len(sources)} workers={worker_count} whole-worker kills={whole} "
        f"horse kills={horses} recovered={recovered} ready={len(ready)} failed={len(failed)} lost=0 "
        f"duplicated={duplicated} settled {settle:.0f}s after the last kill, total {time.monotonic() - started:.0f}s"
    )
    assert len(sources) == documents
    assert all(s.error and s.error_code for s in failed)  # a failure always says why
    assert duplicated == 0
    assert settle < 300
    assert len(ready) >= documents - 2 * kills  # only a job killed on every attempt may fail
    for key in keys:
        workers.stop(key)


def test_killing_workers_and_horses_during_a_batch_loses_nothing(workers: Any, make_user: Any) -> None:
    run_kill_chaos(workers, make_user(), documents=16, worker_count=2, kills=2)


@pytest.mark.slow
@pytest.mark.timeout(KILL_WINDOW + 300 + 120)  # the kills, the settling, the uploads and stops
def test_two_hundred_documents_survive_ten_worker_and_ten_horse_kills(workers: Any, make_user: Any) -> None:
    run_kill_chaos(workers, make_user(), documents=200, worker_count=3, kills=10)


@pytest.mark.slow
def test_a_killed_workers_job_runs_again_within_the_recovery_window_five_times_of_five(
    workers: Any, redis_clean: Any
) -> None:
    from backend.runtime import get_kind

    kind = get_kind("tests.sleeper_reports")
    assert kind is not None
    times = []
    for _ in range(5):
        key = uuid.uuid4().hex
        job = kind.enqueue({"key": key, "seconds": 4, "steps": 8})
        wait_for(lambda key=key: redis_clean.get(f"{key}:pid"), message="job started")
        killed = time.monotonic()
        workers.kill("reports", horse_pid=int(redis_clean.get(f"{key}:pid")))
        workers.start("reports")

        def rerun(job_id: str = job.id) -> bool:
            reconcile()
            return Job.objects.filter(id=job_id, attempts=2).exists()

        wait_for(rerun, timeout=120, interval=1, message="re-run")
        times.append(time.monotonic() - killed)
        wait_for(lambda job_id=job.id: Job.objects.filter(id=job_id, status="succeeded").exists(), timeout=60)
    print(f"\n[figures] recovery after a whole-worker kill: {', '.join(f'{t:.0f}s' for t in times)} (5/5)")
    assert max(times) < 120
    assert os.environ.get("QUIRE_WORKER_TTL") is None  # measured with the test settings' 15 s TTL


def test_a_lost_job_is_run_again_after_its_execution_record_expired(workers: Any, redis_clean: Any) -> None:
    """Found by tests/test_multihost.py (1 run in 7 stalled): when the reconciler reaches a lost
    job more than 65 s after its worker's last heartbeat, RQ has let the job's execution record
    expire but still lists it, and RQ's Job.delete raised on it half-way through the re-push:
    the job was left "scheduled" in no registry and never ran again. Here the expiry is
    made to happen at once instead of waiting for it."""
    from rq.registry import StartedJobRegistry

    from backend.runtime import get_kind

    kind = get_kind("tests.sleeper_reports")
    assert kind is not None
    key = uuid.uuid4().hex
    job = kind.enqueue({"key": key, "seconds": 4, "steps": 8})
    wait_for(lambda: redis_clean.get(f"{key}:pid"), message="job started")
    killed = time.monotonic()
    workers.kill("reports", horse_pid=int(redis_clean.get(f"{key}:pid")))
    expired = 0
    for execution_key in redis_clean.scan_iter(f"rq:execution:{job.id}:*"):
        expired += redis_clean.delete(execution_key)
    started = StartedJobRegistry("reports", connection=redis_clean)
    for entry in redis_clean.zrange(started.key, 0, -1):
        if entry.decode().startswith(f"{job.id}:"):
            redis_clean.zadd(started.key, {entry: 1})  # its heartbeat deadline has passed
    assert expired == 1
    workers.start("reports")

    def rerun() -> bool:
        reconcile()
        return Job.objects.filter(id=job.id, attempts=2).exists()

    wait_for(rerun, timeout=100, interval=1, message="re-run")
    wait_for(lambda: Job.objects.filter(id=job.id, status="succeeded").exists(), timeout=60)
    took = time.monotonic() - killed
    print(f"\n[figures] lost job with an expired execution record: ran again {took:.0f}s after the kill")


HOLD_NOTEBOOK_ROW = """
import sys, time
import django
django.setup()
from django.db import transaction
from notebooks.models import Notebook
with transaction.atomic():
    Notebook.objects.select_for_update().get(id=sys.argv[1])
    print("locked", flush=True)
    time.sleep(600)  # a host gone quiet inside its transaction, as if cut off the network
"""


def test_a_transaction_left_open_by_a_vanished_host_does_not_block_other_workers(
    workers: Any, make_user: Any, api_client_for: Any, process_env: dict[str, str]
) -> None:
    """A worker host cut off inside a transaction keeps its session, and its row locks, open on
    the server until TCP gives up (hours); here it holds the notebook row, which every
    ingestion job's last step updates. The server now ends such a session after
    DATABASE_IDLE_TRANSACTION_TIMEOUT seconds (3 here)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server sessions: a writer that vanishes releases its lock with its process")
    user = make_user()
    client = api_client_for(user)
    notebook = factories.notebook(user, title="held")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_NOTEBOOK_ROW, str(notebook.id)],
        env={**process_env, "DATABASE_IDLE_TRANSACTION_TIMEOUT": "3"},
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        locked_at = time.monotonic()
        data = docs.volcano_pdf()
        source = finished_source(add_file(client, notebook, "v.pdf", data).id, timeout=60)
        waited = time.monotonic() - locked_at
    finally:
        holder.kill()
        holder.wait()
    print(f"\n[figures] notebook row held by a silent session: ingestion ready {waited:.1f}s after the lock")
    assert source.status == "ready", source.error
    got = list(Chunk.objects.filter(source=source).order_by("position").values_list("position", "text", "page"))
    assert got == expected_chunks(data, "pdf")
    assert waited > 2.5  # it did wait for the lock (3 s): the server ended the silent session


def _maintenance_world(user: Any, key: str) -> dict[str, Any]:
    """Something for every maintenance job to do, with a label for each thing it may remove:
    old failed podcast (row + audio), a recent one, an orphaned audio file, a stale work folder,
    an old failed report and a recent one, an old finished job and a recent one, and a job
    that Redis lost (queued in the database only)."""
    from datetime import timedelta
    from pathlib import Path

    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.utils import timezone

    from backend.models import Batch

    now = timezone.now()
    notebook = factories.notebook(user, title=f"maintenance {key}")

    def podcast(age_days: float) -> Podcast:
        made = factories.podcast(notebook, title=key, status="failed")
        name = default_storage.save(f"podcasts/{notebook.id}/{made.id}.mp3", ContentFile(b"ID3"))
        Podcast.objects.filter(id=made.id).update(audio_mp3=name, updated_at=now - timedelta(days=age_days))
        return made

    def report(age_days: float) -> Report:
        made = factories.report(notebook, title=key, status="failed")
        Report.objects.filter(id=made.id).update(updated_at=now - timedelta(days=age_days))
        return made

    def finished_job(age_days: float) -> Job:
        return factories.job(user, status="succeeded", finished_at=now - timedelta(days=age_days))

    old_podcast, new_podcast = podcast(10), podcast(1)
    orphan = default_storage.save(f"podcasts/{notebook.id}/{uuid.uuid4()}.wav", ContentFile(b"RIFF"))
    stale = Path(settings.QUIRE_PODCAST_WORK_DIR) / str(uuid.uuid4())
    stale.mkdir(parents=True)
    batch = factories.batch(user)
    Batch.objects.filter(id=batch.id).update(created_at=now - timedelta(days=40))
    lost = factories.job(user, kwargs={"key": key, "name": "lost"}, status="queued")
    Job.objects.filter(id=lost.id).update(updated_at=now - timedelta(minutes=5))
    return {
        "old podcast": Podcast.objects.filter(id=old_podcast.id).exists,
        "old podcast audio": lambda: default_storage.exists(old_podcast.audio_mp3.name),
        "recent podcast": Podcast.objects.filter(id=new_podcast.id).exists,
        "recent podcast audio": lambda: default_storage.exists(new_podcast.audio_mp3.name),
        "orphaned audio": lambda: default_storage.exists(orphan),
        "stale work folder": stale.exists,
        "old report": Report.objects.filter(id=report(10).id).exists,
        "recent report": Report.objects.filter(id=report(1).id).exists,
        "old finished job": Job.objects.filter(id=finished_job(40).id).exists,
        "recent finished job": Job.objects.filter(id=finished_job(1).id).exists,
        "empty old batch": Batch.objects.filter(id=batch.id).exists,
        "job Redis lost": lambda: Job.objects.get(id=lost.id).status,
    }


def _state(world: dict[str, Any]) -> dict[str, Any]:
    return {label: probe() for label, probe in world.items()}


def _kind(name: str) -> Any:
    from backend.runtime import get_kind

    found = get_kind(name)
    assert found is not None
    return found


def _run(kind_name: str) -> Job:
    job = _kind(kind_name).enqueue({})
    return wait_for(lambda: Job.objects.filter(id=job.id, status__in=Job.TERMINAL).first(), timeout=60)


MAINTENANCE_STEPS = [
    ("maintenance.cleanup_old_podcast_jobs", "Removing orphaned audio"),
    *[
        pytest.param(kind, step, marks=pytest.mark.slow)
        for kind, step in [
            ("maintenance.cleanup_old_podcast_jobs", "Removing old podcasts"),
            ("maintenance.cleanup_old_podcast_jobs", "Removing stale work folders"),
            ("maintenance.cleanup_old_reports", "Removing old reports"),
            ("maintenance.purge_jobs", "Deleting finished jobs"),
            ("maintenance.purge_jobs", "Deleting empty batches"),
            ("maintenance.reconcile_jobs", "Cleaning RQ registries"),
            ("maintenance.reconcile_jobs", "Checking unfinished jobs"),
        ]
    ],
]


@pytest.mark.parametrize(("kind_name", "step"), MAINTENANCE_STEPS)
def test_a_maintenance_job_that_crashes_at_a_step_and_runs_again_ends_as_a_clean_run(
    workers: Any, make_user: Any, kind_name: str, step: str
) -> None:
    user = make_user()

    def settled(world: dict[str, Any]) -> dict[str, Any]:
        if kind_name == "maintenance.reconcile_jobs":  # the lost job is back in RQ: let it finish
            wait_for(lambda: world["job Redis lost"]() == "succeeded", timeout=30, message="the lost job to run")
        return _state(world)

    clean_world = _maintenance_world(user, "clean")
    before = _state(clean_world)
    assert _run(kind_name).status == "succeeded"
    clean = settled(clean_world)
    assert clean != before  # the job had work to do

    world = _maintenance_world(user, "crash")
    started = time.monotonic()
    with crashing(workers, "maintenance", kind_name, step):
        crashed = _kind(kind_name).enqueue({})
        proc = workers.procs["maintenance"]
        wait_for(lambda: proc.poll() is not None, timeout=60, message="the maintenance worker to crash")
    workers.start("maintenance")  # restarted, as a process manager would; the next run is the re-run
    assert Job.objects.get(id=crashed.id).status == "running"  # what the crash left (the reconciler ends it)
    assert _run(kind_name).status == "succeeded"
    after = settled(world)
    seconds = time.monotonic() - started
    print(f"\n[figures] {kind_name} crashed at '{step}', re-run: same state as a clean run ({seconds:.1f}s)")
    assert after == clean


@pytest.mark.parametrize("step", ["Summarising", pytest.param("Reading the notebook", marks=pytest.mark.slow)])
def test_a_crash_while_building_an_overview_gives_the_same_overview(
    workers: Any, make_user: Any, api_client_for: Any, step: str
) -> None:
    user = make_user()
    client = api_client_for(user)
    notebook = factories.notebook(user, title="crash overview")
    for name, data in [("v.pdf", docs.volcano_pdf()), ("r.md", docs.roman_roads_markdown())]:
        assert finished_source(add_file(client, notebook, name, data).id).status == "ready"
    build = _kind("notebooks.build_overview")

    def overview() -> tuple[Job, Any]:
        Notebook.objects.filter(id=notebook.id).update(overview={}, overview_updated_at=None)
        job = build.enqueue({"notebook_id": str(notebook.id)}, notebook_id=notebook.id)
        ended = wait_for(lambda: Job.objects.filter(id=job.id, status__in=Job.TERMINAL).first(), timeout=90)
        return ended, Notebook.objects.get(id=notebook.id).overview

    wait_for(lambda: not Job.objects.filter(kind="notebooks.build_overview").exclude(status__in=Job.TERMINAL).exists())
    clean_job, reference = overview()
    assert clean_job.status == "succeeded" and reference
    with crashing(workers, "notebook_processing", "notebooks.build_overview", step):
        crashed_job, crashed = overview()
    assert crashed_job.status == "succeeded", crashed_job.error
    assert crashed_job.attempts == 2
    assert crashed == reference
