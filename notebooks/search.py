"""Search a notebook: keyword (BM25), semantic (exact cosine) or both fused (the default).

Per process, each notebook's ready chunks are cached as a vector matrix and a keyword index,
rebuilt when ``Notebook.chunks_version`` changes (bumped in the transaction that replaces a
source's chunks). Hybrid search fuses the two rankings by weighted reciprocal rank
(``FUSION_*``, tuned on SciFact's training claims with ``make eval``): a chunk's score is
``w / (K + rank)`` summed over the sides that found it. When the embedder cannot run, hybrid
answers from keywords alone and says so (``degraded``).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from backend.errors import DomainError
from notebooks.ingest.keywords import KeywordIndex, Query, Vocabulary, parse_query, snippet
from notebooks.ingest.media import clock
from notebooks.ingest.minilm import DIM
from notebooks.models import Chunk, Notebook, Source

logger = logging.getLogger(__name__)

MODES = ("hybrid", "semantic", "keyword")
CACHE_NOTEBOOKS = 32
CANDIDATES = 200  # from each side, before fusion
# Tuned on SciFact train (make eval): the keyword side weighs more on scientific text.
FUSION_K = 60
FUSION_KEYWORD = 1.0
FUSION_SEMANTIC = 0.8
PHRASE_BOOST = 1.0  # keyword score added per quoted phrase a chunk contains, relative to its best


class QueryRejected(DomainError):
    code = "EMPTY_QUERY"


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
    time: float | None = None  # a recording's passage: where it starts, in seconds
    time_label: str | None = None  # the same as 12:34
    rank_semantic: int | None = None  # 1 = first on that side; None: not among its candidates
    rank_keyword: int | None = None
    snippet: str = ""
    highlights: list[tuple[int, int]] = field(default_factory=list)  # spans of the snippet


@dataclass(frozen=True)
class Results:
    hits: list[Hit]
    mode: str
    degraded: str | None = None  # "keyword only" / "semantic only" when a side could not run


_vocabulary = Vocabulary()  # one per process: term ids shared by every notebook's index


class _Cached:
    def __init__(
        self, version: int, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32], previous: _Cached | None
    ) -> None:
        self.version = version
        self.ids = ids
        self.vectors = vectors
        # Each chunk's term counts, kept from the previous version of this notebook's cache:
        # chunks are never edited (a re-ingested source gets new chunks), so they stay valid.
        self.counts: dict[int, Any] = previous.counts if previous is not None else {}
        self._keywords: KeywordIndex | None = None
        self._lock = threading.Lock()

    def keywords(self, notebook_id: Any) -> KeywordIndex:
        """Built on the first keyword or hybrid search, from the same chunks as the vectors;
        only chunks new since the last build are read and tokenized."""
        with self._lock:
            if self._keywords is None:
                wanted = set(self.ids.tolist())
                self.counts = {cid: c for cid, c in self.counts.items() if cid in wanted}
                missing = wanted - self.counts.keys()
                if missing:
                    rows = Chunk.objects.filter(notebook_id=notebook_id)
                    if len(missing) < 1000:
                        rows = rows.filter(id__in=missing)
                    for cid, title, text in rows.values_list("id", "source__title", "text").iterator(chunk_size=2000):
                        if cid in missing:
                            # The source's title on every chunk: a passage deep in a paper is still about it.
                            self.counts[cid] = _vocabulary.counts(f"{title}\n{text}")
                empty = (np.zeros(0, np.int32), np.zeros(0, np.float32))
                self._keywords = KeywordIndex(_vocabulary, [self.counts.get(int(i), empty) for i in self.ids])
            return self._keywords


_cache: OrderedDict[Any, _Cached] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(notebook: Notebook, dim: int) -> _Cached:
    with _cache_lock:
        found = _cache.get(notebook.id)
        if found is not None and found.version == notebook.chunks_version:
            _cache.move_to_end(notebook.id)
            return found
    rows = list(
        Chunk.objects.filter(notebook_id=notebook.id, source__status=Source.Status.READY)
        .order_by("id")
        .values_list("id", "embedding")
    )
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.zeros((len(rows), dim), dtype=np.float32)
    for i, (_id, blob) in enumerate(rows):
        vectors[i] = np.frombuffer(blob, dtype=np.float32)
    built = _Cached(notebook.chunks_version, ids, vectors, found)
    with _cache_lock:
        _cache[notebook.id] = built
        _cache.move_to_end(notebook.id)
        while len(_cache) > CACHE_NOTEBOOKS:
            _cache.popitem(last=False)
    return built


def _ranking(scores: npt.NDArray[np.float32], allowed: npt.NDArray[np.bool_] | None, n: int) -> list[int]:
    """Row indices of the best ``n`` positive-or-any scores, best first."""
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    n = min(n, int(np.isfinite(scores).sum()))
    if n <= 0:
        return []
    top = np.argpartition(-scores, n - 1)[:n]
    return [int(i) for i in top[np.argsort(-scores[top], kind="stable")]]


def notebook_search(
    *,
    notebook: Notebook,
    query: str,
    k: int = 10,
    mode: str = "hybrid",
    source_ids: list[str] | None = None,
) -> Results:
    from notebooks.services import embedder

    if mode not in MODES:
        raise DomainError(f"mode must be one of {', '.join(MODES)}.", code="BAD_MODE")
    parsed = parse_query(query)
    if not parsed.terms and not parsed.phrases:
        raise QueryRejected(
            "The query has no words to search for (only stop words or punctuation). Add a content word.",
            details={"query": query},
        )
    degraded = None
    model = None
    if mode != "keyword":  # keyword search never needs the model
        try:
            model = embedder()
        except Exception:
            if mode == "semantic":
                raise
            logger.warning("Embedder unavailable; searching by keywords only", exc_info=True)
            degraded = "keyword only"
    cached = _cached(notebook, model.dim if model is not None else DIM)
    if not len(cached.ids):
        return Results([], mode, degraded)
    allowed = None
    if source_ids:
        wanted = set(
            Chunk.objects.filter(notebook_id=notebook.id, source_id__in=source_ids).values_list("id", flat=True)
        )
        allowed = np.fromiter((int(i) in wanted for i in cached.ids), dtype=bool, count=len(cached.ids))

    semantic: list[int] = []
    semantic_scores = None
    if model is not None:
        try:
            semantic_scores = cached.vectors @ model.embed([query])[0]
            semantic = _ranking(semantic_scores, allowed, k if mode == "semantic" else CANDIDATES)
        except Exception:
            if mode == "semantic":
                raise
            logger.warning("Embedder failed; searching by keywords only", exc_info=True)
            degraded = "keyword only"
    keyword: list[int] = []
    keyword_scores = None
    if mode != "semantic":
        index = cached.keywords(notebook.id)
        keyword_scores = index.scores(parsed.terms)
        if parsed.phrases:
            keyword_scores = _phrase_boost(keyword_scores, cached, parsed)
        keyword_scores = np.where(keyword_scores > 0, keyword_scores, -np.inf).astype(np.float32)
        keyword = _ranking(keyword_scores, allowed, k if mode == "keyword" else CANDIDATES)

    rank_s = {row: n for n, row in enumerate(semantic, 1)}
    rank_k = {row: n for n, row in enumerate(keyword, 1)}
    if mode == "semantic" or (mode == "hybrid" and degraded is None and not keyword and semantic):
        order = [(row, float(semantic_scores[row])) for row in semantic[:k]]  # type: ignore[index]
        if mode == "hybrid":
            degraded = "semantic only"  # no chunk shares a word with the query
    elif mode == "keyword" or degraded == "keyword only":
        order = [(row, float(keyword_scores[row])) for row in keyword[:k]]  # type: ignore[index]
    else:
        fused: dict[int, float] = {}
        for row, n in rank_k.items():
            fused[row] = fused.get(row, 0.0) + FUSION_KEYWORD / (FUSION_K + n)
        for row, n in rank_s.items():
            fused[row] = fused.get(row, 0.0) + FUSION_SEMANTIC / (FUSION_K + n)
        order = sorted(fused.items(), key=lambda item: -item[1])[:k]
    return Results(_hits(cached, order, rank_s, rank_k, parsed), mode, degraded)


def _phrase_boost(scores: npt.NDArray[np.float32], cached: _Cached, query: Query) -> npt.NDArray[np.float32]:
    """A chunk with a quoted phrase, word for word, ranks above one with the words apart."""
    candidates = np.flatnonzero(scores > 0)
    if not len(candidates):
        return scores
    ids = [int(cached.ids[i]) for i in candidates]
    texts = dict(Chunk.objects.filter(id__in=ids).values_list("id", "text"))
    top = float(scores.max())
    boosted = scores.copy()
    for row, cid in zip(candidates, ids, strict=True):
        text = " ".join(texts.get(cid, "").lower().split())
        boosted[row] += PHRASE_BOOST * top * sum(phrase in text for phrase in query.phrases)
    return boosted


def _hits(
    cached: _Cached, order: list[tuple[int, float]], rank_s: dict[int, int], rank_k: dict[int, int], query: Query
) -> list[Hit]:
    # Plain rows, not models: no embedding blobs, no Source objects for ten hits.
    fields = ("id", "source_id", "source__title", "position", "page", "text", "char_start", "char_end", "time_start")
    rows = Chunk.objects.filter(id__in=[int(cached.ids[row]) for row, _ in order]).values_list(*fields)
    chunks = {row[0]: row for row in rows}
    hits = []
    for row, score in order:
        found = chunks.get(int(cached.ids[row]))
        if found is None:  # deleted since the cache was built
            continue
        chunk_id, source_id, source_title, position, page, text, char_start, char_end, time_start = found
        window, spans = snippet(text, query)
        hits.append(
            Hit(
                chunk_id=chunk_id,
                source_id=str(source_id),
                source_title=source_title,
                position=position,
                page=page,
                text=text,
                score=round(score, 4),
                char_start=char_start,
                char_end=char_end,
                time=time_start,
                time_label=None if time_start is None else clock(time_start),
                rank_semantic=rank_s.get(row),
                rank_keyword=rank_k.get(row),
                snippet=window,
                highlights=spans,
            )
        )
    return hits
