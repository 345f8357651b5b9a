"""Reads of podcasts. A podcast's notebook is read through ``notebooks.selectors``: this app
never queries another app's models (checked by import-linter, pyproject.toml)."""

from typing import Any

from django.db.models import QuerySet

from backend.models import Job
from podcast.models import Podcast


def podcasts_of_notebook(*, notebook: Any) -> QuerySet[Podcast]:
    return Podcast.objects.filter(notebook=notebook)


def podcasts_of(*, user: Any) -> QuerySet[Podcast]:
    """Every podcast ``user`` made: the only ones a request may reach (anyone else's is a 404)."""
    return Podcast.objects.filter(owner=user)


def podcast_job(*, podcast: Podcast) -> Job | None:
    return Job.objects.filter(id=podcast.job_id).first() if podcast.job_id else None
