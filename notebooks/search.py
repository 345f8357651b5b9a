"""Search a notebook: keyword (BM25), semantic (exact cosine) or both fused (the default).

Per process, each notebook's ready chunks are cached as a vector matrix and a keyword index,
brought up to date by difference when ``Notebook.chunks_version`` changes (bumped in the
transaction that replaces a source's chunks): see ``_NotebookCache``. Hybrid search fuses the
two rankings by weighted reciprocal rank (``FUSION_*``, tuned on SciFact's training claims with
``make eval``): a chunk's score is ``w / (K + rank)`` summed over the sides that found it. When
the embedder cannot run, hybrid answers from keywords alone and says so (``degraded``).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db.models import Count, Sum

from backend.errors import DomainError
from notebooks import embeddings
from notebooks.ingest.keywords import KeywordIndex, Query, Vocabulary, parse_query, snippet
from notebooks.ingest.media import clock
from notebooks.ingest.minilm import DIM
from notebooks.models import Chunk, Notebook

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
FETCH_IDS = 500  # chunk ids per ``id IN (...)`` query
COMPACT_DEAD = 0.25  # rows of deleted chunks are dropped once they are a quarter of a cache


@dataclass(frozen=True)
class _Snapshot:
    """One notebook's searchable chunks as this process last read them. Never changed in place:
    a search works on the snapshot it started with while another thread publishes the next."""

    version: int  # the notebook's chunks_version when it was read
    ids: npt.NDArray[np.int64]  # row -> chunk id
    alive: npt.NDArray[np.bool_] | None  # rows whose chunk still exists; None: all of them
    vectors: npt.NDArray[np.float32]  # row -> embedding (a view of a buffer that grows in place)
    keywords: KeywordIndex | None  # the first ``keywords.size`` rows; built by the first keyword search


class _NotebookCache:
    """A notebook's snapshot, brought up to date by difference when chunks_version changes: the
    chunks that appeared are read and appended (vectors and keyword postings), the ones that went
    are masked, and the rows are compacted once a quarter are masked. So the first search after a
    source is added or deleted reads that source, not the notebook; only a process's first search
    of a notebook reads (and, for keywords, tokenizes) every chunk.

    Chunks exist exactly for ready sources (they are written in the transaction that makes the
    source ready, a ready source stays ready, and deleting a source deletes them), so the chunk
    ids alone say what changed."""

    def __init__(self) -> None:
        self.snapshot: _Snapshot | None = None
        self._buffer = np.zeros((0, DIM), dtype=np.float32)
        self._lock = threading.Lock()

    def current(self, notebook: Notebook, dim: int, keywords: bool) -> _Snapshot:
        snapshot = self.snapshot
        if snapshot is not None and snapshot.version == notebook.chunks_version:
            if not keywords or (snapshot.keywords is not None and snapshot.keywords.size == len(snapshot.ids)):
                return snapshot
        with self._lock:  # one thread reads what changed; the others wait for its snapshot
            snapshot = self.snapshot
            if snapshot is None or self._buffer.shape[1] != dim:  # first read, or another model
                snapshot = self._load(notebook.id, notebook.chunks_version, dim)
            elif snapshot.version != notebook.chunks_version:
                snapshot = self._update(snapshot, notebook.id, notebook.chunks_version)
            if keywords and (snapshot.keywords is None or snapshot.keywords.size < len(snapshot.ids)):
                snapshot = replace(snapshot, keywords=_index_rows(snapshot, notebook.id))
            self.snapshot = snapshot
            return snapshot

    def _load(self, notebook_id: Any, version: int, dim: int) -> _Snapshot:
        rows = list(Chunk.objects.filter(notebook_id=notebook_id).order_by("id").values_list("id", "embedding"))
        self._buffer = np.zeros((len(rows), dim), dtype=np.float32)
        for i, (_id, blob) in enumerate(rows):
            self._buffer[i] = np.frombuffer(blob, dtype=np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return _Snapshot(version, ids, None, self._buffer[: len(rows)], None)

    def _update(self, old: _Snapshot, notebook_id: Any, version: int) -> _Snapshot:
        chunks = Chunk.objects.filter(notebook_id=notebook_id).order_by()
        alive = old.alive if old.alive is not None else np.ones(len(old.ids), dtype=bool)
        kept = old.ids[alive]
        # Usually chunks only came, with ids above every cached one: read those, then check that
        # the notebook's chunk count and id sum agree (two aggregates over its index).
        last = int(old.ids.max()) if len(old.ids) else 0
        # With the text too when the keyword index is in use and whole: it is extended in step.
        index = old.keywords if old.keywords is not None and old.keywords.size == len(old.ids) else None
        fields = ("id", "embedding", "source__title", "text") if index is not None else ("id", "embedding")
        rows = list(chunks.filter(id__gt=last).order_by("id").values_list(*fields))
        totals = chunks.aggregate(count=Count("id"), sum=Sum("id"))
        if (totals["count"], totals["sum"] or 0) != (len(kept) + len(rows), int(kept.sum()) + sum(r[0] for r in rows)):
            # Some went (a source deleted) or came below the last id (a transaction that
            # committed late, on PostgreSQL): compare every id.
            now = np.fromiter(chunks.values_list("id", flat=True), np.int64)
            alive = alive & np.isin(old.ids, now)
            new = np.setdiff1d(now, old.ids[alive]).tolist()
            rows = [
                row
                for i in range(0, len(new), FETCH_IDS)
                for row in chunks.filter(id__in=new[i : i + FETCH_IDS]).order_by("id").values_list(*fields)
            ]
        n = len(old.ids)
        if n + len(rows) > len(self._buffer):  # grow by half: appends stay amortised O(1) per row
            grown = np.zeros((max(n + len(rows), len(self._buffer) * 3 // 2, 1024), self._buffer.shape[1]), np.float32)
            grown[:n] = self._buffer[:n]
            self._buffer = grown
        for i, row in enumerate(rows):
            self._buffer[n + i] = np.frombuffer(row[1], dtype=np.float32)
        ids = np.concatenate([old.ids, np.fromiter((r[0] for r in rows), np.int64, count=len(rows))])
        alive = np.concatenate([alive, np.ones(len(rows), dtype=bool)])
        keywords = old.keywords
        if index is not None:
            keywords = index.extended([_vocabulary.counts(_indexed_text(title, text)) for _, _, title, text in rows])
        snapshot = _Snapshot(version, ids, None if alive.all() else alive, self._buffer[: len(ids)], keywords)
        if (~alive).sum() > COMPACT_DEAD * len(alive):
            snapshot = self._compact(snapshot, alive)
        return snapshot

    def _compact(self, snapshot: _Snapshot, keep: npt.NDArray[np.bool_]) -> _Snapshot:
        self._buffer = snapshot.vectors[keep]  # a copy: older snapshots keep the old buffer
        keywords = snapshot.keywords
        if keywords is not None:
            keywords = keywords.compacted(keep[: keywords.size])
        return _Snapshot(snapshot.version, snapshot.ids[keep], None, self._buffer, keywords)


def _indexed_text(title: str, text: str) -> str:
    return f"{title}\n{text}"  # the title with each chunk: a passage deep in a paper is still about it


def _index_rows(snapshot: _Snapshot, notebook_id: Any) -> KeywordIndex:
    """The snapshot's keyword index extended to its every row: only rows new since the index
    was last extended are read and tokenized."""
    index = snapshot.keywords or KeywordIndex(_vocabulary)
    wanted = snapshot.ids[index.size :]
    texts: dict[int, str] = {}
    rows = Chunk.objects.filter(notebook_id=notebook_id).values_list("id", "source__title", "text")
    parts: list[Iterable[tuple[int, str, str]]]
    if len(wanted) <= 4 * FETCH_IDS:
        parts = [rows.filter(id__in=wanted[i : i + FETCH_IDS].tolist()) for i in range(0, len(wanted), FETCH_IDS)]
    else:
        parts = [rows.order_by().iterator(chunk_size=2000)]  # most of the notebook: one pass
    needed = set(wanted.tolist())
    for part in parts:
        for chunk_id, title, text in part:
            if chunk_id in needed:
                texts[chunk_id] = _indexed_text(title, text)
    empty = (np.zeros(0, np.int32), np.zeros(0, np.float32))  # a chunk deleted meanwhile: masked anyway
    return index.extended([_vocabulary.counts(texts[c]) if c in texts else empty for c in wanted.tolist()])


_cache: OrderedDict[Any, _NotebookCache] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(notebook: Notebook, dim: int, keywords: bool) -> _Snapshot:
    with _cache_lock:
        entry = _cache.get(notebook.id)
        if entry is None:
            entry = _cache[notebook.id] = _NotebookCache()
            while len(_cache) > CACHE_NOTEBOOKS:
                _cache.popitem(last=False)
        _cache.move_to_end(notebook.id)
    return entry.current(notebook, dim, keywords)


def _ranking(
    scores: npt.NDArray[np.float32], ids: npt.NDArray[np.int64], allowed: npt.NDArray[np.bool_] | None, n: int
) -> list[int]:
    """Row indices of the best ``n`` positive-or-any scores, best first."""
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    n = min(n, int(np.isfinite(scores).sum()))
    if n <= 0:
        return []
    top = np.argpartition(-scores, n - 1)[:n]
    # Ties go to the older chunk, whatever order argpartition (or the cache's rows) left them in.
    return [int(i) for i in top[np.lexsort((ids[top], -scores[top]))]]


def notebook_search(
    *,
    notebook: Notebook,
    query: str,
    k: int = 10,
    mode: str = "hybrid",
    source_ids: list[str] | None = None,
) -> Results:
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
            model = embeddings.embedder()
        except Exception:
            if mode == "semantic":
                raise
            logger.warning("Embedder unavailable; searching by keywords only", exc_info=True)
            degraded = "keyword only"
    cached = _cached(notebook, model.dim if model is not None else DIM, keywords=mode != "semantic")
    if not len(cached.ids):
        return Results([], mode, degraded)
    allowed = cached.alive
    if source_ids:
        wanted = np.fromiter(
            Chunk.objects.filter(notebook_id=notebook.id, source_id__in=source_ids).values_list("id", flat=True),
            np.int64,
        )
        in_sources = np.isin(cached.ids, wanted)
        allowed = in_sources if allowed is None else in_sources & allowed

    semantic: list[int] = []
    semantic_scores = None
    if model is not None:
        try:
            semantic_scores = cached.vectors @ model.embed([query])[0]
            semantic = _ranking(semantic_scores, cached.ids, allowed, k if mode == "semantic" else CANDIDATES)
        except Exception:
            if mode == "semantic":
                raise
            logger.warning("Embedder failed; searching by keywords only", exc_info=True)
            degraded = "keyword only"
    keyword: list[int] = []
    keyword_scores = None
    if mode != "semantic":
        assert cached.keywords is not None  # _cached built it for a keyword search
        keyword_scores = cached.keywords.scores(parsed.terms, cached.alive)
        if parsed.phrases:
            keyword_scores = _phrase_boost(keyword_scores, cached, parsed)
        keyword_scores = np.where(keyword_scores > 0, keyword_scores, -np.inf).astype(np.float32)
        keyword = _ranking(keyword_scores, cached.ids, allowed, k if mode == "keyword" else CANDIDATES)

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


def _phrase_boost(scores: npt.NDArray[np.float32], cached: _Snapshot, query: Query) -> npt.NDArray[np.float32]:
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
    cached: _Snapshot, order: list[tuple[int, float]], rank_s: dict[int, int], rank_k: dict[int, int], query: Query
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
