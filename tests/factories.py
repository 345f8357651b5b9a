"""Test data made the way the application makes it: plain functions, one per kind of row, with
defaults a test overrides only where it matters (no fixtures hidden behind them)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from notebooks.models import Notebook


def user(**extra: Any) -> Any:
    return get_user_model().objects.create_user(
        username=extra.pop("username", f"user-{uuid.uuid4().hex[:8]}"), password="pw-Quire-123", **extra
    )


def notebook(owner: Any = None, title: str = "Research") -> Notebook:
    from notebooks.services import notebook_create

    return notebook_create(owner=owner or user(), title=title)


def text_file(name: str = "", text: str = "") -> SimpleUploadedFile:
    """An uploaded .txt file with content of its own (two files never count as duplicates)."""
    tag = uuid.uuid4().hex
    return SimpleUploadedFile(name or f"note-{tag[:8]}.txt", (text or f"A note on basalt columns {tag}.").encode())
