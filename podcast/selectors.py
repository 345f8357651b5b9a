"""Reads of podcasts. A podcast's notebook is read through ``notebooks.selectors``: this app
never queries another app's models (checked by import-linter, pyproject.toml)."""

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from backend.models import Job
from podcast.models import Podcast


def podcasts_of_notebook(*, notebook: Any) -> QuerySet[Podcast]:
    return Podcast.objects.filter(notebook=notebook)


def podcasts_of(*, user: Any) -> QuerySet[Podcast]:
    """Every podcast ``user`` made: the only ones a request may reach (anyone else's is a 404)."""
    return Podcast.objects.filter(owner=user)


def podcast_job(*, podcast: Podcast, jobs: dict[Any, Job] | None = None) -> Job | None:
    """The podcast's Job row, from ``jobs`` (see ``jobs_of``) when a list has loaded them."""
    if not podcast.job_id:
        return None
    if jobs is not None:
        return jobs.get(podcast.job_id)
    return Job.objects.filter(id=podcast.job_id).first()


def jobs_of(*, podcasts: Iterable[Podcast]) -> dict[Any, Job]:
    """The Job rows of a page of podcasts in one query (a list does not query once per row)."""
    ids = {r.job_id for r in podcasts if r.job_id}
    return {job.id: job for job in Job.objects.filter(id__in=ids)} if ids else {}
