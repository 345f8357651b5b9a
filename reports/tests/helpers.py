"""Checks shared by the generation tests."""

from __future__ import annotations

import re
from collections.abc import Sequence
from html.parser import HTMLParser

from reports.generation import text as tx
from reports.generation.types import Passage, ReportDraft

CITATION = re.compile(r"(?<!\\)\[(\d+)\]")
VOID = {"meta", "br", "hr", "img", "link", "input", "wbr"}


def body_of(markdown: str) -> str:
    return markdown.split("\n## References\n", 1)[0]


def unescape(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown)


def sections_of(markdown: str) -> dict[str, str]:
    """Heading -> text, for the level-2 sections of the body."""
    out: dict[str, str] = {}
    for part in re.split(r"^## ", body_of(markdown), flags=re.MULTILINE)[1:]:
        heading, _, text = part.partition("\n")
        out[unescape(heading.strip())] = text
    return out


def assert_citations_resolve(draft: ReportDraft, passages: Sequence[Passage]) -> None:
    by_chunk = {p.chunk_id: p for p in passages}
    by_number = {c.number: c for c in draft.citations}
    used = {int(n) for n in CITATION.findall(body_of(draft.markdown))}
    assert used, "the report cites nothing"
    assert used == set(by_number), "references list exactly the cited passages"
    assert [c.number for c in draft.citations] == list(range(1, len(draft.citations) + 1))
    for citation in draft.citations:
        passage = by_chunk[citation.chunk_id]
        assert citation.quote and citation.quote in passage.text
        assert (citation.source_id, citation.source_title, citation.page) == (
            passage.source_id,
            passage.source_title,
            passage.page,
        )


def assert_sentences_are_quoted(draft: ReportDraft, passages: Sequence[Passage]) -> None:
    """Each cited sentence of an extractive report stands verbatim in the passage it cites (the
    introduction's lead cites the quoted findings it sums up, in its own words)."""
    by_chunk = {p.chunk_id: tx.collapse(p.text) for p in passages}
    chunk_of = {c.number: c.chunk_id for c in draft.citations}
    checked = 0
    quoted = "\n".join(text for heading, text in sections_of(draft.markdown).items() if heading != "Introduction")
    for line in quoted.splitlines():
        line = re.sub(r"^- ", "", line)
        pieces = CITATION.split(line)
        for i in range(1, len(pieces), 2):
            segment = unescape(pieces[i - 1]).strip()
            spans = tx.sentence_spans(segment)
            sentence = segment[spans[-1].start : spans[-1].end]
            assert sentence in by_chunk[chunk_of[int(pieces[i])]], sentence
            checked += 1
    assert checked


class HtmlChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.doctype = ""
        self.ids: list[str] = []
        self.links: list[str] = []
        self.link_titles: list[str] = []
        self.tags: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append(tag)
        if values.get("id"):
            self.ids.append(str(values["id"]))
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))
            self.link_titles.append(str(values.get("title") or ""))
        self._in_title = tag == "title"
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.errors.append(f"self-closing <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def check_html(page: str) -> HtmlChecker:
    checker = HtmlChecker()
    checker.feed(page)
    checker.close()
    assert checker.doctype.lower() == "doctype html"
    assert not checker.errors, checker.errors
    assert not checker.stack, f"unclosed: {checker.stack}"
    assert checker.tags[:4] == ["html", "head", "meta", "meta"]
    assert '<meta charset="utf-8">' in page
    assert len(checker.ids) == len(set(checker.ids)), "ids are unique"
    return checker


def assert_html_matches(draft: ReportDraft) -> None:
    checker = check_html(draft.html)
    assert checker.title == draft.title
    numbers = {c.number for c in draft.citations}
    assert {f"ref-{n}" for n in numbers} <= set(checker.ids)
    linked = {int(href.removeprefix("#ref-")) for href in checker.links if href.startswith("#ref-")}
    assert linked == numbers
    assert all(href.startswith("#ref-") for href in checker.links), "no link leaves the page"
    quotes = {c.number: tx.collapse(c.quote)[:60] for c in draft.citations}
    for href, title in zip(checker.links, checker.link_titles, strict=True):
        assert quotes[int(href.removeprefix("#ref-"))] in title
