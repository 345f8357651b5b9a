"""Small sources run in groups (backend/runtime/companions.py, notebooks/ingestion.py): one job
takes its owner's other waiting small sources along and embeds all their chunks in one call,
while each source keeps its own Job row, attempts, events and outcome. Real workers, Redis and
database; the sources are uploaded while the ingestion worker is stopped, so they wait together."""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import psutil
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.models import Job
from backend.runtime import rq as rq_adapter
from backend.runtime.events import stream_key
from backend.runtime.reconcile import reconcile
from notebooks import embeddings
from notebooks.models import Chunk, Source
from tests import factories
from tests.helpers import wait_for

QUEUE = "notebook_processing"
KIND = "notebooks.process_source"
HOLD = f"quire:test:hold:{KIND}"


@contextmanager
def ingestion_worker(workers: Any, **env: str) -> Iterator[Any]:
    """The ingestion worker restarted with ``env`` (the next test gets a well-behaved one)."""
    workers.stop(QUEUE)
    proc = workers.start(QUEUE, extra_env=env)
    try:
        yield proc
    finally:
        workers.stop(QUEUE)


def abstracts(count: int) -> list[SimpleUploadedFile]:
    return [
        SimpleUploadedFile(
            f"abstract-{i:02d}.txt",
            f"Abstract {i}\n\nStudy {i} measured how river sediment {i} moves after floods in "
            f"delta number {i}; the samples were dated and compared over {i + 3} years.\n".encode(),
        )
        for i in range(count)
    ]


def upload_while_stopped(workers: Any, api_client_for: Any, user: Any, title: str, count: int) -> list[Source]:
    notebook = factories.notebook(user, title=title)
    workers.stop(QUEUE)
    response = api_client_for(user).post(f"/api/v1/notebooks/{notebook.id}/sources/", {"files": abstracts(count)})
    assert response.status_code == 202, response.content
    ids = [s["id"] for s in response.json()["sources"]]
    return list(Source.objects.filter(id__in=ids).order_by("original_filename"))


def settled(sources: list[Source], timeout: float = 120) -> list[Source]:
    """Every source ended; the reconciler runs meanwhile, as it does every minute in production."""
    ids = [s.id for s in sources]

    def ended() -> bool:
        reconcile()
        return Source.objects.filter(id__in=ids, status__in=("ready", "failed", "cancelled")).count() == len(ids)

    wait_for(ended, timeout=timeout, interval=0.5, message="every source to end")
    return list(Source.objects.filter(id__in=ids).order_by("original_filename"))


def jobs_of(sources: list[Source]) -> dict[str, Job]:
    return {job.subject_id: job for job in Job.objects.filter(id__in=[s.job_id for s in sources])}


def job_events(notebook_id: Any, job_id: str) -> list[dict[str, Any]]:
    entries = rq_adapter.connection().xrange(stream_key(notebook_id))
    jobs = [json.loads(fields[b"data"]) for _id, fields in entries if fields[b"type"] == b"job"]
    return [job for job in jobs if job["id"] == job_id]


def held_group(sources: list[Source]) -> list[Job]:
    """The group's rows once its lead is held before indexing: the lead and its companions."""
    lead = wait_for(
        lambda: Job.objects.filter(
            id__in=[s.job_id for s in sources], status="running", message__startswith="Embedding"
        ).first(),
        timeout=60,
        message="a group's lead held before indexing",
    )
    return [lead, *Job.objects.filter(led_by=lead.id, status="running")]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_small_sources_run_in_groups_each_with_its_own_job_row_events_and_vectors(
    workers: Any, make_user: Any, api_client_for: Any
) -> None:
    user = make_user()
    sources = upload_while_stopped(workers, api_client_for, user, "many small sources", 12)
    workers.start(QUEUE)
    ended = settled(sources)
    assert [s.status for s in ended] == ["ready"] * 12, [(s.original_filename, s.error) for s in ended]
    jobs = jobs_of(ended)
    assert len({job.id for job in jobs.values()}) == 12  # a row per source, never a shared one
    for source in ended:
        job = jobs[str(source.id)]
        assert (job.status, job.attempts, job.progress, job.error_code) == ("succeeded", 1, 100, "")
        assert job.started_at is not None and job.finished_at is not None and job.worker_name
        statuses = [e["status"] for e in job_events(source.notebook_id, job.id)]
        assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "succeeded", statuses
    companions = [job for job in jobs.values() if job.led_by]
    leads = {job.led_by for job in companions}
    # One job is in RQ when the worker starts and the next is handed over as it forks; the
    # rest wait in the backlog, where the first lead takes them: at most 3 forks for 12 sources.
    assert len(companions) >= 9 and leads <= {job.id for job in jobs.values() if not job.led_by}
    assert all(not job.alone for job in jobs.values())
    # Each source got the vectors of its own chunks out of the shared embedding call.
    model = embeddings.embedder()
    for source in ended:
        chunks = list(Chunk.objects.filter(source=source).order_by("position"))
        number = int(source.original_filename[len("abstract-") : -len(".txt")])
        assert len(chunks) == source.chunk_count >= 1 and f"Study {number} measured" in chunks[0].text
        stored = np.vstack([np.frombuffer(c.embedding, dtype=np.float32) for c in chunks])
        assert np.allclose(stored, model.embed([c.text for c in chunks]), atol=1e-4)


