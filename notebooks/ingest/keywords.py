"""Keyword retrieval: tokens, and a BM25 index over a notebook's chunks (a pure library).

Quire ranks keywords itself instead of with the database's full-text index, so the ranking is
the same on SQLite and PostgreSQL (measured on SciFact: SQLite FTS5 bm25 0.687 nDCG@10,
PostgreSQL ts_rank 0.609 over the same chunks). The index is derived from the chunks' text and
cached per process beside the vector matrix, keyed on the notebook's chunks_version: the chunks
and their text are written in one transaction, so a ready source is findable both ways.

Tokens: Unicode words lower-cased (German, Arabic, any script), English Snowball stems, stop
words dropped. An identifier with inner hyphens, dots or slashes ("CRISPR-Cas9", "IL-6",
"3.5", "p53") is kept whole as well as in its parts, so typing it exactly finds it first.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

K1 = 1.2
B = 0.75

_TOKEN = re.compile(r"\w+(?:[-./]\w+)*", re.UNICODE)
_PHRASE = re.compile(r'"([^"]+)"')
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off
    on once only or other our ours ourselves out over own same she should so some such than that the their theirs
    them themselves then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves""".split()
)


@lru_cache(maxsize=1)
def _stemmer() -> object:
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    if not word.isascii() or word.isdigit():
        return word  # the English stemmer only for English-looking words
    return str(_stemmer().stemWord(word))  # type: ignore[attr-defined]


def tokens(text: str) -> list[str]:
    """The index terms of ``text``, in order (with repeats)."""
    out: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        token = match.group()
        parts = re.split(r"[-./]", token)
        if len(parts) > 1:
            out.append(token)  # the identifier as typed
        for part in parts:
            if part and part not in STOP_WORDS:
                out.append(_stem(part))
    return out


@dataclass(frozen=True)
class Query:
    terms: list[str]
    phrases: list[str]  # lower-cased, whitespace-normalised


def parse_query(text: str) -> Query:
    phrases = [" ".join(p.lower().split()) for p in _PHRASE.findall(text) if p.strip()]
    return Query(terms=list(dict.fromkeys(tokens(text))), phrases=phrases)


Counts = tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]  # a chunk's term ids and counts


class Vocabulary:
    """Term -> integer id, shared by the indexes of one process (ids only grow)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self._lock = threading.Lock()  # web request threads tokenize side by side

    def counts(self, text: str) -> Counts:
        """A text's distinct term ids and how often each occurs: what the index needs of a chunk."""
        found = Counter(tokens(text))
        with self._lock:
            ids = np.fromiter((self.ids.setdefault(t, len(self.ids)) for t in found), dtype=np.int32, count=len(found))
        return ids, np.fromiter(found.values(), dtype=np.float32, count=len(found))


MERGE_FACTOR = 4  # a segment is merged into the one before it while that one is < 4x its size


