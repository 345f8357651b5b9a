"""Answers from passages, offline: the retrieved passages' best sentences, quoted verbatim.

A pure library (no Django): the caller retrieves the passages and passes the embedder's
``embed``. Each sentence of the answer is a quote of one passage, cut at exact character
offsets, so a citation's quote is always a substring of its chunk; the answer declines
(``answered=False``) when no sentence scores above a threshold calibrated on SciFact's training
claims (``make eval``, the ask section).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from notebooks.ingest.media import clock

DECLINE = "The sources in this notebook do not answer this question."

# Tuned on SciFact train (make eval; a sweep over these four): a sentence scores its cosine to
# the question plus KEYWORD_WEIGHT times the share of the question's words it contains;
# sentences within KEEP_WITHIN of the best join the answer, up to MAX_SENTENCES. Below
# DECLINE_BELOW the best sentence does not answer: 96% of the evaluation's off-topic questions
# score under it, and 98% of the claims with evidence above it.
KEYWORD_WEIGHT = 0.25
DECLINE_BELOW = 0.58
KEEP_WITHIN = 0.2
MAX_SENTENCES = 4
REDUNDANT_ABOVE = 0.9
MIN_SENTENCE_CHARS = 25
# Embedding the candidate sentences is nearly all of an answer's time (about 8 ms a sentence on
# this machine's 2 cores), and 8 passages hold about 38 distinct ones (mean on SciFact train;
# 46 at the 90th percentile). Only the MAX_EMBEDDED sharing most of the question's words are
# embedded and scored (ties in retrieval order). Measured on SciFact train (make eval, same
# notebook, same retrieval): all 38 cite an evidence abstract 0.873 / quote a rationale 0.653;
# the best 16 by shared words 0.883 / 0.657, 12: 0.881 / 0.653, 8: 0.875 / 0.651; the first 16
# in retrieval order 0.865 / 0.642. Off-topic answered 0.040 in every case.
MAX_EMBEDDED = 16

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\n(?=[A-Z0-9#*-])")
_WORD = re.compile(r"\w+(?:[-']\w+)*", re.UNICODE)
STOP_WORDS = frozenset(
    """a an and are as at be been being but by can could did do does for from had has have how i if in into
    is it its may might more most no not of on or other our should so such than that the their them then there
    these they this those to was we were what when where which while who whom why will with would you your
    about after also any between both during each few further here just many much only over same some very""".split()
)


@dataclass(frozen=True)
class Evidence:
    """A retrieved passage (a chunk) in retrieval order."""

    chunk_id: int
    source_id: str
    source_title: str
    position: int
    page: int | None
    text: str
    time: float | None = None  # a recording's passage: where it starts, in seconds


@dataclass(frozen=True)
class Citation:
    number: int
    source_id: str
    source_title: str
    chunk_id: int
    position: int
    page: int | None
    quote: str
    start: int  # the quote's offsets in the chunk's text
    end: int
    time: float | None = None  # a recording's passage: where it starts, in seconds
    time_label: str | None = None  # the same as 12:34

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    text: str
    citations: list[Citation]
    answered: bool
    best_score: float


def terms(text: str) -> set[str]:
    """Content words, lower-cased, with a crude plural strip: enough to count overlap."""
    found = set()
    for word in _WORD.findall(text.lower()):
        if word in STOP_WORDS or len(word) < 2:
            continue
        found.add(word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word)
    return found


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, trimmed of surrounding whitespace."""
    spans = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    out = []
    for a, b in spans:
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        trail = len(piece.rstrip())
        if trail > lead:
            out.append((a + lead, a + trail))
    return out


@dataclass(frozen=True)
class Candidate:
    passage: int
    start: int
    end: int
    text: str


