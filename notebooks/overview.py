"""A notebook's overview, computed offline from its chunks: an extractive summary (the most
central, non-redundant passages), key topics (distinctive terms and phrases) and suggested
questions built from those topics."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9“\"'(])")
WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
STOPWORDS = frozenset(
    """a about above after again against all also although am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either else even every few
    for from further had has have having he her here hers him his how however i if in into is it its itself
    just least less like made make many may me might more most much must my near neither no nor not now of
    off often on once one only or other our ours out over own per perhaps rather same several she should
    since so some such than that the their theirs them then there these they this those though through thus
    to too toward under until up upon us used using very was we were what when where whether which while who
    whom whose why will with within without would yet you your yours first second third new well way ways
    called known include includes including including around across among along another still often""".split()
)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE.split(" ".join(text.split())) if len(s.strip()) > 20]


def _tokens(text: str) -> list[str]:
    return [w.lower().strip("'-") for w in WORD.findall(text)]


def key_topics(texts: Sequence[str], limit: int = 8) -> list[str]:
    """Terms and two-word phrases that are frequent here and spread over several chunks."""
    doc_freq: Counter[str] = Counter()
    term_freq: Counter[str] = Counter()
    for text in texts:
        words = [w for w in _tokens(text) if len(w) > 3 and w not in STOPWORDS]
        tokens = _tokens(text)
        bigrams = [
            f"{a} {b}"
            for a, b in itertools.pairwise(tokens)
            if a not in STOPWORDS and b not in STOPWORDS and len(a) > 2 and len(b) > 3
        ]
        terms = words + bigrams
        term_freq.update(terms)
        doc_freq.update(set(terms))
    n = max(len(texts), 1)
    scored = []
    for term, tf in term_freq.items():
        if tf < 2 and n > 1:
            continue
        weight = 1.6 if " " in term else 1.0
        scored.append((tf * math.log(1 + n / doc_freq[term]) * weight, term))
    chosen: list[str] = []
    for _score, term in sorted(scored, key=lambda x: (-x[0], x[1])):
        # Skip a word already covered by a chosen phrase, and a phrase repeating a chosen word pair.
        if any(term in c.split() or c in term.split() or term in c or c in term for c in chosen):
            continue
        chosen.append(term)
        if len(chosen) == limit:
            break
    return chosen


def _central(vectors: npt.NDArray[np.float32], count: int, diversity: float = 0.35) -> list[int]:
    """Maximal marginal relevance around the centroid: central, but not saying the same thing."""
    centroid = vectors.mean(axis=0)
    norm = float(np.linalg.norm(centroid)) or 1.0
    relevance = vectors @ (centroid / norm)
    chosen: list[int] = []
    candidates = list(range(len(vectors)))
    while candidates and len(chosen) < count:
        if chosen:
            redundancy = (vectors[candidates] @ vectors[chosen].T).max(axis=1)
        else:
            redundancy = np.zeros(len(candidates), dtype=np.float32)
        scores = (1 - diversity) * relevance[candidates] - diversity * redundancy
        best = candidates[int(np.argmax(scores))]
        chosen.append(best)
        candidates.remove(best)
    return sorted(chosen)


def compute_overview(items: Sequence[tuple[str, npt.NDArray[np.float32], str]]) -> dict[str, Any]:
    """``items``: (chunk text, its embedding, its source title), in reading order."""
    if not items:
        return {"summary": "", "key_topics": [], "suggested_questions": [], "sources": [], "chunks": 0}
    texts = [text for text, _vector, _title in items]
    vectors = np.vstack([vector for _text, vector, _title in items]).astype(np.float32)
    summary_sentences = []
    for index in _central(vectors, count=min(4, len(items))):
        sentences = split_sentences(texts[index])
        if sentences:
            summary_sentences.append(sentences[0])
    topics = key_topics(texts)
    sources = list(dict.fromkeys(title for _text, _vector, title in items))
    return {
        "summary": " ".join(summary_sentences),
        "key_topics": topics,
        "suggested_questions": suggested_questions(topics, sources),
        "sources": sources,
        "chunks": len(items),
    }


def suggested_questions(topics: Sequence[str], sources: Sequence[str], limit: int = 5) -> list[str]:
    questions = []
    if topics:
        questions.append(f"What do the sources say about {topics[0]}?")
    if len(topics) > 1:
        questions.append(f"How is {topics[0]} related to {topics[1]}?")
    if len(topics) > 2:
        questions.append(f"Why does {topics[2]} matter here?")
    if len(topics) > 3:
        questions.append(f"What are the main facts about {topics[3]}?")
    if len(sources) > 1 and topics:
        questions.append(f"Where do “{sources[0]}” and “{sources[1]}” agree or differ?")
    return questions[:limit]
