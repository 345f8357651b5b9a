"""The generator that asks an OpenAI-compatible chat model to write each section from passages.

The outline is the same deterministic one the extractive generator uses. Each section's prompt
lists that section's passages numbered [1]..[m] and asks for statements citing only those numbers;
the reply is then checked, not trusted: a citation to a number that was not listed is removed and
reported in ``warnings``, a paragraph that cites nothing is left out, and the numbers are mapped to
passages and renumbered in order of first use, so the references list holds exactly what is cited.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Final

from notebooks.llm import LLM_BAD_RESPONSE, LLMError
from reports.generation import compose
from reports.generation import text as tx
from reports.generation.outline import OutlineSection, build_outline, name_sections
from reports.generation.types import (
    GenerationError,
    Passage,
    ProgressFn,
    ReportDraft,
    ReportOptions,
    no_progress,
)

ChatFn = Callable[[Sequence[Mapping[str, str]]], str]

SECTION_WORDS: Final[dict[str, int]] = {"short": 90, "medium": 180, "long": 320}
CONCLUSION_SENTENCES: Final[dict[str, int]] = {"short": 2, "medium": 3, "long": 4}
# Passage text per prompt: small enough for an 8k-token context with room for the answer.
PROMPT_CHARS: Final = 12_000
# A paragraph longer than this that cites nothing is taken to state unsupported facts.
UNCITED_WORDS: Final = 20
STYLE_INSTRUCTIONS: Final[dict[str, str]] = {
    "summary": "Write one to three flowing paragraphs.",
    "briefing": "Write a bullet list, one key fact per line, each line starting with '- '.",
    "study-guide": "Explain the ideas for a student in short paragraphs, defining the key terms you use.",
}
SYSTEM_PROMPT: Final = (
    "You are a careful research assistant writing part of a report. Use only the numbered passages "
    "you are given; add nothing from elsewhere. End every sentence that uses a passage with that "
    "passage's number in square brackets, like [2] or [1][3]. Cite only numbers from the list. "
    "Do not write a title, a heading, a list of references, or any URL. Write plain Markdown."
)

_CITED_NUMBER: Final = re.compile(r"(?<!\\)\[(\d+)\]")
_THINK: Final = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_WRAPPING_FENCE: Final = re.compile(r"^\s*```[\w-]*\n(.*)\n```\s*$", re.DOTALL)
_HEADING: Final = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$")
_END_MATTER: Final = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*)?(?:references|sources|bibliography|citations|works cited)(?:\*\*)?:?(?:\*\*)?\s*$",
    re.IGNORECASE,
)
_LINK: Final = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)")
_CITATION: Final = re.compile(
    r"\s?(?<!\\)\[(?:(?:passages?|sources?|refs?\.?)\s*)?(\d{1,4}(?:\s*[,;\u2013-]\s*\d{1,4})*)\]",
    re.IGNORECASE,
)


class LLMGenerator:
    name = "llm"

    def __init__(self, chat: ChatFn, *, model: str | None = None) -> None:
        self._chat = chat
        self.model = model

    def generate(
        self, passages: Sequence[Passage], options: ReportOptions, progress: ProgressFn = no_progress
    ) -> ReportDraft:
        passages = compose.prepare(passages)
        progress(5, "Outlining")
        outline = build_outline(passages, length=options.length)
        registry = compose.CitationRegistry(passages)
        warnings: list[str] = []

        written: list[tuple[OutlineSection, str]] = []
        for number, section in enumerate(outline, start=1):
            progress(10 + 72 * (number - 1) // len(outline), f"Writing section {number} of {len(outline)}")
            listed = _prompt_passages(passages, section)
            reply = self._ask(_section_prompt(passages, listed, section, options))
            text = _checked(reply, dict(enumerate(listed, start=1)), registry, f"Section {number}", warnings)
            if text:
                written.append((section, text))
        if not written:
            raise GenerationError(
                LLM_BAD_RESPONSE, "The language model wrote nothing that cites the sources.", retryable=True
            )

        progress(82, "Writing the conclusion")
        cited = registry.numbered()
        reply = self._ask(_conclusion_prompt(passages, written, cited, options))
        conclusion = _checked(reply, cited, registry, "Conclusion", warnings)

        progress(92, "Rendering")
        # As in the extractive report, a section is titled by a phrase of the passages it cites.
        index_of = registry.numbered()
        names = name_sections(
            passages,
            [section.passages for section, _ in written],
            quoted=[sorted({index_of[int(n)] for n in _CITED_NUMBER.findall(text)}) for _, text in written],
        )
        written = [
            (replace(section, title=title, keywords=keywords), text)
            for (section, text), (title, keywords) in zip(written, names, strict=True)
        ]
        sections = [s for s, _ in written]
        body = ["## Introduction", compose.introduction(passages, sections, options)]
        for section, text in written:
            body += [f"## {tx.md_escape(section.title)}", text]
        if conclusion:
            body += ["## Conclusion", conclusion]
        if options.style == "study-guide":
            body += ["## Review questions", compose.review_questions(sections)]
        return compose.assemble(
            title=compose.report_title(options, sections),
            body=body,
            sections=[s.title for s in sections],
            registry=registry,
            generator=self.name,
            warnings=warnings,
        )

    def _ask(self, user: str) -> str:
        try:
            return self._chat([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}])
        except LLMError as exc:
            raise GenerationError(exc.code, exc.message, retryable=exc.retryable) from exc


def _prompt_passages(passages: Sequence[Passage], section: OutlineSection) -> list[int]:
    """The section's passages that fit the prompt, best first when not all do, in reading order."""
    best_first = sorted(section.passages, key=lambda i: (-passages[i].score, section.passages.index(i)))
    chosen: set[int] = set()
    size = 0
    for index in best_first:
        length = len(passages[index].text)
        if chosen and size + length > PROMPT_CHARS:
            continue
        chosen.add(index)
        size += length
    return [i for i in section.passages if i in chosen]


