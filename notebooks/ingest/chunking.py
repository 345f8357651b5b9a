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
class _Word:
    start: int
    end: int
    tokens: int
    page: int | None


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
    words = _words(text, pages, max_tokens, counter)

    chunks: list[Chunk] = []
    for segment in _by_page(words):
        for first, last in _spans(text, segment, max_tokens, overlap_tokens):
            start, end = segment[first].start, segment[last - 1].end
            chunks.append(
                Chunk(
                    position=len(chunks),
                    text=text[start:end],
                    token_count=sum(w.tokens for w in segment[first:last]),
                    char_start=start,
                    char_end=end,
                    page=segment[first].page,
                )
            )
    return chunks


def _words(text: str, pages: Sequence[PageText], max_tokens: int, counter: TokenCounter) -> list[_Word]:
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    distinct = sorted({text[s:e] for s, e in spans})
    tokens = dict(zip(distinct, counter(distinct), strict=True))
    starts = [p.char_start for p in pages]

    words: list[_Word] = []
    for s, e in spans:
        page = pages[bisect.bisect_right(starts, s) - 1].number if pages and s >= starts[0] else None
        if tokens[text[s:e]] <= max_tokens:
            words.append(_Word(s, e, tokens[text[s:e]], page))
        else:
            words.extend(_Word(ps, pe, n, page) for ps, pe, n in _cut(text, s, e, max_tokens, counter))
    return words


def _cut(text: str, start: int, end: int, max_tokens: int, counter: TokenCounter) -> list[tuple[int, int, int]]:
    """Halve a word longer than a chunk until every piece fits."""
    n = counter([text[start:end]])[0]
    if n <= max_tokens or end - start < 2:
        return [(start, end, n)]
    middle = (start + end) // 2
    return _cut(text, start, middle, max_tokens, counter) + _cut(text, middle, end, max_tokens, counter)


def _by_page(words: list[_Word]) -> list[list[_Word]]:
    segments: list[list[_Word]] = []
    for word in words:
        if segments and segments[-1][-1].page == word.page:
            segments[-1].append(word)
        else:
            segments.append([word])
    return segments


def _spans(text: str, words: list[_Word], max_tokens: int, overlap_tokens: int) -> list[tuple[int, int]]:
    """[first, last) word ranges: greedy up to the budget, ending at a sentence if one is near."""
    prefix = [0]
    for w in words:
        prefix.append(prefix[-1] + w.tokens)

    spans: list[tuple[int, int]] = []
    first = 0
    while first < len(words):
        last = bisect.bisect_right(prefix, prefix[first] + max_tokens) - 1
        if last < len(words):
            last = _nicer_end(text, words, prefix, first, last, max_tokens)
        spans.append((first, last))
        if last >= len(words):
            break
        # Step back from the end to repeat up to overlap_tokens of context, always moving on.
        nxt = bisect.bisect_left(prefix, prefix[last] - overlap_tokens)
        if prefix[last + 1] - prefix[nxt] > max_tokens:
            nxt = last  # the next word is so long that any overlap would crowd it out
        first = max(nxt, first + 1)
    return spans


def _nicer_end(text: str, words: list[_Word], prefix: list[int], first: int, last: int, max_tokens: int) -> int:
    """The latest paragraph, else sentence, end in the chunk's second half; else ``last``."""
    floor = prefix[first] + max_tokens // 2
    sentence_end = None
    for end in range(last, first, -1):
        if prefix[end] < floor:
            break
        gap = text[words[end - 1].end : words[end].start]
        if "\n\n" in gap:
            return end
        if sentence_end is None and _SENTENCE_END.search(text[words[end - 1].start : words[end - 1].end]):
            sentence_end = end
    return sentence_end or last
