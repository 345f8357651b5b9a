"""Report and podcast lists: paginated like every list, and one query for a page's jobs."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from backend.models import Job
from notebooks.models import Notebook
from podcast.models import Podcast
from reports.models import Report
from tests import factories


def _job(owner: Any, notebook: Notebook, n: int, progress: int) -> Job:
    return factories.job(
        owner,
        id=f"job-{n}-{notebook.id}",
        kind="reports.generate_report",
        queue="reports",
        func="reports.jobs.report_generate",
        timeout=600,
        subject_type="reports.report",
        subject_id=str(n),
        notebook_id=notebook.id,
        status="running",
        progress=progress,
        message="Writing",
        attempts=1,
        max_attempts=3,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "path"), [(Report, "reports"), (Podcast, "podcasts")])
def test_a_list_is_a_page_and_loads_its_jobs_in_one_query(make_user: Any, model: Any, path: str) -> None:
    owner = make_user()
    notebook = factories.notebook(owner, title="Tides")
    for n in range(7):
        item = factories.artifact(model, notebook, title=f"{path} {n}")
        model.objects.filter(id=item.id).update(job_id=_job(owner, notebook, n, progress=10 * n).id)
    client = APIClient()
    client.force_authenticate(owner)
    url = f"/api/v1/notebooks/{notebook.id}/{path}/"

    with CaptureQueriesContext(connection) as small:
        first = client.get(url, {"limit": 3})
    with CaptureQueriesContext(connection) as large:
        whole = client.get(url)
    assert first.status_code == whole.status_code == 200
    body = first.json()
    assert body["count"] == 7 and len(body["results"]) == 3 and "offset=3" in body["next"]
    # Newest first, each with its own job; a page of 7 costs the same queries as a page of 3.
    assert [r["title"] for r in body["results"]] == [f"{path} 6", f"{path} 5", f"{path} 4"]
    assert [r["job"]["progress"] for r in body["results"]] == [60, 50, 40]
    assert len(whole.json()["results"]) == 7
    assert len(large.captured_queries) == len(small.captured_queries)

    # Another user's notebook is a 404, not an empty page.
    client.force_authenticate(make_user())
    assert client.get(url).status_code == 404