def _describe(p: Passage) -> str:
    return f"{p.source_title or 'Untitled source'}" + (f", page {p.page}" if p.page is not None else "")


def _section_prompt(
    passages: Sequence[Passage], listed: Sequence[int], section: OutlineSection, options: ReportOptions
) -> str:
    blocks = [
        f"[{n}] Source: {_describe(passages[i])}\n{tx.collapse(passages[i].text)}"
        for n, i in enumerate(listed, start=1)
    ]
    return "\n".join(
        [
            f"Report topic: {tx.collapse(options.topic) if options.topic else 'everything in the sources'}",
            f"Section: {section.title}",
            f"Style: {STYLE_INSTRUCTIONS[options.style]}",
            f"Length: about {SECTION_WORDS[options.length]} words.",
            f"Cite only these numbers: {', '.join(f'[{n}]' for n in range(1, len(listed) + 1))}.",
            "",
            "Passages:",
            "",
            "\n\n".join(blocks),
        ]
    )


def _conclusion_prompt(
    passages: Sequence[Passage],
    written: Sequence[tuple[OutlineSection, str]],
    cited: Mapping[int, int],
    options: ReportOptions,
) -> str:
    sections = "\n\n".join(f"## {section.title}\n{text}" for section, text in written)
    listing = "\n".join(f"[{n}] Source: {_describe(passages[i])}" for n, i in sorted(cited.items()))
    return "\n".join(
        [
            f"Report topic: {tx.collapse(options.topic) if options.topic else 'everything in the sources'}",
            f"Write the report's conclusion: {CONCLUSION_SENTENCES[options.length]} sentences that draw the "
            "sections below together. Keep the citations of any fact you repeat; cite only numbers listed "
            "under Passages.",
            "",
            "Sections:",
            "",
            sections,
            "",
            "Passages:",
            "",
            listing,
        ]
    )


