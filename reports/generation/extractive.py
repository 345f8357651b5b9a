"""The offline generator: a report made of the sources' own most central sentences, each cited.

Per section: split its passages into sentences, score each by centrality (TextRank over TF-IDF
cosine similarities, averaged with similarity to the section's centroid), relevance to the topic
and the passage's retrieval score; pick with maximal marginal relevance so no two say the same
thing; print them in the order they stand in the sources. Every sentence is quoted verbatim and
cites its chunk, so each claim can be found where it came from. The output depends only on the
input: no randomness, no clock, no set ordering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from reports.generation import compose
from reports.generation import text as tx
from reports.generation.outline import OutlineSection, build_outline, name_sections, reading_order
from reports.generation.types import Passage, ProgressFn, ReportDraft, ReportOptions, no_progress


@dataclass(frozen=True)
class Budget:
    sentences_per_section: int
    conclusion_sentences: int


BUDGETS: Final[dict[str, Budget]] = {
    "short": Budget(sentences_per_section=2, conclusion_sentences=1),
    "medium": Budget(sentences_per_section=4, conclusion_sentences=2),
    "long": Budget(sentences_per_section=7, conclusion_sentences=3),
}
MMR_LAMBDA: Final = 0.7
# How much a passage's retrieval score (for a topic: the answerer's score of its best sentence) counts
# beside centrality; tuned on SciFact train (make eval, the report section): 0.3 -> 1.0 took the
# relevant share of cited passages from 0.31 to 0.36.
RETRIEVAL_WEIGHT: Final = 1.0
# Two sentences this similar (TF-IDF cosine) say the same thing; the second is never used.
DUPLICATE_SIMILARITY: Final = 0.7
# Scoring is quadratic in the sentences compared; a bigger pool is thinned evenly across passages.
MAX_POOL: Final = 400
RUNNERS_UP: Final = 5
_DAMPING: Final = 0.85
_ANAPHORA: Final = frozenset(
    "this that these those it its they their them he she his her such however but also then thus "
    "therefore moreover furthermore besides instead otherwise hence so yet still".split()
)
_ITERATIONS: Final = 50


@dataclass(frozen=True)
class Sentence:
    passage: int
    span: tx.Span
    text: str  # passage.text[span.start:span.end], verbatim
    terms: tuple[str, ...]
    order: tuple[int, int, int, int]  # reading order: source, chunk position, passage, offset


class ExtractiveGenerator:
    name = "extractive"

    def generate(
        self, passages: Sequence[Passage], options: ReportOptions, progress: ProgressFn = no_progress
    ) -> ReportDraft:
        passages = compose.prepare(passages)
        budget = BUDGETS[options.length]
        progress(5, "Outlining")
        outline = build_outline(passages, length=options.length)
        candidates = sentences(passages)
        tfidf = tx.TfIdf([s.terms for s in candidates])
        topic_terms = tuple(tx.terms(options.topic or ""))
        picker = _Picker(passages, tfidf, topic_terms)
        # Briefings lead with one key point per section, taken before the section's own bullets.
        per_section = budget.sentences_per_section + (1 if options.style == "briefing" else 0)

        written: list[tuple[OutlineSection, list[Sentence]]] = []
        for number, section in enumerate(outline, start=1):
            progress(10 + 75 * (number - 1) // len(outline), f"Writing section {number} of {len(outline)}")
            members = set(section.passages)
            chosen = picker.pick([s for s in candidates if s.passage in members], per_section)
            if chosen:
                written.append((section, chosen))
        progress(85, "Writing the conclusion")
        # Out of its context a conclusion sentence must stand alone.
        standalone = [s for s in picker.runners_up if not _leans_back(s.text)]
        closing = picker.pick(standalone or picker.runners_up, budget.conclusion_sentences)

        progress(92, "Rendering")
        registry = compose.CitationRegistry(passages)
        # Named after picking: a section's title is a phrase of the passages it quotes.
        names = name_sections(
            passages,
            [section.passages for section, _ in written],
            quoted=[sorted({s.passage for s in chosen}) for _, chosen in written],
        )
        written = [
            (replace(section, title=title, keywords=keywords), chosen)
            for (section, chosen), (title, keywords) in zip(written, names, strict=True)
        ]
        outline_used = [section for section, _ in written]
        title = compose.report_title(options, outline_used)
        body = ["## Introduction", compose.introduction(passages, outline_used, options)]
        body.append(lead(written, passages, registry))
        if options.style == "briefing":
            # A section with a single sentence keeps it rather than be left empty.
            key_points = [chosen.pop(0) for _, chosen in written if len(chosen) > 1]
            body += ["## Key points", "\n".join(f"- {_cited(s, registry)}" for s in key_points)]
        for section, chosen in written:
            body.append(f"## {tx.md_escape(section.title)}")
            ordered = sorted(chosen, key=lambda s: s.order)
            if options.style == "briefing":
                body.append("\n".join(f"- {_cited(s, registry)}" for s in ordered))
            else:
                body += _paragraphs(ordered, registry)
            if options.style == "study-guide" and section.keywords:
                body.append("Key terms: " + ", ".join(f"*{tx.md_escape(k)}*" for k in section.keywords) + ".")
        body.append("## Conclusion")
        summary = compose.coverage_sentence(outline_used)
        body.append(" ".join([summary, *(_cited(s, registry) for s in sorted(closing, key=lambda s: s.order))]).strip())
        if options.style == "study-guide":
            body += ["## Review questions", compose.review_questions(outline_used)]
        return compose.assemble(
            title=title,
            body=body,
            sections=[section.title for section in outline_used],
            registry=registry,
            generator=self.name,
        )


_COUNTS: Final = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
MAX_LEAD_SENTENCES: Final = 3
NOTHING_SHARED: Final = (
    "No two sources report on the same effect within a theme, so nothing below is agreed or disputed between them."
)


def lead(
    written: Sequence[tuple[OutlineSection, Sequence[Sentence]]],
    passages: Sequence[Passage],
    registry: compose.CitationRegistry,
) -> str:
    """What the sources agree and disagree on, theme by theme, citing the findings it rests on.

    Within a section, each source's quoted findings are read for their stance
    (``text.stance``): an effect or association reported, or none found. Sources on both
    sides of one theme disagree; two or more on the same side agree. Disagreements come
    first, then the agreements of the most sources.
    """
    disputed: list[str] = []
    agreed: list[tuple[int, int, str]] = []
    for number, (section, chosen) in enumerate(written):
        sides: dict[str, dict[str, Sentence]] = {"effect": {}, "none": {}}
        for sentence in sorted(chosen, key=lambda s: s.order):
            side = tx.stance(sentence.text)
            if side is not None:
                sides[side].setdefault(passages[sentence.passage].source_id, sentence)
        # A source that states a null result somewhere is read as finding none.
        none = sides["none"]
        effect = {source: s for source, s in sides["effect"].items() if source not in none}
        subject = compose.mid_sentence(section)
        if effect and none:
            disputed.append(
                f"The sources disagree on {subject}: {_sources(len(effect), 'reports', 'report')} an effect or an "
                f"association {_cites(effect, registry)}, {_sources(len(none), 'finds', 'find')} none "
                f"{_cites(none, registry)}."
            )
        elif len(effect) >= 2:
            agreed.append(
                (
                    -len(effect),
                    number,
                    f"The sources agree on {subject}: {_sources(len(effect), 'reports', 'report')} an effect or an "
                    f"association {_cites(effect, registry)} and none finds the opposite.",
                )
            )
        elif len(none) >= 2:
            agreed.append(
                (
                    -len(none),
                    number,
                    f"The sources agree on {subject}: {_sources(len(none), 'finds', 'find')} no effect or association "
                    f"{_cites(none, registry)}.",
                )
            )
    said = (disputed + [text for _, _, text in sorted(agreed)])[:MAX_LEAD_SENTENCES]
    if not said:
        return NOTHING_SHARED
    return " ".join(said)


def _sources(n: int, one: str, many: str) -> str:
    """ "one source finds", "three sources find" """
    return f"{_COUNTS[n] if n < len(_COUNTS) else n} source{'' if n == 1 else 's'} {one if n == 1 else many}"


def _cites(by_source: dict[str, Sentence], registry: compose.CitationRegistry) -> str:
    return "".join(f"[{registry.cite_span(s.passage, s.span)}]" for s in by_source.values())


def sentences(passages: Sequence[Passage]) -> list[Sentence]:
    """Whole sentences of every passage, each once (the first time it appears in reading order)."""
    order = reading_order(passages)
    out: list[Sentence] = []
    seen: set[str] = set()
    for index in sorted(range(len(passages)), key=lambda i: order[i]):
        p = passages[index]
        # The paper's title is its name, not a finding: it is never quoted as one.
        spans = tx.finding_spans(p.text, p.source_title)
        # A later chunk starts inside the overlap with the one before it: its first piece is the
        # tail of a sentence the previous chunk holds whole.
        if p.position > 0 and len(spans) > 1:
            spans = spans[1:]
        found = [(s, p.text[s.start : s.end]) for s in spans]
        whole = [(s, t) for s, t in found if tx.is_whole_sentence(t)]
        if not whole and found:
            # No proper sentence (a table, a list, notes): the longest piece stands in, cut short.
            span, piece = max(found, key=lambda st: (len(st[1]), -st[0].start))
            cut = tx.truncate_words(piece, 400)
            whole = [(tx.Span(span.start, span.start + len(cut)), cut)]
        for span, sentence in whole:
            key = tx.collapse(sentence).lower()
            terms = tuple(tx.terms(sentence))
            if key in seen or not terms:
                continue
            seen.add(key)
            rank, position, passage = order[index]
            out.append(Sentence(index, span, sentence, terms, (rank, position, passage, span.start)))
    return out


class _Picker:
    """Chooses sentences section after section, never one too close to any already chosen."""

    def __init__(self, passages: Sequence[Passage], tfidf: tx.TfIdf, topic_terms: tuple[str, ...]) -> None:
        self.passages = passages
        self.tfidf = tfidf
        self.topic_terms = topic_terms
        self.used: list[Sentence] = []
        # The best sentences each section left out: what the conclusion chooses from.
        self.runners_up: list[Sentence] = []

    def pick(self, pool: Sequence[Sentence], count: int) -> list[Sentence]:
        taken = {id(s) for s in self.used}
        pool = _thin([s for s in pool if id(s) not in taken])
        if not pool or count <= 0:
            return []
        vocabulary = sorted({t for s in [*pool, *self.used] for t in s.terms} | set(self.topic_terms))
        rows = self.tfidf.matrix([s.terms for s in pool], vocabulary)
        relevance = self._relevance(pool, rows, vocabulary)
        previous = self.tfidf.matrix([s.terms for s in self.used], vocabulary) if self.used else None
        # Similarity of each candidate to the closest sentence already in the report.
        closest = (rows @ previous.T).max(axis=1) if previous is not None else np.zeros(len(pool))
        chosen: list[int] = []
        while len(chosen) < count:
            best, best_score = -1, -np.inf
            for i in range(len(pool)):
                if i in chosen or closest[i] >= DUPLICATE_SIMILARITY:
                    continue
                score = MMR_LAMBDA * relevance[i] - (1 - MMR_LAMBDA) * max(closest[i], 0.0)
                if score > best_score + 1e-12:
                    best, best_score = i, score
            if best < 0:
                break
            chosen.append(best)
            closest = np.maximum(closest, rows @ rows[best])
        picked = [pool[i] for i in chosen]
        self.used.extend(picked)
        runners_up = sorted((i for i in range(len(pool)) if i not in chosen), key=lambda i: (-relevance[i], i))
        self.runners_up.extend(pool[i] for i in runners_up[:RUNNERS_UP])
        return picked

    def _relevance(self, pool: Sequence[Sentence], rows: tx.Matrix, vocabulary: Sequence[str]) -> tx.Matrix:
        n = len(pool)
        if n == 1:
            return np.ones(1)
        sim = np.clip(rows @ rows.T, 0.0, None)
        np.fill_diagonal(sim, 0.0)
        sums = sim.sum(axis=1, keepdims=True)
        # A sentence sharing no word with the rest votes for everyone equally.
        transition = np.where(sums > 0, sim / np.maximum(sums, 1e-12), 1.0 / n)
        rank = np.full(n, 1.0 / n)
        for _ in range(_ITERATIONS):
            rank = (1 - _DAMPING) / n + _DAMPING * (transition.T @ rank)
        centroid = tx.normalise(rows.mean(axis=0, keepdims=True))[0]
        score = 0.5 * tx.minmax(rank) + 0.5 * tx.minmax(rows @ centroid)
        if self.topic_terms:
            topic = self.tfidf.matrix([self.topic_terms], vocabulary)[0]
            score = score + 0.6 * tx.minmax(rows @ topic)
        retrieval = np.asarray([self.passages[s.passage].score for s in pool], dtype=np.float64)
        score = score + RETRIEVAL_WEIGHT * tx.minmax(retrieval)
        # Very short sentences are rarely informative on their own.
        brevity = np.asarray([min(1.0, len(s.terms) / 6) for s in pool])
        # "That reaction..." or "However, it..." leans on a sentence the reader may not get.
        standalone = np.asarray([0.75 if _leans_back(s.text) else 1.0 for s in pool])
        weighted: tx.Matrix = score * (0.7 + 0.3 * brevity) * standalone
        return weighted


def _leans_back(sentence: str) -> bool:
    first = tx.words(sentence[:40])[:1]
    return bool(first) and first[0].lower() in _ANAPHORA


def _thin(pool: list[Sentence]) -> list[Sentence]:
    """At most MAX_POOL sentences: the same share of every passage, its most wordy ones first."""
    if len(pool) <= MAX_POOL:
        return pool
    by_passage: dict[int, list[Sentence]] = {}
    for s in pool:
        by_passage.setdefault(s.passage, []).append(s)
    share = max(1, MAX_POOL // len(by_passage))
    kept = {
        id(s) for group in by_passage.values() for s in sorted(group, key=lambda s: (-len(s.terms), s.order))[:share]
    }
    return [s for s in pool if id(s) in kept][:MAX_POOL]


def _cited(sentence: Sentence, registry: compose.CitationRegistry) -> str:
    number = registry.cite_span(sentence.passage, sentence.span)
    return f"{tx.md_escape(sentence.text)} [{number}]"


def _paragraphs(ordered: Sequence[Sentence], registry: compose.CitationRegistry) -> list[str]:
    """One paragraph per run of sentences from the same source."""
    paragraphs: list[list[str]] = []
    previous_source: int | None = None
    for s in ordered:
        if s.order[0] != previous_source:
            paragraphs.append([])
            previous_source = s.order[0]
        paragraphs[-1].append(_cited(s, registry))
    return [" ".join(p) for p in paragraphs]
