"""A notebook's overview, computed offline from its chunks: an extractive summary (the most
central, non-redundant passages), key topics (distinctive terms and phrases) and suggested
questions about those topics, worded as the sources word them and kept only when the caller's
``answers`` check (the offline answerer, in the overview job) finds them answered."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
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


def compute_overview(
    items: Sequence[tuple[str, npt.NDArray[np.float32], str]], answers: Callable[[str], bool] | None = None
) -> dict[str, Any]:
    """``items``: (chunk text, its embedding, its source title), in reading order; ``answers``:
    whether the notebook answers a question (without it, every suggestion is kept)."""
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
    suggested: list[str] = []
    for question in candidate_questions(topics, [(text, title) for text, _vector, title in items]):
        if len(suggested) == SUGGESTIONS:
            break
        if answers is None or answers(question):
            suggested.append(question)
    return {
        "summary": " ".join(summary_sentences),
        "key_topics": topics,
        "suggested_questions": suggested,
        "sources": sources,
        "chunks": len(items),
    }


SUGGESTIONS = 5
# Phrases that make a poor subject for a question: "previous decade", "significant increase".
_QUALIFIERS = frozenset(
    """previous recent several different high higher low lower large larger small smaller significant important
    major minor early earlier late later common main key total general specific present current certain various
    similar likely possible potential overall average mean median increased decreased reduced related associated
    based following given whole entire last next best better worse good bad""".split()
)
_SINGULAR_S = ("ss", "us", "is", "ics", "sis")
TITLE_CHARS = 60


def _askable(topic: str) -> bool:
    words = topic.split()
    return not (
        words[0] in _QUALIFIERS
        or any(w.endswith("ly") for w in words)
        or words[-1].endswith("ed")
        or words[-1] in _QUALIFIERS
    )


def _surface(topic: str, texts: Sequence[str]) -> str | None:
    """The topic as the sources write it: their commonest casing, with "the" when they mostly
    put one before it ("the Calvin cycle", "Mauna Loa", "sampling stations")."""
    words = r"[\s-]+".join(map(re.escape, topic.split()))
    pattern = re.compile(r"(?:\b(the|an?)\s+)?\b(" + words + r")\b", re.IGNORECASE)
    forms: Counter[str] = Counter()
    articles: Counter[str] = Counter()
    for text in texts:
        for match in pattern.finditer(text):
            form = " ".join(match.group(2).split())
            at_start = match.start(2) == 0 or text[: match.start(2)].rstrip()[-1:] in ".!?"
            # A capital at a sentence's start says nothing about the word's own case.
            forms[form if not at_start or form[1:].lower() != form[1:] else form.lower()] += 1
            articles[(match.group(1) or "").lower()] += 1
    if not forms:
        return None
    form = forms.most_common(1)[0][0]
    if articles["the"] * 2 > sum(forms.values()):
        return f"the {form}"
    if articles["a"] + articles["an"] and not _plural(form):  # a countable thing: "a codon"
        return f"{'an' if form[0].lower() in 'aeiou' else 'a'} {form}"
    return form


def _plural(phrase: str) -> bool:
    last = phrase.split()[-1]
    return last.endswith("s") and not last.lower().endswith(_SINGULAR_S) and not last[:1].isupper()


def candidate_questions(topics: Sequence[str], chunks: Sequence[tuple[str, str]]) -> list[str]:
    """Questions a person might ask of these sources, best first, more than will be shown: what
    a key topic is, what the sources say about it, how two topics that share a passage relate,
    and what two sources say about a topic both discuss. ``chunks``: (text, source title)."""
    texts = [text for text, _title in chunks]
    phrases = [(t, p) for t in topics if _askable(t) and (p := _surface(t, texts))]
    primary: list[str] = []
    secondary: list[str] = []
    for index, (_topic, phrase) in enumerate(phrases[:4]):
        what = f"What {'are' if _plural(phrase) else 'is'} {phrase}?"
        said = f"What do the sources say about {phrase}?"
        # Alternate the two shapes, so the first few shown are not all alike.
        primary.append(what if index % 2 == 0 else said)
        secondary.append(said if index % 2 == 0 else what)
    # Two topics in one passage are related there; two picked at random may not be.
    for (a, pa), (b, pb) in itertools.combinations(phrases[:5], 2):
        if any(a in words and b in words for words in (" ".join(_tokens(t)) for t in texts)):
            primary.append(f"How {'are' if _plural(pa) else 'is'} {pa} related to {pb}?")
            break
    # Two titles in one question read well only when they are short.
    titles = [t.rstrip(".") for t in dict.fromkeys(title for _text, title in chunks) if len(t) <= TITLE_CHARS]
    for topic, phrase in phrases[:4] if len(titles) > 1 else []:
        holding = [
            t for t in titles if any(topic in " ".join(_tokens(x)) for x, title in chunks if title.rstrip(".") == t)
        ]
        if len(holding) > 1:
            primary.append(f"What do “{holding[0]}” and “{holding[1]}” each say about {phrase}?")
            break
    return list(dict.fromkeys([*primary, *secondary]))