class _Segment:
    """Postings of a run of rows, sorted by term: term t's are ``searchsorted`` slices."""

    def __init__(self, terms: npt.NDArray[np.int32], rows: npt.NDArray[np.int64], freq: npt.NDArray[np.float32]):
        order = np.argsort(terms, kind="stable")
        self.terms, self.rows, self.freq = terms[order], rows[order], freq[order]

    @classmethod
    def of(cls, first_row: int, chunks: Sequence[Counts]) -> _Segment:
        sizes = np.fromiter((len(ids) for ids, _ in chunks), dtype=np.int64, count=len(chunks))
        rows = np.repeat(np.arange(first_row, first_row + len(chunks), dtype=np.int64), sizes)
        terms = np.concatenate([ids for ids, _ in chunks]) if chunks else np.zeros(0, np.int32)
        freq = np.concatenate([c for _, c in chunks]) if chunks else np.zeros(0, np.float32)
        return cls(terms, rows, freq)

    @classmethod
    def merged(cls, a: _Segment, b: _Segment) -> _Segment:
        terms, rows = np.concatenate([a.terms, b.terms]), np.concatenate([a.rows, b.rows])
        return cls(terms, rows, np.concatenate([a.freq, b.freq]))

    def __len__(self) -> int:
        return len(self.terms)

    def postings(self, term: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        # The bounds in the array's own dtype: otherwise numpy converts the whole array first.
        a, b = np.searchsorted(self.terms, np.array((term, term + 1), dtype=self.terms.dtype))
        return self.rows[a:b], self.freq[a:b]

    def kept(self, renumber: npt.NDArray[np.int64], keep: npt.NDArray[np.bool_]) -> _Segment:
        """Without the rows ``keep`` drops, the others renumbered (order, hence sorting, holds)."""
        mask = keep[self.rows]
        kept = object.__new__(_Segment)
        kept.terms, kept.rows, kept.freq = self.terms[mask], renumber[self.rows[mask]], self.freq[mask]
        return kept


class KeywordIndex:
    """BM25 (Robertson/Spärck Jones idf, k1 = 1.2, b = 0.75) over rows of term counts
    (``Vocabulary.counts`` of each chunk). Immutable: ``extended`` returns an index with more rows,
    sharing this one's postings, so a notebook that gains a source indexes only that source.

    Postings live in segments merged like a binary counter (O(log n) segments, each posting
    re-sorted O(log n) times over a notebook's life). The collection statistics (number of rows,
    average length, document frequencies) are taken at query time over the rows a caller marks
    alive, so an index with dropped rows scores exactly as one rebuilt without them."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        segments: tuple[_Segment, ...] = (),
        lengths: npt.NDArray[np.float32] | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.segments = segments
        self.lengths = lengths if lengths is not None else np.zeros(0, np.float32)
        self.size = len(self.lengths)

    @classmethod
    def of_texts(cls, texts: Sequence[str]) -> KeywordIndex:
        vocabulary = Vocabulary()
        return cls(vocabulary).extended([vocabulary.counts(t) for t in texts])

    def extended(self, chunks: Sequence[Counts]) -> KeywordIndex:
        """This index with ``chunks`` as the next rows."""
        if not chunks:
            return self
        segments = [*self.segments, _Segment.of(self.size, chunks)]
        while len(segments) > 1 and len(segments[-2]) < MERGE_FACTOR * len(segments[-1]):
            last = segments.pop()
            segments[-1] = _Segment.merged(segments[-1], last)
        lengths = np.fromiter((float(c.sum()) for _, c in chunks), dtype=np.float32, count=len(chunks))
        return KeywordIndex(self.vocabulary, tuple(segments), np.concatenate([self.lengths, lengths]))

    def compacted(self, keep: npt.NDArray[np.bool_]) -> KeywordIndex:
        """This index without the rows ``keep`` marks False; the others renumbered in order."""
        renumber = np.cumsum(keep, dtype=np.int64) - 1
        segments = tuple(s.kept(renumber, keep) for s in self.segments)
        return KeywordIndex(self.vocabulary, tuple(s for s in segments if len(s)), self.lengths[keep])

    def scores(self, terms: Sequence[str], alive: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.float32]:
        """Each row's BM25 score for ``terms``; rows ``alive`` marks False score 0 and do not
        count in the statistics."""
        total = np.zeros(self.size, dtype=np.float32)
        lengths = self.lengths if alive is None else self.lengths[alive]
        size = len(lengths)
        if not size:
            return total
        average = float(lengths.sum(dtype=np.float64)) / size or 1.0
        for term in terms:
            tid = self.vocabulary.ids.get(term)
            if tid is None:
                continue  # no chunk of any notebook in this process has the term
            found = [s.postings(tid) for s in self.segments]
            rows = np.concatenate([r for r, _ in found])
            freq = np.concatenate([f for _, f in found])
            if alive is not None:
                live = alive[rows]
                rows, freq = rows[live], freq[live]
            if not len(rows):
                continue
            df = len(rows)
            idf = np.float32(np.log1p((size - df + 0.5) / (df + 0.5)))
            norm = K1 * (1 - B + B * self.lengths[rows] / np.float32(average))
            total += np.bincount(rows, idf * freq * (K1 + 1) / (freq + norm), minlength=self.size).astype(np.float32)
        return total


def snippet(text: str, query: Query, width: int = 240) -> tuple[str, list[tuple[int, int]]]:
    """A window of ``text`` around the first matched word, and the matched spans in it."""
    wanted = set(query.terms)
    spans = []
    for match in _TOKEN.finditer(text):
        word = match.group().lower()
        if word in wanted or any(_stem(p) in wanted for p in re.split(r"[-./]", word) if p):
            spans.append((match.start(), match.end()))
    lowered = text.lower()
    for phrase in query.phrases:
        at = lowered.find(phrase)
        if at >= 0:
            spans.append((at, at + len(phrase)))
    spans.sort()
    start = max(0, spans[0][0] - width // 3) if spans else 0
    if start:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < spans[0][0] else start
    end = min(len(text), start + width)
    return text[start:end], [(a - start, b - start) for a, b in spans if a >= start and b <= end]
