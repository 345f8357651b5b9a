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

import math
import re
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


class KeywordIndex:
    """BM25 (Robertson/Spärck Jones idf, k1 = 1.2, b = 0.75) over one notebook's chunks."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.size = len(texts)
        postings: dict[str, tuple[list[int], list[int]]] = {}
        lengths = np.zeros(len(texts), dtype=np.float32)
        for row, text in enumerate(texts):
            counts = Counter(tokens(text))
            lengths[row] = sum(counts.values())
            for term, tf in counts.items():
                docs, tfs = postings.setdefault(term, ([], []))
                docs.append(row)
                tfs.append(tf)
        self.avg_length = float(lengths.mean()) if len(texts) else 0.0
        norm = K1 * (1 - B + B * lengths / (self.avg_length or 1.0))
        self.postings: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = {}
        for term, (docs, tfs) in postings.items():
            d = np.asarray(docs, dtype=np.int64)
            freq = np.asarray(tfs, dtype=np.float32)
            idf = math.log(1 + (self.size - len(d) + 0.5) / (len(d) + 0.5))
            # The whole BM25 weight per posting, so a query only adds arrays.
            self.postings[term] = (d, (idf * freq * (K1 + 1) / (freq + norm[d])).astype(np.float32))

    def scores(self, terms: Sequence[str]) -> npt.NDArray[np.float32]:
        total = np.zeros(self.size, dtype=np.float32)
        for term in terms:
            found = self.postings.get(term)
            if found is not None:
                np.add.at(total, found[0], found[1])
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