def _checked(
    reply: str, numbering: Mapping[int, int], registry: compose.CitationRegistry, where: str, warnings: list[str]
) -> str:
    """The reply as safe Markdown whose citations are the report's numbers, or "" if nothing cited."""
    blocks = _blocks(_clean(reply))
    kept: list[str] = []
    for block in blocks:
        cited_any = False
        pieces: list[str] = []
        last = 0
        dropped = False
        for match in _CITATION.finditer(block):
            statement = block[last : match.start()]
            if dropped:  # the punctuation that ended the dropped claim
                statement = re.sub(r"^[.!?;:,]+", "", statement)
            numbers: list[int] = []
            for n in _numbers(match.group(1)):
                index = numbering.get(n)
                if index is None:
                    warnings.append(f"{where}: removed citation [{n}], which is not one of the passages given.")
                    continue
                number = registry.cite_statement(index, statement)
                if number not in numbers:
                    numbers.append(number)
            dropped = not numbers
            if dropped:
                # Attributed to a passage that does not exist: the claim goes with its citation.
                statement = _without_last_sentence(statement)
            pieces.append(statement)
            if numbers:
                cited_any = True
                pieces.append(" " + "".join(f"[{n}]" for n in numbers))
            last = match.end()
        pieces.append(re.sub(r"^[.!?;:,]+", "", block[last:]) if dropped else block[last:])
        text = re.sub(r"(?<=\S)[ \t]{2,}", " ", "".join(pieces)).strip()
        if not cited_any and not _HEADING.match(text) and tx.word_count(text) > UNCITED_WORDS:
            warnings.append(f"{where}: left out a paragraph that cited no passage.")
            continue
        if text:
            kept.append(text)
    if not any(re.search(r"(?<!\\)\[\d+\]", k) for k in kept):
        if blocks:
            warnings.append(f"{where}: left out, because it cited none of the passages given.")
        return ""
    return "\n\n".join(kept)


def _without_last_sentence(text: str) -> str:
    spans = tx.sentence_spans(text)
    return text[: spans[-1].start] if spans else text


def _numbers(group: str) -> list[int]:
    out: list[int] = []
    for part in re.split(r"\s*[,;]\s*", group.strip()):
        bounds = [int(b) for b in re.split(r"\s*[\u2013-]\s*", part) if b]
        if len(bounds) == 2 and 0 <= bounds[1] - bounds[0] <= 10:
            out.extend(range(bounds[0], bounds[1] + 1))
        else:
            out.extend(bounds)
    return out


def _clean(reply: str) -> str:
    """Drop reasoning, wrapping fences, the model's own headings and references, links and HTML."""
    text = _THINK.sub("", reply)
    if "</think>" in text.lower():  # an opening tag the server cut off
        text = text[text.lower().rindex("</think>") + len("</think>") :]
    if fenced := _WRAPPING_FENCE.match(text):
        text = fenced.group(1)
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if _END_MATTER.match(line):
            break
        if heading := _HEADING.match(line):
            if not lines or not any(x.strip() for x in lines):
                continue  # the section's name again: the report prints its own
            line = f"### {heading.group(1)}"
        lines.append(line)
    text = _LINK.sub(r"\1", "\n".join(lines))
    return re.sub(r"(?<!\\)<", r"\\<", text).strip()


def _blocks(text: str) -> list[str]:
    """Paragraphs and list items: each is kept or left out on its own citations."""
    blocks: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        current: list[str] = []
        for line in paragraph.split("\n"):
            if re.match(r"^\s*(?:[-*+]|\d+[.)])\s+", line) or _HEADING.match(line):
                if current:
                    blocks.append("\n".join(current))
                current = [line.rstrip()]
            elif line.strip():
                current.append(line.rstrip())
        if current:
            blocks.append("\n".join(current))
    return blocks
