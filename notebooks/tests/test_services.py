"""The notebooks app's write services on their own: the database and Redis, no worker and no
HTTP. What each one writes, what it hands to RQ only once its transaction commits, and what it
refuses. The whole path (HTTP, workers, events) is in tests/test_sources.py and tests/test_bulk.py."""

from __future__ import annotations

from typing import Any

import pytest

from backend.models import Job
from notebooks import services
from notebooks.models import Notebook, Source
from tests import factories

QUEUE = "rq:queue:notebook_processing"


@pytest.fixture
def owner(db: Any, redis_clean: Any) -> Any:
    return factories.user()


def test_adding_sources_writes_one_batch_and_hands_rq_work_only_after_the_commit(
    owner: Any, redis_clean: Any, django_capture_on_commit_callbacks: Any
) -> None:
    nb = factories.notebook(owner)
    with django_capture_on_commit_callbacks(execute=True):
        added = services.sources_add(notebook=nb, owner=owner, files=[factories.text_file() for _ in range(7)])
        assert redis_clean.llen(QUEUE) == 0  # nothing a worker could take before the rows exist
    jobs = Job.objects.filter(batch=added.batch)
    assert jobs.count() == 7 == len(added.sources) == Source.objects.filter(notebook=nb).count()
    assert set(jobs.values_list("priority", flat=True)) == {Job.Priority.BULK}  # 7 > the bulk threshold
    assert {str(s.job_id) for s in Source.objects.filter(notebook=nb)} == set(jobs.values_list("id", flat=True))
    # Fair dispatch: RQ gets one job per live worker (none here: one), the rest wait as rows.
    assert redis_clean.llen(QUEUE) == 1
    assert jobs.filter(dispatched_at__isnull=True).count() == 6


def test_a_file_the_notebook_already_has_is_reported_not_queued_again(
    owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    nb = factories.notebook(owner)
    same = "The same abstract, uploaded twice."
    with django_capture_on_commit_callbacks(execute=True):
        first = services.sources_add(notebook=nb, owner=owner, files=[factories.text_file("a.txt", same)])
    with django_capture_on_commit_callbacks(execute=True):
        again = services.sources_add(
            notebook=nb, owner=owner, files=[factories.text_file("b.txt", same), factories.text_file()]
        )
    assert again.duplicates == [{"name": "b.txt", "existing_source": str(first.sources[0].id)}]
    assert len(again.sources) == 1 and Job.objects.filter(batch=again.batch).count() == 1
    assert Job.objects.get(batch=again.batch).priority == Job.Priority.INTERACTIVE  # one file: watched


def test_an_empty_text_is_refused_and_nothing_is_written(owner: Any) -> None:
    nb = factories.notebook(owner)
    with pytest.raises(services.SourceRejected) as refused:
        services.sources_add(notebook=nb, owner=owner, text="   \n")
    assert refused.value.code == "EMPTY_TEXT"
    assert not Source.objects.filter(notebook=nb).exists() and not Job.objects.filter(owner=owner).exists()


def test_deleting_a_notebook_cancels_its_jobs_and_removes_its_files_after_the_commit(
    owner: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from django.core.files.storage import default_storage

    nb = factories.notebook(owner)
    with django_capture_on_commit_callbacks(execute=True):
        added = services.sources_add(notebook=nb, owner=owner, files=[factories.text_file() for _ in range(2)])
    stored = [s.file.name for s in added.sources]
    assert all(default_storage.exists(name) for name in stored)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.notebook_delete(notebook=nb)
        assert all(default_storage.exists(name) for name in stored)  # kept until the delete commits
    for callback in callbacks:
        callback()
    assert not any(default_storage.exists(name) for name in stored)
    assert not Notebook.objects.filter(id=nb.id).exists()
    statuses = set(Job.objects.filter(id__in=[j.id for j in added.jobs.values()]).values_list("status", flat=True))
    assert statuses == {Job.Status.CANCELLED}


def test_overview_requests_coalesce_while_one_waits(owner: Any, django_capture_on_commit_callbacks: Any) -> None:
    nb = factories.notebook(owner)
    with django_capture_on_commit_callbacks(execute=True):
        first = services.overview_request(notebook_id=str(nb.id), owner=owner)
        second = services.overview_request(notebook_id=str(nb.id), owner=owner)
    assert first is not None and second is None
    assert Job.objects.filter(kind="notebooks.build_overview", notebook_id=nb.id).count() == 1
    assert Notebook.objects.get(id=nb.id).overview_waiting_job_id == first.id
