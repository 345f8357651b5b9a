"""Test data made the way the application makes it: plain functions, one per kind of row, with
defaults a test overrides only where it matters (no fixtures hidden behind them)."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.models import Artifact, Batch, Job
from notebooks.ingest.minilm import DIM
from notebooks.models import Chunk, Notebook, Question, Source
from podcast.models import Podcast
from reports.models import Report

A = TypeVar("A", bound=Artifact)


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


def source(notebook: Notebook, **fields: Any) -> Source:
    """A pasted text's bare row: pending, no job, no chunks. For a test that runs the ingestion
    itself, or sets ``status`` and adds its own chunks (``chunk``)."""
    defaults = {"kind": Source.Kind.TEXT, "title": "Basalt", "text": "Basalt cools into columns."}
    return Source.objects.create(notebook=notebook, **{**defaults, **fields})


def chunk(source: Source, text: str = "Basalt cools into columns.", **fields: Any) -> Chunk:
    """The source's passage ``text`` (position 0 unless given), spanning len(text) characters from
    ``char_start``. Its embedding is zeros (close to nothing): pass a vector where the semantic
    search must rank it."""
    start = fields.pop("char_start", 0)
    defaults = {
        "notebook_id": source.notebook_id,
        "position": 0,
        "token_count": len(text.split()),
        "char_end": start + len(text),
        "embedding": bytes(4 * DIM),
    }
    return Chunk.objects.create(source=source, text=text, char_start=start, **{**defaults, **fields})


def artifact(model: type[A], notebook: Notebook, **fields: Any) -> A:
    """A report or a podcast (what backend.models.Artifact shares): pending, no job, the notebook
    owner's."""
    return model.objects.create(notebook=notebook, **{"owner": notebook.owner, **fields})


def report(notebook: Notebook, **fields: Any) -> Report:
    return artifact(Report, notebook, **fields)


def podcast(notebook: Notebook, **fields: Any) -> Podcast:
    return artifact(Podcast, notebook, **{"title": "Basalt", **fields})


def question(notebook: Notebook, **fields: Any) -> Question:
    """A question the notebook's owner asked, pending (not answered yet)."""
    defaults = {"owner": notebook.owner, "question": "How do basalt columns form?"}
    return Question.objects.create(notebook=notebook, **{**defaults, **fields})


def job(owner: Any = None, **fields: Any) -> Job:
    """A Job row only (nothing in Redis, nothing runs it): a queued tests.record, which tests/jobs.py
    declares; a test names the kind, status and subject it is about."""
    defaults = {
        "id": str(uuid.uuid4()),
        "kind": "tests.record",
        "queue": "default",
        "func": "tests.jobs.record",
        "timeout": 30,
    }
    return Job.objects.create(owner=owner, **{**defaults, **fields})


def batch(owner: Any, **fields: Any) -> Batch:
    from backend.runtime import batch_create

    return batch_create(owner=owner, **fields)
