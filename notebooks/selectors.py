"""Reads of notebooks. reports/ and podcast/ read notebooks only through this module."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db.models import QuerySet

from notebooks.models import Chunk, Notebook, Question, Source

CACHE_NOTEBOOKS = 32
# With a query, passages scoring below this share of the best one are left out.
RELEVANCE_FLOOR = 0.6


def notebooks_of(*, user: Any) -> QuerySet[Notebook]:
    return Notebook.objects.filter(owner=user)


def notebook_of(*, user: Any, notebook_id: Any) -> Notebook:
    """The user's notebook; raises Notebook.DoesNotExist for anyone else's (a 404, never a 403)."""
    return Notebook.objects.get(owner=user, id=notebook_id)


def sources_of(*, notebook: Notebook) -> QuerySet[Source]:
    return Source.objects.filter(notebook=notebook).order_by("created_at")


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    source_id: str
    source_title: str
    position: int
    page: int | None
    text: str
    score: float
    char_start: int
    char_end: int


class _Matrix:
    def __init__(self, version: int, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        self.version = version
        self.ids = ids
        self.vectors = vectors


# Per process: notebook id -> its chunk matrix, valid while notebook.chunks_version is unchanged.
_matrices: OrderedDict[Any, _Matrix] = OrderedDict()
_lock = threading.Lock()


def _matrix(notebook_id: Any, version: int, dim: int) -> _Matrix:
    with _lock:
        cached = _matrices.get(notebook_id)
        if cached is not None and cached.version == version:
            _matrices.move_to_end(notebook_id)
            return cached
    rows = list(
        Chunk.objects.filter(notebook_id=notebook_id, source__status=Source.Status.READY)
        .order_by("id")
        .values_list("id", "embedding")
    )
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.zeros((len(rows), dim), dtype=np.float32)
    for i, (_id, blob) in enumerate(rows):
        vectors[i] = np.frombuffer(blob, dtype=np.float32)
    built = _Matrix(version, ids, vectors)
    with _lock:
        _matrices[notebook_id] = built
        _matrices.move_to_end(notebook_id)
        while len(_matrices) > CACHE_NOTEBOOKS:
            _matrices.popitem(last=False)
    return built


def notebook_search(*, notebook: Notebook, query: str, k: int = 10) -> list[Hit]:
    """Exact cosine top-k over the notebook's ready chunks (vectors are unit length)."""
    from notebooks.services import embedder

    model = embedder()
    # The caller has just read the notebook (its owner check), so its version is current.
    matrix = _matrix(notebook.id, notebook.chunks_version, model.dim)
    if not len(matrix.ids):
        return []
    scores = matrix.vectors @ model.embed([query])[0]
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    # Plain rows, not models: no embedding blobs, no Source objects for ten hits.
    fields = ("id", "source_id", "source__title", "position", "page", "text", "char_start", "char_end")
    rows = Chunk.objects.filter(id__in=[int(matrix.ids[i]) for i in top]).values_list(*fields)
    chunks = {row[0]: row for row in rows}
    hits = []
    for i in top:
        row = chunks.get(int(matrix.ids[i]))
        if row is None:  # deleted since the matrix was built
            continue
        chunk_id, source_id, source_title, position, page, text, char_start, char_end = row
        hits.append(
            Hit(
                chunk_id=chunk_id,
                source_id=str(source_id),
                source_title=source_title,
                position=position,
                page=page,
                text=text,
                score=round(float(scores[i]), 4),
                char_start=char_start,
                char_end=char_end,
            )
        )
    return hits


def notebook_chunks(*, notebook: Notebook, source_ids: list[str] | None = None) -> QuerySet[Chunk]:
    """Ready chunks in reading order, for reports and podcasts."""
    qs = Chunk.objects.filter(notebook=notebook, source__status=Source.Status.READY).select_related("source")
    if source_ids:
        qs = qs.filter(source_id__in=source_ids)
    return qs.order_by("source__created_at", "position")


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    source_id: str
    source_title: str
    position: int
    page: int | None
    text: str
    score: float
    embedding: npt.NDArray[np.float32]


def passages(
    *, notebook: Notebook, query: str | None = None, source_ids: list[str] | None = None, limit: int = 40
) -> list[Passage]:
    """The passages a report or podcast is written from, in reading order.

    With a query: the chunks closest to it. Without: the most central chunks of the notebook,
    chosen by maximal marginal relevance so they cover it instead of repeating one point.
    """
    from notebooks.services import embedder

    chunks = list(notebook_chunks(notebook=notebook, source_ids=source_ids))
    if not chunks:
        return []
    vectors = np.vstack([np.frombuffer(c.embedding, dtype=np.float32) for c in chunks])
    if query:
        target = embedder().embed([query])[0]
        scores = vectors @ target
        ranked = np.argsort(-scores, kind="stable")[:limit]
        # Off-topic chunks are not material for a focused report, however few chunks there are.
        floor = float(scores[ranked[0]]) * RELEVANCE_FLOOR
        chosen = [int(i) for i in ranked if scores[i] >= floor]
    else:
        centroid = vectors.mean(axis=0)
        centroid /= float(np.linalg.norm(centroid)) or 1.0
        scores = vectors @ centroid
        chosen = _mmr(vectors, scores, limit)
    chosen.sort()  # notebook_chunks is in reading order
    return [
        Passage(
            chunk_id=chunks[i].id,
            source_id=str(chunks[i].source_id),
            source_title=chunks[i].source.title,
            position=chunks[i].position,
            page=chunks[i].page,
            text=chunks[i].text,
            score=round(float(scores[i]), 4),
            embedding=vectors[i],
        )
        for i in chosen
    ]


def _mmr(vectors: npt.NDArray[np.float32], relevance: npt.NDArray[np.float32], limit: int) -> list[int]:
    chosen: list[int] = []
    remaining = np.ones(len(vectors), dtype=bool)
    best_similarity = np.full(len(vectors), -1.0, dtype=np.float32)
    for _ in range(min(limit, len(vectors))):
        scores = np.where(remaining, 0.7 * relevance - 0.3 * np.maximum(best_similarity, 0), -np.inf)
        pick = int(np.argmax(scores))
        chosen.append(pick)
        remaining[pick] = False
        best_similarity = np.maximum(best_similarity, vectors @ vectors[pick])
    return chosen


def notebook_overview(*, notebook: Notebook) -> dict[str, Any]:
    return notebook.overview or {}


def ready_source_count(*, notebook: Notebook, source_ids: list[str] | None = None) -> int:
    qs = Source.objects.filter(notebook=notebook, status=Source.Status.READY)
    if source_ids:
        qs = qs.filter(id__in=source_ids)
    return qs.count()


def question_evidence(*, notebook: Notebook, query: str, source_ids: list[str] | None = None, k: int = 8) -> list[Hit]:
    """The passages a question is answered from: the notebook's search, restricted to
    ``source_ids`` when given (asked for more, then filtered)."""
    if not source_ids:
        return notebook_search(notebook=notebook, query=query, k=k)
    wanted = set(source_ids)
    hits = notebook_search(notebook=notebook, query=query, k=k * 10)
    return [hit for hit in hits if hit.source_id in wanted][:k]


def questions_of(*, notebook: Notebook, owner: Any) -> QuerySet[Question]:
    """This user's questions in this notebook, newest first (history is per user)."""
    return Question.objects.filter(notebook=notebook, owner=owner).order_by("-created_at")
