"""Quotas on expensive jobs, enforced in the database, and throttles on enqueue endpoints."""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from backend.models import Job
from notebooks.models import Chunk, Notebook, Source
from reports.models import Report


def ready_notebook(user: Any) -> Notebook:
    notebook = Notebook.objects.create(owner=user, title="quota")
    source = Source.objects.create(notebook=notebook, kind="text", title="t", status="ready", text="x")
    Chunk.objects.create(
        source=source, notebook=notebook, position=0, text="x", token_count=1, char_start=0, char_end=1,
        embedding=b"\x00" * 4 * 384,
    )  # fmt: skip
    return notebook


@pytest.mark.django_db(transaction=True)
def test_fifty_parallel_requests_against_a_quota_of_two_admit_exactly_two(
    make_user: Any, redis_clean: Any, settings: Any, _workers: Any
) -> None:
    # No reports worker: an admitted report that finished during the burst would rightly free a
    # slot (suspending workers is not enough, one already blocked in BLPOP still takes a job).
    _workers.stop("reports")
    settings.QUIRE_QUOTAS = {**settings.QUIRE_QUOTAS, "CONCURRENT": 2}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"enqueue": "1000/min"}}
    user = make_user()
    notebook = ready_notebook(user)
    results: list[tuple[int, str | None]] = []
    start = threading.Barrier(50)

    def request() -> None:
        client = APIClient()
        client.force_authenticate(user)
        start.wait()
        response = client.post(f"/api/v1/notebooks/{notebook.id}/reports/", {"topic": "x"}, format="json")
        results.append((response.status_code, response.headers.get("Retry-After")))
        connection.close()

    threads = [threading.Thread(target=request) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(code for code, _ in results)
    print(f"\n[figures] 50 parallel report requests, quota 2: {codes.count(202)} admitted, {codes.count(429)} refused")
    assert codes.count(202) == 2
    assert codes.count(429) == 48
    assert all(retry == "30" for code, retry in results if code == 429)
    assert Report.objects.filter(notebook=notebook).count() == 2
    assert Job.objects.filter(owner=user, kind="reports.generate_report").count() == 2


@pytest.mark.django_db
def test_the_daily_cap_says_when_to_come_back(
    make_user: Any, api_client_for: Any, redis_clean: Any, settings: Any
) -> None:
    settings.QUIRE_QUOTAS = {**settings.QUIRE_QUOTAS, "CONCURRENT": 100, "DAILY": 3}
    user = make_user()
    notebook = ready_notebook(user)
    client = api_client_for(user)
    for _ in range(3):
        assert (
            client.post(f"/api/v1/notebooks/{notebook.id}/podcasts/", {"minutes": 1}, format="json").status_code == 202
        )
    Job.objects.filter(owner=user).update(status="succeeded", created_at=timezone.now() - timedelta(hours=20))
    response = client.post(f"/api/v1/notebooks/{notebook.id}/reports/", {}, format="json")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "QUOTA_EXCEEDED"
    assert 3 * 3600 < int(response["Retry-After"]) <= 4 * 3600 + 1


@pytest.mark.django_db
def test_enqueue_endpoints_are_throttled(make_user: Any, api_client_for: Any, redis_clean: Any, settings: Any) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"enqueue": "3/min", "sources": "3/min"},
    }
    user = make_user()
    notebook = Notebook.objects.create(owner=user, title="t")
    client = api_client_for(user)
    codes = [
        client.post(f"/api/v1/notebooks/{notebook.id}/sources/", {"text": f"note {i}"}, format="json").status_code
        for i in range(5)
    ]
    assert codes == [202, 202, 202, 429, 429]
    assert client.get(f"/api/v1/notebooks/{notebook.id}/sources/").status_code == 200  # reads are not throttled
    response = client.post(f"/api/v1/notebooks/{notebook.id}/sources/", {"text": "again"}, format="json")
    assert int(response["Retry-After"]) > 0
