"""The data a report generator reads and writes: plain frozen values, no Django."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import numpy as np
import numpy.typing as npt

from notebooks.ingest.media import clock

Vector = npt.NDArray[np.float32]
Length = Literal["short", "medium", "long"]
Style = Literal["summary", "briefing", "study-guide"]
# (percent of the generation step 0-100, what is happening). A job's callback may raise to cancel.
ProgressFn = Callable[[int, str], None]

LENGTHS: Final = ("short", "medium", "long")
STYLES: Final = ("summary", "briefing", "study-guide")


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk of one source; ``text`` is the chunk's text exactly as stored."""

    source_id: str
    source_title: str
    chunk_id: str
    position: int  # the chunk's 0-based order within its source
    page: int | None  # 1-based, None for sources without pages
    text: str
    score: float = 0.0  # retrieval relevance; equal for every passage of a whole-notebook report
    # A unit-length (384,) float32 vector, or None to group passages by their words instead.
    embedding: Vector | None = field(default=None, compare=False, repr=False)
    time: float | None = None  # a recording's passage: where it starts, in seconds


@dataclass(frozen=True)
class Citation:
    """What [number] in a report points at; ``quote`` is a verbatim substring of the chunk's text."""

    number: int
    source_id: str
    source_title: str
    chunk_id: str
    page: int | None
    quote: str
    time: float | None = None  # a recording's passage: where it starts, in seconds

    @property
    def where(self) -> str:
        """ ", p. 3" for a page, " at 12:34" for a moment of a recording, else ""."""
        if self.page is not None:
            return f", p. {self.page}"
        return f" at {clock(self.time)}" if self.time is not None else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "source_id": self.source_id,
            "source_title": self.source_title,
            "chunk_id": self.chunk_id,
            "page": self.page,
            "time": self.time,
            "time_label": None if self.time is None else clock(self.time),
            "quote": self.quote,
        }


@dataclass(frozen=True)
class ReportOptions:
    length: Length = "medium"
    style: Style = "summary"
    topic: str | None = None  # None: a report on the whole notebook
    title: str | None = None  # None: derived from the topic or the section names

    def __post_init__(self) -> None:
        if self.length not in LENGTHS:
            raise ValueError(f"length must be one of {', '.join(LENGTHS)}")
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}")


@dataclass(frozen=True)
class ReportDraft:
    title: str
    markdown: str
    html: str
    citations: list[Citation]  # numbered 1..n in order of first use, each used in the body
    sections: list[str]  # the topic sections' headings, between the introduction and the conclusion
    word_count: int  # words of the report's text, without the title, citation marks and references
    generator: str = "extractive"
    # Problems that did not stop the report, for the job's log and result (e.g. a dropped citation).
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe metadata (without the Markdown and HTML bodies) for a job result or a row."""
        return {
            "title": self.title,
            "sections": list(self.sections),
            "word_count": self.word_count,
            "generator": self.generator,
            "warnings": list(self.warnings),
            "citations": [c.to_dict() for c in self.citations],
        }


class GenerationError(Exception):
    """A failure the user should read; ``code`` is machine-readable, ``message`` has no secrets."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class Generator(Protocol):
    @property
    def name(self) -> str: ...

    def generate(self, passages: Sequence[Passage], options: ReportOptions, progress: ProgressFn = ...) -> ReportDraft:
        """A complete report from ``passages`` (best first), calling ``progress`` by stage."""
        ...


def no_progress(percent: int, message: str) -> None:
    """A progress callback that ignores what it is told."""
