"""Reads of reports. A report's notebook is read through ``notebooks.selectors``: this app
never queries another app's models (checked by import-linter, pyproject.toml)."""

from typing import Any

from django.db.models import QuerySet

from reports.models import Report


def reports_of_notebook(*, notebook: Any) -> QuerySet[Report]:
    return Report.objects.filter(notebook=notebook)


def reports_of(*, user: Any) -> QuerySet[Report]:
    """Every report ``user`` asked for: the only ones a request may reach (anyone else's is a 404)."""
    return Report.objects.filter(owner=user)
