"""What both generators share: passage clean-up, citation numbering, intro, references, assembly."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from reports.generation import render
from reports.generation import text as tx
from reports.generation.outline import OutlineSection
from reports.generation.types import Citation, GenerationError, Passage, ReportDraft, ReportOptions

# More passages than this add time, not content: retrieval sends the best first.
MAX_PASSAGES: Final = 300
# A quote covering every sentence taken from a chunk, unless that is longer than this.
MAX_QUOTE_CHARS: Final = 600
REFERENCE_QUOTE_CHARS: Final = 240
_CITATION_MARK: Final = re.compile(r"(?<!\\)\[\d+\]")


def prepare(passages: Sequence[Passage]) -> list[Passage]:
    """Passages with text, each chunk once, at most MAX_PASSAGES, in the order given."""
    seen: set[str] = set()
    out: list[Passage] = []
    for p in passages:
        if p.chunk_id in seen or not p.text.strip():
            continue
        seen.add(p.chunk_id)
        out.append(p)
        if len(out) == MAX_PASSAGES:
            break
    if not out:
        raise GenerationError(
            "NO_PASSAGES", "There is no processed source text to write a report from.", retryable=False
        )
    return out


class CitationRegistry:
    """Numbers cited passages 1..n in order of first use and remembers what each was cited for."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        self.passages = passages
        self._numbers: dict[int, int] = {}  # passage index -> number
        self._spans: dict[int, list[tx.Span]] = {}
        self._statements: dict[int, list[str]] = {}

    def cite(self, index: int) -> int:
        return self._numbers.setdefault(index, len(self._numbers) + 1)

    def cite_span(self, index: int, span: tx.Span) -> int:
        """A citation for the sentence ``passage.text[span]`` quoted verbatim in the report."""
        self._spans.setdefault(index, []).append(span)
        return self.cite(index)

    def cite_statement(self, index: int, statement: str) -> int:
        """A citation for a statement written from the passage in other words."""
        self._statements.setdefault(index, []).append(statement)
        return self.cite(index)

    def numbered(self) -> dict[int, int]:
        """number -> passage index, for every passage cited so far."""
        return {n: i for i, n in self._numbers.items()}

    def citations(self) -> list[Citation]:
        out = []
        for index, number in sorted(self._numbers.items(), key=lambda item: item[1]):
            p = self.passages[index]
            out.append(
                Citation(
                    number=number,
                    source_id=p.source_id,
                    source_title=p.source_title,
                    chunk_id=p.chunk_id,
                    page=p.page,
                    quote=self._quote(index),
                    time=p.time,
                )
            )
        return out

    def _quote(self, index: int) -> str:
        text = self.passages[index].text
        spans = self._spans.get(index)
        if spans:
            start, end = min(s.start for s in spans), max(s.end for s in spans)
            if end - start > MAX_QUOTE_CHARS:
                first = min(spans, key=lambda s: s.start)
                start, end = first.start, first.end
            return text[start:end]
        statements = self._statements.get(index)
        title = self.passages[index].source_title
        if statements:
            return best_matching_sentence(text, " ".join(statements), title=title)
        return tx.truncate_words(text[tx.title_end(text, title) :].strip() or text.strip(), MAX_QUOTE_CHARS // 2)


def best_matching_sentence(text: str, statement: str, *, title: str = "") -> str:
    """The sentence of ``text`` (verbatim) that shares the most weighted words with ``statement``;
    never the source's ``title`` when the text has anything else."""
    spans = tx.finding_spans(text, title) or tx.sentence_spans(text)
    if not spans:
        return tx.truncate_words(text.strip(), MAX_QUOTE_CHARS // 2)
    sentences = [text[s.start : s.end] for s in spans]
    documents = [tx.terms(s) for s in sentences]
    tfidf = tx.TfIdf(documents)
    vocabulary = sorted({t for doc in documents for t in doc})
    if not vocabulary:
        return tx.truncate_words(sentences[0], MAX_QUOTE_CHARS)
    rows = tfidf.matrix(documents, vocabulary)
    target = tfidf.matrix([tx.terms(statement)], vocabulary)[0]
    # Whole sentences beat the fragments a chunk starts or ends with, at equal overlap.
    scores = rows @ target + [0.05 if tx.is_whole_sentence(s) else 0.0 for s in sentences]
    best = sentences[int(scores.argmax())]
    return tx.truncate_words(best, MAX_QUOTE_CHARS)


def report_title(options: ReportOptions, outline: Sequence[OutlineSection]) -> str:
    if options.title and options.title.strip():
        return tx.collapse(options.title)
    if options.topic and options.topic.strip():
        topic = tx.collapse(options.topic)
        return topic[:1].upper() + topic[1:]
    # The largest sections name the report; ties go to the earlier one.
    largest = sorted(range(len(outline)), key=lambda i: (-len(outline[i].passages), i))[:3]
    subjects = [outline[i].keywords[0] for i in sorted(largest) if outline[i].keywords]
    return f"Report on {tx.join_names(subjects)}" if subjects else "Report"


def introduction(passages: Sequence[Passage], outline: Sequence[OutlineSection], options: ReportOptions) -> str:
    """A paragraph on what the report covers and where it comes from; it quotes no source."""
    titles: list[str] = []
    for p in passages:
        title = f"*{tx.md_escape(p.source_title or 'Untitled source')}*"
        if title not in titles:
            titles.append(title)
    shown = titles[:5] + ([f"{len(titles) - 5} more"] if len(titles) > 5 else [])
    sources = "one source, " + shown[0] if len(titles) == 1 else f"{len(titles)} sources: {tx.join_names(shown)}"
    about = f" on \u201c{tx.md_escape(options.topic.strip())}\u201d" if options.topic and options.topic.strip() else ""
    count = "one passage" if len(passages) == 1 else f"{len(passages)} passages"
    names = [f"\u201c{tx.md_escape(s.title)}\u201d" for s in outline]
    plan = (
        f" It has {len(names)} sections: {'; '.join(names)}."
        if len(names) > 1
        else f" It covers {names[0]}."
        if names
        else ""
    )
    how = " Numbers in brackets cite the passages listed under References."
    return f"This report{about} draws on {count} from {sources}.{plan}{how}"


def references(citations: Sequence[Citation]) -> str:
    lines = []
    for c in citations:
        where = c.where
        quote = tx.collapse(c.quote)
        short = tx.truncate_words(quote, REFERENCE_QUOTE_CHARS)
        if len(short) < len(quote):
            short += "\u2026"
        title = tx.md_escape(c.source_title or "Untitled source")
        lines.append(f"- [{c.number}] *{title}*{where} \u2014 \u201c{tx.md_escape(short)}\u201d")
    return "\n".join(lines)


def body_word_count(markdown: str) -> int:
    plain = _CITATION_MARK.sub(" ", markdown)
    plain = re.sub(r"\\(.)", r"\1", plain)
    plain = re.sub(r"^\s*(#+|[-*+]|\d+[.)])\s", " ", plain, flags=re.MULTILINE)
    return tx.word_count(re.sub(r"[*_`>#|~]", " ", plain))


def assemble(
    *,
    title: str,
    body: Sequence[str],
    sections: Sequence[str],
    registry: CitationRegistry,
    generator: str,
    warnings: Sequence[str] = (),
) -> ReportDraft:
    """The report from its Markdown blocks (headings, paragraphs, lists) in reading order."""
    citations = registry.citations()
    body_markdown = "\n\n".join(block for block in body if block.strip())
    parts = [f"# {tx.md_escape(title)}", body_markdown]
    if citations:
        parts += ["## References", references(citations)]
    markdown = "\n\n".join(parts) + "\n"
    return ReportDraft(
        title=title,
        markdown=markdown,
        html=render.render_page(markdown, title=title, citations=citations),
        citations=citations,
        sections=list(sections),
        word_count=body_word_count(body_markdown),
        generator=generator,
        warnings=list(warnings),
    )


def review_questions(outline: Sequence[OutlineSection]) -> str:
    lines = []
    for section in outline:
        lines.append(f"1. What do the sources say about {mid_sentence(section)}?")
        if section.keywords:
            lines.append(f"1. How would you explain {tx.md_escape(section.keywords[0])} in your own words?")
    return "\n".join(lines)


def mid_sentence(section: OutlineSection) -> str:
    """The section's title as it reads inside a sentence: "lava, eruptions", but "Roman roads"."""
    title = tx.md_escape(section.title)
    if section.keywords and section.keywords[0][:1].isupper():
        return title
    return title[:1].lower() + title[1:]


def coverage_sentence(outline: Sequence[OutlineSection]) -> str:
    """ "Taken together, the sources cover lava, Roman roads and energy." (no citation: it quotes nothing)"""
    subjects: list[str] = []
    for section in outline:
        subject = section.keywords[0] if section.keywords else section.title
        subject = tx.md_escape(
            subject if subject[:1].isupper() and section.keywords else subject[:1].lower() + subject[1:]
        )
        if subject not in subjects:
            subjects.append(subject)
    return f"Taken together, the sources cover {tx.join_names(subjects)}." if subjects else ""