def quotable_sentences(passages: Sequence[Evidence]) -> list[Candidate]:
    found = []
    for index, passage in enumerate(passages):
        title = " ".join(passage.source_title.lower().split()).rstrip(".")
        spans = sentence_spans(passage.text)
        for n, (start, end) in enumerate(spans):
            sentence = passage.text[start:end]
            # Chunks overlap and are cut by length: a first piece that starts in lower case and a
            # last one without a final stop are halves of sentences, not quotable findings.
            if n == 0 and passage.position > 0 and not sentence[:1].isupper() and not sentence[:1].isdigit():
                continue
            if n == len(spans) - 1 and len(spans) > 1 and sentence[-1:] not in ".!?)\"'”":
                continue
            if len(sentence) < MIN_SENTENCE_CHARS or len(sentence.split()) < 4:
                continue
            # A paper's title is not a finding; neither is a heading line.
            if " ".join(sentence.lower().split()).rstrip(".") == title:
                continue
            found.append(Candidate(index, start, end, sentence))
    return found


def shortlist(candidates: Sequence[Candidate], wanted: set[str], limit: int) -> list[Candidate]:
    """Each distinct sentence once (neighbouring chunks overlap, so sentences repeat; the first
    place it appears is the one cited), at most ``limit`` of them: those holding most of the
    ``wanted`` words, ties in retrieval order, returned in retrieval order."""
    first: dict[str, Candidate] = {}
    for candidate in candidates:
        first.setdefault(candidate.text, candidate)
    distinct = list(first.values())
    if len(distinct) <= limit:
        return distinct
    ranked = sorted(range(len(distinct)), key=lambda i: -len(wanted & terms(distinct[i].text)))
    return [distinct[i] for i in sorted(ranked[:limit])]


def answer_offline(
    question: str,
    passages: Sequence[Evidence],
    embed: Callable[[Sequence[str]], npt.NDArray[np.float32]],
    *,
    context: str = "",
    on_text: Callable[[str, str], None] | None = None,
) -> Answer:
    """The best 1-3 sentences of ``passages`` for ``question`` (``context``: the earlier turns'
    questions, which count for the words matched, not for the meaning), each followed by its
    ``[n]``; ``on_text(text_so_far, delta)`` is called as each sentence is added."""
    wanted = terms(question) | terms(context)
    candidates = shortlist(quotable_sentences(passages), wanted, MAX_EMBEDDED)
    if not candidates:
        return _declined(on_text, 0.0)
    vectors = embed([question, *(c.text for c in candidates)])
    semantic = vectors[1:] @ vectors[0]
    overlap = np.array(
        [len(wanted & terms(c.text)) / len(wanted) if wanted else 0.0 for c in candidates], dtype=np.float32
    )
    scores = semantic + KEYWORD_WEIGHT * overlap
    order = np.argsort(-scores, kind="stable")
    best = float(scores[order[0]])
    if best < DECLINE_BELOW:
        return _declined(on_text, best)
    chosen: list[int] = []
    for i in order:
        if len(chosen) == MAX_SENTENCES or scores[i] < best - KEEP_WITHIN:
            break
        if any(float(vectors[1 + i] @ vectors[1 + j]) > REDUNDANT_ABOVE for j in chosen):
            continue
        chosen.append(int(i))
    # Read in retrieval order, and within a passage in its own order.
    chosen.sort(key=lambda i: (candidates[i].passage, candidates[i].start))
    citations: list[Citation] = []
    text = ""
    for number, i in enumerate(chosen, 1):
        c = candidates[i]
        p = passages[c.passage]
        citations.append(
            Citation(
                number,
                p.source_id,
                p.source_title,
                p.chunk_id,
                p.position,
                p.page,
                c.text,
                c.start,
                c.end,
                time=p.time,
                time_label=None if p.time is None else clock(p.time),
            )
        )
        delta = f"{' ' if text else ''}{c.text} [{number}]"
        text += delta
        if on_text is not None:
            on_text(text, delta)
    return Answer(text=text, citations=citations, answered=True, best_score=round(best, 4))


def _declined(on_text: Callable[[str, str], None] | None, best: float) -> Answer:
    if on_text is not None:
        on_text(DECLINE, DECLINE)
    return Answer(text=DECLINE, citations=[], answered=False, best_score=round(best, 4))