def test_cancelling_a_companion_keeps_nothing_of_it_and_loses_no_other(
    workers: Any, make_user: Any, api_client_for: Any, redis_clean: Any
) -> None:
    user = make_user()
    sources = upload_while_stopped(workers, api_client_for, user, "cancel a companion", 6)
    redis_clean.set(HOLD, 1, ex=120)
    with ingestion_worker(workers, QUIRE_PAUSE_AT=f"{KIND}|Indexing"):
        group = held_group(sources)
        assert len(group) >= 3
        reconcile()  # a companion of a live, busy lead is in hand: the reconciler leaves it
        assert Job.objects.filter(id__in=[j.id for j in group], status="running").count() == len(group)
        victim = group[-1]
        started = time.monotonic()
        response = api_client_for(user).post(f"/api/v1/jobs/{victim.id}/cancel/")
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        assert Source.objects.get(id=victim.subject_id).status == "cancelled"
        redis_clean.delete(HOLD)
        ended = settled(sources)
    print(f"\n[figures] cancel of 1 companion of {len(group)}: the group ended {time.monotonic() - started:.2f}s after")
    jobs = jobs_of(ended)
    for source in ended:
        job = jobs[str(source.id)]
        if job.id == victim.id:
            assert (source.status, source.chunk_count, job.status) == ("cancelled", 0, "cancelled")
            assert not Chunk.objects.filter(source=source).exists()
        else:
            assert (source.status, job.status, job.attempts) == ("ready", "succeeded", 1), (source.status, job.error)
    time.sleep(1.5)  # nothing brings the cancelled one back
    assert Source.objects.get(id=victim.subject_id).status == "cancelled"


def test_cancelling_the_lead_stops_its_horse_and_its_companions_run_later_uncounted(
    workers: Any, make_user: Any, api_client_for: Any, redis_clean: Any
) -> None:
    user = make_user()
    sources = upload_while_stopped(workers, api_client_for, user, "cancel the lead", 6)
    redis_clean.set(HOLD, 1, ex=120)
    with ingestion_worker(workers, QUIRE_PAUSE_AT=f"{KIND}|Indexing") as worker:
        lead, *companions = held_group(sources)
        assert companions
        # The worker's only child here (this queue's worker runs no scheduler), bar the speech model's.
        horse = next(c for c in psutil.Process(worker.pid).children() if "transcriber" not in " ".join(c.cmdline()))
        response = api_client_for(user).post(f"/api/v1/jobs/{lead.id}/cancel/")
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        wait_for(lambda: not alive(horse.pid), timeout=5, message="the lead's work-horse to stop")
        redis_clean.delete(HOLD)
        ended = settled(sources)
    jobs = jobs_of(ended)
    assert jobs[lead.subject_id].status == "cancelled"
    assert Source.objects.get(id=lead.subject_id).status == "cancelled"
    for companion in companions:
        job, source = jobs[companion.subject_id], Source.objects.get(id=companion.subject_id)
        # Back in the backlog with its attempt not counted, then run (in a group again: not alone).
        assert (source.status, job.status, job.attempts, job.alone) == ("ready", "succeeded", 1, False)
        statuses = [e["status"] for e in job_events(source.notebook_id, job.id)]
        assert statuses.count("running") >= 2 and statuses[-1] == "succeeded", statuses


def test_a_source_that_kills_its_horse_every_time_fails_alone_and_the_others_are_not_charged(
    workers: Any, make_user: Any, api_client_for: Any
) -> None:
    user = make_user()
    sources = upload_while_stopped(workers, api_client_for, user, "one poisonous source", 6)
    culprit = sources[-1]  # waits in the backlog: a companion of the first group
    with ingestion_worker(workers, QUIRE_CRASH_AT=f"{KIND}|Reading file", QUIRE_CRASH_EVERY_TIME=culprit.job_id):
        ended = settled(sources)
    jobs = jobs_of(ended)
    bad = jobs[str(culprit.id)]
    assert (bad.status, bad.error_code, bad.attempts, bad.alone) == ("failed", "WORKER_LOST", bad.max_attempts, True)
    assert Source.objects.get(id=culprit.id).status == "failed"
    others = [jobs[str(s.id)] for s in ended if s.id != culprit.id]
    assert [Source.objects.get(id=j.subject_id).status for j in others] == ["ready"] * 5
    # The crash cost nobody else an attempt; the members of the group it struck ran alone after.
    assert all((j.status, j.attempts) == ("succeeded", 1) for j in others), [(j.status, j.attempts) for j in others]
    struck = [j for j in others if j.alone]
    assert struck, "the culprit ran in a group with some of the others"
    for job in struck:
        statuses = [(e["status"], e["error_code"]) for e in job_events(job.notebook_id, job.id)]
        assert ("queued", "WORKER_LOST") in statuses and statuses[-1] == ("succeeded", ""), statuses
