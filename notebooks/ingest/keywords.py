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


class Vocabulary:
    """Term -> integer id, shared by the indexes of one process (ids only grow)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self._lock = threading.Lock()  # web request threads tokenize side by side

    def counts(self, text: str) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """A text's distinct term ids and how often each occurs: what the index needs of a chunk."""
        found = Counter(tokens(text))
        with self._lock:
            ids = np.fromiter((self.ids.setdefault(t, len(self.ids)) for t in found), dtype=np.int32, count=len(found))
        return ids, np.fromiter(found.values(), dtype=np.float32, count=len(found))


class KeywordIndex:
    """BM25 (Robertson/Spärck Jones idf, k1 = 1.2, b = 0.75) over one notebook's chunks.

    Built from each chunk's term counts (``Vocabulary.counts``), which callers keep per chunk:
    a rebuild after one source changed tokenizes only that source, and the rest is a few numpy
    operations (a sort of every posting), not a pass over the text."""

    def __init__(
        self, vocabulary: Vocabulary, chunks: Sequence[tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]]
    ) -> None:
        self.vocabulary = vocabulary
        self.size = len(chunks)
        sizes = np.fromiter((len(ids) for ids, _ in chunks), dtype=np.int64, count=len(chunks))
        lengths = np.fromiter((float(c.sum()) for _, c in chunks), dtype=np.float32, count=len(chunks))
        terms = np.concatenate([ids for ids, _ in chunks]) if chunks else np.zeros(0, np.int32)
        freq = np.concatenate([c for _, c in chunks]) if chunks else np.zeros(0, np.float32)
        rows = np.repeat(np.arange(len(chunks), dtype=np.int64), sizes)
        order = np.argsort(terms, kind="stable")
        self.terms, self.rows, freq = terms[order], rows[order], freq[order]
        # Postings of term t: positions starts[t]:starts[t + 1] of the sorted arrays.
        self.starts = np.searchsorted(self.terms, np.arange(len(vocabulary.ids) + 1)).astype(np.int64)
        df = np.diff(self.starts).astype(np.float64)
        idf = np.log1p((self.size - df + 0.5) / (df + 0.5)).astype(np.float32)
        average = float(lengths.mean()) if len(chunks) else 0.0
        norm = K1 * (1 - B + B * lengths / (average or 1.0))
        # The whole BM25 weight per posting, so a query only adds slices.
        self.weights = idf[self.terms] * freq * (K1 + 1) / (freq + norm[self.rows])

    @classmethod
    def of_texts(cls, texts: Sequence[str]) -> KeywordIndex:
        vocabulary = Vocabulary()
        return cls(vocabulary, [vocabulary.counts(t) for t in texts])

    def scores(self, terms: Sequence[str]) -> npt.NDArray[np.float32]:
        total = np.zeros(self.size, dtype=np.float32)
        for term in terms:
            tid = self.vocabulary.ids.get(term)
            if tid is None or tid + 1 >= len(self.starts):
                continue  # a term no chunk of this notebook has
            a, b = self.starts[tid], self.starts[tid + 1]
            np.add.at(total, self.rows[a:b], self.weights[a:b])
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
