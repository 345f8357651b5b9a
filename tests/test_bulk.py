"""Bulk imports: overviews that coalesce per notebook (real HTTP, real workers, real Redis)."""

import uuid
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from backend.models import Job
from backend.runtime import rq as rq_adapter
from notebooks.models import Notebook
from tests import factories
from tests.helpers import all_done, new_notebook, upload, wait_for

OVERVIEW = "notebooks.build_overview"
QUEUE = "notebook_processing"


@pytest.fixture
def http(live_server_url: str, make_user: Any) -> httpx.Client:
    token = Token.objects.create(user=make_user("bulk-" + uuid.uuid4().hex[:6]))
    return httpx.Client(base_url=live_server_url, headers={"Authorization": f"Token {token.key}"}, timeout=30)


def _abstract(i: int) -> tuple[str, bytes]:
    text = (
        f"Abstract number {i}. Trial {i} measured how compound {i} changes blood pressure in adults. "
        f"The effect of compound {i} was small but consistent across {i + 10} clinical sites."
    )
    return f"abstract-{i}.txt", text.encode()


def _upload_batches(http: httpx.Client, nb: str, batches: int, per_batch: int, start: int = 0) -> list[str]:
    ids = []
    for b in range(batches):
        files = [_abstract(start + b * per_batch + i) for i in range(per_batch)]
        response = upload(http, nb, files)
        assert response.status_code == 202, response.text
        ids += [s["id"] for s in response.json()["sources"]]
    return ids


def _overviews(nb: str) -> list[Job]:
    return list(Job.objects.filter(notebook_id=nb, kind=OVERVIEW).order_by("created_at"))


def _settled(nb: str) -> list[Job] | None:
    jobs = _overviews(nb)
    return jobs if jobs and all(job.status in Job.TERMINAL for job in jobs) else None


def test_it_coalesces_ten_batches_ending_together_into_one_or_two_overviews(workers: Any, http: httpx.Client) -> None:
    nb = new_notebook(http)
    workers.stop(QUEUE)  # the batches queue up, then end together on two workers
    ids = _upload_batches(http, nb, batches=10, per_batch=2)
    assert not _overviews(nb)  # an overview follows a batch's end, not its upload
    workers.start(QUEUE)
    workers.start(f"{QUEUE}#2")
    sources = all_done(ids, timeout=120)
    assert {s.status for s in sources} == {"ready"}, [(s.title, s.error) for s in sources]

    runs = wait_for(lambda: _settled(nb), timeout=60, message="the overview runs to end")
    assert 1 <= len(runs) <= 2, [(j.id, j.status, j.depends_on) for j in runs]
    assert {j.status for j in runs} == {"succeeded"}
    last = max(runs, key=lambda j: j.finished_at)
    assert last.result["sources"] == last.result["sampled_sources"] == 20
    if len(runs) == 2:  # never side by side: queued while the first ran, it depended on it
        assert runs[1].started_at >= runs[0].finished_at
        assert runs[1].depends_on in ([], [runs[0].id])
    overview = http.get(f"/api/v1/notebooks/{nb}/overview/").json()
    assert overview["status"] == "ready" and overview["source_count"] == 20
    assert len(overview["sources"]) == 20 and overview["summary"]


def test_it_queues_one_more_overview_after_a_running_one_and_no_more(workers: Any, http: httpx.Client) -> None:
    nb = new_notebook(http)
    hold = f"quire:test:hold:{OVERVIEW}"
    rq_adapter.connection().set(hold, 1, ex=120)
    try:
        workers.stop(QUEUE)
        workers.start(QUEUE, extra_env={"QUIRE_PAUSE_AT": f"{OVERVIEW}|Reading"})
        first_ids = _upload_batches(http, nb, batches=1, per_batch=1)
        running = wait_for(
            lambda: Job.objects.filter(notebook_id=nb, kind=OVERVIEW, status="running").first(),
            timeout=60,
            message="the first overview to run (held at its first step)",
        )
        # The held overview occupies the first worker; a second one processes the new batches.
        workers.start(f"{QUEUE}#2")
        later_ids = _upload_batches(http, nb, batches=3, per_batch=1, start=100)
        all_done(later_ids, timeout=90)
        jobs = _overviews(nb)
        assert [j.status for j in jobs] == ["running", "queued"], [(j.id, j.status) for j in jobs]
        assert jobs[1].depends_on == [running.id]
        assert Notebook.objects.get(id=nb).overview_waiting_job_id == jobs[1].id
    finally:
        rq_adapter.connection().delete(hold)

    runs = wait_for(lambda: _settled(nb), timeout=60, message="both overviews to end")
    assert [j.status for j in runs] == ["succeeded", "succeeded"]
    # Held before it read the notebook, the first may see all four sources too; the second is
    # the one a batch ending during a run is owed.
    assert runs[1].result["sources"] == 4
    assert runs[1].started_at >= runs[0].finished_at
    assert len(first_ids) == 1 and runs[0].result["sources"] in (1, 4)
    assert Notebook.objects.get(id=nb).overview["source_count"] == 4
    workers.stop(f"{QUEUE}#2")


