"""Split extracted text into overlapping, embeddable chunks that cite back into the text.

A chunk is a run of whole words: ``text[char_start:char_end] == chunk.text`` and it starts and
ends on word boundaries. The only exception is a single "word" longer than a whole chunk (a URL
or base64 blob without spaces), which has to be cut.

Token counts are MiniLM word pieces. BERT's tokenizer never joins tokens across whitespace, so a
chunk's count is the sum of its words' counts; each distinct word is counted once per document.
The default budget, 254, plus [CLS] and [SEP] fills the model's 256-token window exactly, so the
embedder sees every word of every chunk.

Chunks never cross a page boundary, so every chunk (and every citation of it) has one page.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from notebooks.ingest.errors import EmbedderUnavailable
from notebooks.ingest.extract import PageText

MAX_TOKENS: Final = 254
OVERLAP_TOKENS: Final = 32

# Word pieces of each word, in order, without special tokens.
TokenCounter = Callable[[Sequence[str]], list[int]]

_WORD = re.compile(r"\S+")
_PIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# A sentence may end inside closing quotes or brackets (straight or curly).
_SENTENCE_END = re.compile("[.!?\u2026][\"'\u201d\u2019)\\]]*$")


@dataclass(frozen=True)
class Chunk:
    position: int  # 0-based order within the source
    text: str
    token_count: int
    char_start: int
    char_end: int
    page: int | None  # 1-based page number, None for sources without pages


def approximate_token_counts(words: Sequence[str]) -> list[int]:
    """A tokenizer-free estimate, deliberately on the high side.

    Each run of letters or digits costs one piece per four characters and each punctuation mark
    one, which overestimates common English words (one piece each in MiniLM's vocabulary) and
    so keeps chunks inside the window when the real tokenizer is not installed.
    """
    return [sum(math.ceil(len(p) / 4) for p in _PIECE.findall(word)) or 1 for word in words]


def default_token_counter() -> TokenCounter:
    try:
        from notebooks.ingest import minilm

        minilm.count_tokens(["probe"])
    except (ImportError, EmbedderUnavailable):
        return approximate_token_counts
    return minilm.count_tokens


@dataclass(frozen=True)
class _Words:
    """The words of one page (or of a text without pages), as parallel lists in text order."""

    page: int | None
    starts: list[int]
    ends: list[int]
    tokens: list[int]


def chunk_text(
    text: str,
    pages: Sequence[PageText] = (),
    *,
    max_tokens: int = MAX_TOKENS,
    overlap_tokens: int = OVERLAP_TOKENS,
    count_tokens: TokenCounter | None = None,
) -> list[Chunk]:
    if max_tokens < 2 or not 0 <= overlap_tokens < max_tokens // 2:
        raise ValueError("need max_tokens >= 2 and 0 <= overlap_tokens < max_tokens / 2")
    counter = count_tokens or default_token_counter()

    chunks: list[Chunk] = []
    for words in _by_page(text, pages, max_tokens, counter):
        prefix = list(itertools.accumulate(words.tokens, initial=0))
        for first, last in _spans(text, words, prefix, max_tokens, overlap_tokens):
            start, end = words.starts[first], words.ends[last - 1]
            chunks.append(
                Chunk(
                    position=len(chunks),
                    text=text[start:end],
                    token_count=prefix[last] - prefix[first],
                    char_start=start,
                    char_end=end,
                    page=words.page,
                )
            )
    return chunks


def _by_page(text: str, pages: Sequence[PageText], max_tokens: int, counter: TokenCounter) -> list[_Words]:
    """The text's words grouped by page; words before the first page have none. Parallel lists
    and one slice per word: this runs in every ingestion job, over thousands of words."""
    spans = [m.span() for m in _WORD.finditer(text)]
    starts = [s for s, _ in spans]
    ends = [e for _, e in spans]
    words = [text[s:e] for s, e in spans]
    distinct = sorted(set(words))
    counts = dict(zip(distinct, counter(distinct), strict=True))
    tokens = [counts[w] for w in words]

    # A word belongs to the last page starting at or before it (pages in text order; a stable
    # sort keeps the later of two pages that start at the same place last).
    pages = sorted(pages, key=lambda p: p.char_start)
    bounds = [bisect.bisect_left(starts, p.char_start) for p in pages] + [len(starts)]
    ranges: list[tuple[int | None, int, int]] = [(None, 0, bounds[0])]
    ranges += [(p.number, bounds[i], bounds[i + 1]) for i, p in enumerate(pages)]

    groups: list[_Words] = []
    for page, lo, hi in ranges:
        if lo >= hi:
            continue
        group = _Words(page, starts[lo:hi], ends[lo:hi], tokens[lo:hi])
        if max(group.tokens) > max_tokens:
            group = _cut_long_words(text, group, max_tokens, counter)
        groups.append(group)
    return groups


def _cut_long_words(text: str, words: _Words, max_tokens: int, counter: TokenCounter) -> _Words:
    pieces = [
        piece
        for start, end, tokens in zip(words.starts, words.ends, words.tokens, strict=True)
        for piece in ([(start, end, tokens)] if tokens <= max_tokens else _cut(text, start, end, max_tokens, counter))
    ]
    return _Words(words.page, [s for s, _, _ in pieces], [e for _, e, _ in pieces], [n for _, _, n in pieces])


def _cut(text: str, start: int, end: int, max_tokens: int, counter: TokenCounter) -> list[tuple[int, int, int]]:
    """Halve a word longer than a chunk until every piece fits."""
    n = counter([text[start:end]])[0]
    if n <= max_tokens or end - start < 2:
        return [(start, end, n)]
    middle = (start + end) // 2
    return _cut(text, start, middle, max_tokens, counter) + _cut(text, middle, end, max_tokens, counter)


def _spans(text: str, words: _Words, prefix: list[int], max_tokens: int, overlap_tokens: int) -> list[tuple[int, int]]:
    """[first, last) word ranges: greedy up to the budget, ending at a sentence if one is near."""
    count = len(words.tokens)
    spans: list[tuple[int, int]] = []
    first = 0
    while first < count:
        last = bisect.bisect_right(prefix, prefix[first] + max_tokens) - 1
        if last < count:
            last = _nicer_end(text, words, prefix, first, last, max_tokens)
        spans.append((first, last))
        if last >= count:
            break
        # Step back from the end to repeat up to overlap_tokens of context, always moving on.
        nxt = bisect.bisect_left(prefix, prefix[last] - overlap_tokens)
        if prefix[last + 1] - prefix[nxt] > max_tokens:
            nxt = last  # the next word is so long that any overlap would crowd it out
        first = max(nxt, first + 1)
    return spans


def _nicer_end(text: str, words: _Words, prefix: list[int], first: int, last: int, max_tokens: int) -> int:
    """The latest paragraph, else sentence, end in the chunk's second half; else ``last``."""
    floor = prefix[first] + max_tokens // 2
    sentence_end = None
    for end in range(last, first, -1):
        if prefix[end] < floor:
            break
        if "\n\n" in text[words.ends[end - 1] : words.starts[end]]:
            return end
        if sentence_end is None and _SENTENCE_END.search(text[words.starts[end - 1] : words.ends[end - 1]]):
            sentence_end = end
    return sentence_end or last
