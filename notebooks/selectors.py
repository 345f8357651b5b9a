"""Reads of notebooks. reports/ and podcast/ read notebooks only through this module."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db.models import QuerySet

from notebooks import embeddings, search
from notebooks.answer import Evidence, answer_offline, sentence_spans
from notebooks.models import Chunk, Notebook, Question, Source
from notebooks.search import Hit

# With a query, passages scoring below this share of the best one are left out.
RELEVANCE_FLOOR = 0.6
# A topic report's search fetches this many candidates per passage it may use.
TOPIC_CANDIDATES = 2


def notebooks_of(*, user: Any) -> QuerySet[Notebook]:
    return Notebook.objects.filter(owner=user)


def notebook_of(*, user: Any, notebook_id: Any) -> Notebook:
    """The user's notebook; raises Notebook.DoesNotExist for anyone else's (a 404, never a 403)."""
    return Notebook.objects.get(owner=user, id=notebook_id)


def sources_of(*, notebook: Notebook) -> QuerySet[Source]:
    return Source.objects.filter(notebook=notebook).order_by("created_at")


def notebook_search(
    *, notebook: Notebook, query: str, k: int = 10, mode: str = "hybrid", source_ids: list[str] | None = None
) -> list[Hit]:
    """The notebook's best chunks for ``query`` (``notebooks.search``; hybrid by default)."""
    return search.notebook_search(notebook=notebook, query=query, k=k, mode=mode, source_ids=source_ids).hits


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
    time: float | None = None  # a recording's passage: where it starts, in seconds


def passages(
    *, notebook: Notebook, query: str | None = None, source_ids: list[str] | None = None, limit: int = 40
) -> list[Passage]:
    """The passages a report or podcast is written from, in reading order.

    With a query: the chunks closest to it. Without: the most central chunks of the notebook,
    chosen by maximal marginal relevance so they cover it instead of repeating one point.
    """
    chunks = list(notebook_chunks(notebook=notebook, source_ids=source_ids))
    if not chunks:
        return []
    vectors = np.vstack([np.frombuffer(c.embedding, dtype=np.float32) for c in chunks])
    if query:
        target = embeddings.embedder().embed([query])[0]
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
            time=chunks[i].time_start,
            text=chunks[i].text,
            score=round(float(scores[i]), 4),
            embedding=vectors[i],
        )
        for i in chosen
    ]


def topic_passages(
    *, notebook: Notebook, topic: str, source_ids: list[str] | None = None, limit: int = 32
) -> list[Passage]:
    """The passages a report on ``topic`` is written from, best first.

    The notebook's hybrid search finds ``TOPIC_CANDIDATES`` times ``limit`` candidates; a
    candidate is kept when the question answerer would answer ``topic`` from it alone
    (``notebooks.answer``: its best sentence scores at least ``DECLINE_BELOW``, cosine plus
    keyword overlap), so a passage that only shares words or a field with the topic is left
    out. Each passage's score is that best sentence's.
    """
    hits = question_evidence(notebook=notebook, query=topic, source_ids=source_ids, k=limit * TOPIC_CANDIDATES)
    if not hits:
        return []
    embed = _remembered(embeddings.embedder().embed)
    # One batch for every sentence the answerer will score (it embeds each passage's apart).
    embed([topic, *(h.text[a:b] for h in hits for a, b in sentence_spans(h.text))])
    scored = []
    for hit in hits:
        evidence = Evidence(hit.chunk_id, hit.source_id, hit.source_title, hit.position, hit.page, hit.text, hit.time)
        answer = answer_offline(topic, [evidence], embed)
        if answer.answered:
            scored.append((hit, answer.best_score))
    scored = scored[:limit]
    blobs = dict(Chunk.objects.filter(id__in=[h.chunk_id for h, _ in scored]).values_list("id", "embedding"))
    return [
        Passage(
            chunk_id=hit.chunk_id,
            source_id=hit.source_id,
            source_title=hit.source_title,
            position=hit.position,
            page=hit.page,
            text=hit.text,
            score=score,
            embedding=np.frombuffer(blobs[hit.chunk_id], dtype=np.float32),
            time=hit.time,
        )
        for hit, score in scored
        if hit.chunk_id in blobs  # deleted since the search
    ]


def _remembered(
    embed: Callable[[Sequence[str]], npt.NDArray[np.float32]],
) -> Callable[[Sequence[str]], npt.NDArray[np.float32]]:
    """``embed`` that computes each distinct text once."""
    vectors: dict[str, npt.NDArray[np.float32]] = {}

    def remembered(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        missing = list(dict.fromkeys(t for t in texts if t not in vectors))
        if missing:
            vectors.update(zip(missing, embed(missing), strict=True))
        return np.vstack([vectors[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)

    return remembered


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
    """The passages a question is answered from: the notebook's hybrid search, restricted to
    ``source_ids`` when given."""
    try:
        return notebook_search(notebook=notebook, query=query, k=k, source_ids=source_ids)
    except search.QueryRejected:
        return []  # nothing to look for: the answerer declines


def questions_of(*, notebook: Notebook, owner: Any) -> QuerySet[Question]:
    """This user's questions in this notebook, newest first (history is per user)."""
    return Question.objects.filter(notebook=notebook, owner=owner).order_by("-created_at")