def test_the_overview_reads_a_bounded_evenly_spread_sample(make_user: Any, monkeypatch: Any) -> None:
    """A notebook past the sample's size: the rebuild reads at most OVERVIEW_CHUNKS chunks of at
    most OVERVIEW_SOURCES sources spread over the notebook, and still counts every source."""
    import numpy as np

    from notebooks import services

    monkeypatch.setattr(services, "OVERVIEW_SOURCES", 5)
    monkeypatch.setattr(services, "OVERVIEW_CHUNKS", 20)
    notebook = factories.notebook(make_user(), title="big")
    rng = np.random.default_rng(7)
    for s in range(12):
        count = 50 if s == 0 else 2
        source = factories.source(notebook, title=f"source {s}", status="ready", chunk_count=count)
        for p in range(count):
            factories.chunk(
                source,
                f"Source {s} passage {p} about topic {s % 3}.",
                position=p,
                embedding=(rng.normal(size=384).astype(np.float32) / 20).tobytes(),
            )
    result = services.overview_build(notebook_id=str(notebook.id))
    assert result == {"sources": 12, "sampled_sources": 5, "chunks": 4 + 2 * 4}
    overview = Notebook.objects.get(id=notebook.id).overview
    # Sources 0, 2, 4, 7, 9 (evenly spread); the long source 0 gives 4 evenly spaced chunks.
    assert overview["sources"] == ["source 0", "source 2", "source 4", "source 7", "source 9"]
    assert overview["source_count"] == 12 and overview["chunks"] == 12


def test_uploads_are_limited_by_waiting_sources_not_by_request_rate(
    workers: Any, make_user: Any, api_client_for: Any, settings: Any
) -> None:
    """Bulk clients: many upload requests pass (the request throttle of the other enqueue
    endpoints does not apply), until the user's sources waiting for a worker would pass the
    cap; then the whole upload is refused with 429 QUEUE_FULL and Retry-After, nothing kept."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from notebooks.models import Source

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"enqueue": "2/min", "sources": "1000/min"},
    }
    settings.QUIRE_MAX_WAITING_SOURCES = 12
    user = make_user()
    notebook = factories.notebook(user, title="bulk")
    client = api_client_for(user)
    workers.stop(QUEUE)  # nothing starts: every source stays waiting

    def post(first: int, count: int) -> Any:
        files = [SimpleUploadedFile(*_abstract(first + i)) for i in range(count)]
        return client.post(f"/api/v1/notebooks/{notebook.id}/sources/", {"files": files})

    codes = [post(i * 2, 2).status_code for i in range(6)]  # 6 requests in a second: 12 waiting
    assert codes == [202] * 6
    refused = post(100, 1)
    assert refused.status_code == 429, refused.content
    assert refused["Retry-After"] == "15"
    error = refused.json()["error"]
    assert error["code"] == "QUEUE_FULL"
    assert error["details"] == {"waiting": 12, "adding": 1, "limit": 12}
    assert Source.objects.filter(notebook=notebook).count() == 12
    assert len(list((settings.MEDIA_ROOT / "sources" / str(notebook.id)).glob("*"))) == 12  # none of the refused

    # Once sources start, there is room again.
    workers.start(QUEUE)
    wait_for(
        lambda: Job.objects.filter(owner=user, status="queued", attempts=0).count() <= 10,
        timeout=60,
        message="sources to start",
    )
    assert post(200, 2).status_code == 202
