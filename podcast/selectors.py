"""Reads of podcasts. A podcast's notebook is read through ``notebooks.selectors``: this app
never queries another app's models (checked by import-linter, pyproject.toml)."""

from typing import Any

from django.db.models import QuerySet

from podcast.models import Podcast


def podcasts_of_notebook(*, notebook: Any) -> QuerySet[Podcast]:
    return Podcast.objects.filter(notebook=notebook)


def podcasts_of(*, user: Any) -> QuerySet[Podcast]:
    """Every podcast ``user`` made: the only ones a request may reach (anyone else's is a 404)."""
    return Podcast.objects.filter(owner=user)
