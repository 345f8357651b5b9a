import itertools
import re

import pytest

from notebooks.ingest import minilm, samples
from notebooks.ingest.chunking import Chunk, approximate_token_counts, chunk_text, default_token_counter
from notebooks.ingest.errors import EmbedderUnavailable
from notebooks.ingest.extract import Extracted, PageText, extract


@pytest.fixture(scope="module")
def pdf() -> Extracted:
    pages = [samples.wrap(samples.prose(420, seed=page)) for page in range(4)]
    return extract(samples.make_pdf(pages), "pdf")


def _real_count(text: str) -> int:
    return len(minilm.load_tokenizer().encode(text, add_special_tokens=False).ids)


def _assert_whole_words(text: str, chunks: list[Chunk]) -> None:
    for chunk in chunks:
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert chunk.char_start == 0 or text[chunk.char_start - 1].isspace()
        assert chunk.char_end == len(text) or text[chunk.char_end].isspace()


def test_it_keeps_chunks_within_the_model_window(pdf: Extracted) -> None:
    chunks = chunk_text(pdf.text, pdf.pages)

    assert len(chunks) >= 8
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert 0 < chunk.token_count <= 254
        # The count is the real tokenizer's, so [CLS] + chunk + [SEP] fits 256 exactly.
        assert chunk.token_count == _real_count(chunk.text)


def test_it_slices_whole_words_out_of_the_text(pdf: Extracted) -> None:
    _assert_whole_words(pdf.text, chunk_text(pdf.text, pdf.pages))


def test_it_covers_every_word_and_overlaps_neighbours(pdf: Extracted) -> None:
    chunks = chunk_text(pdf.text, pdf.pages, overlap_tokens=32)

    covered: set[int] = set()
    for chunk in chunks:
        covered.update(m.start() + chunk.char_start for m in re.finditer(r"\S+", chunk.text))
    assert covered == {m.start() for m in re.finditer(r"\S+", pdf.text)}
    same_page = [(a, b) for a, b in itertools.pairwise(chunks) if a.page == b.page]
    assert same_page
    for a, b in same_page:
        assert b.char_start < a.char_end  # overlap
        assert b.char_start > a.char_start  # progress
        assert _real_count(pdf.text[b.char_start : a.char_end]) <= 32


def test_it_gives_each_chunk_the_page_it_is_on(pdf: Extracted) -> None:
    chunks = chunk_text(pdf.text, pdf.pages)

    assert {c.page for c in chunks} == {1, 2, 3, 4}
    for chunk in chunks:
        page = pdf.pages[chunk.page - 1]  # type: ignore[operator]
        assert page.char_start <= chunk.char_start and chunk.char_end <= page.char_start + len(page.text)


def test_a_word_is_on_the_last_page_starting_before_it_in_any_page_order() -> None:
    text = "preface here\n\nalpha beta\n\ngamma delta"
    pages = [PageText(2, "gamma delta", 26), PageText(1, "alpha beta", 14)]  # listed out of order
    got = [(c.text, c.page) for c in chunk_text(text, pages)]
    assert got == [("preface here", None), ("alpha beta", 1), ("gamma delta", 2)]


def test_it_prefers_to_end_chunks_at_sentences(pdf: Extracted) -> None:
    chunks = chunk_text(pdf.text, pdf.pages)
    inner = [c for c, nxt in itertools.pairwise(chunks) if c.page == nxt.page]
    assert all(c.text[-1] in ".!?" for c in inner)


def test_it_is_deterministic(pdf: Extracted) -> None:
    assert chunk_text(pdf.text, pdf.pages) == chunk_text(pdf.text, pdf.pages)


def test_it_chunks_text_without_pages() -> None:
    text = samples.prose(900, seed=7)
    chunks = chunk_text(text, max_tokens=100, overlap_tokens=10)
    assert len(chunks) > 5
    assert all(c.page is None and c.token_count <= 100 for c in chunks)
    _assert_whole_words(text, chunks)


def test_it_returns_nothing_for_blank_text() -> None:
    assert chunk_text("  \n\n ") == []


def test_it_returns_one_chunk_for_short_text() -> None:
    (chunk,) = chunk_text("  A short note.  ")
    assert (chunk.text, chunk.char_start, chunk.char_end, chunk.token_count) == ("A short note.", 2, 15, 4)


def test_it_cuts_a_word_longer_than_a_chunk() -> None:
    blob = "x9Qz" * 400
    text = f"Before the blob. {blob} After the blob."
    chunks = chunk_text(text, max_tokens=64, overlap_tokens=8)
    assert all(c.token_count <= 64 for c in chunks)
    covered = set().union(*(range(c.char_start, c.char_end) for c in chunks))
    assert covered >= set(range(text.index(blob), text.index(blob) + len(blob)))
    assert chunks[0].text.startswith("Before") and chunks[-1].text.endswith("After the blob.")


def test_it_works_with_the_approximate_counter(pdf: Extracted) -> None:
    chunks = chunk_text(pdf.text, pdf.pages, count_tokens=approximate_token_counts)
    _assert_whole_words(pdf.text, chunks)
    for chunk in chunks:
        # The estimate errs high, so real counts stay inside the window.
        assert _real_count(chunk.text) <= chunk.token_count <= 254


def test_it_rejects_an_overlap_as_large_as_half_a_chunk() -> None:
    with pytest.raises(ValueError):
        chunk_text("words", max_tokens=64, overlap_tokens=32)


def test_it_falls_back_to_the_estimate_without_the_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise EmbedderUnavailable("The embedding model is not installed.")

    monkeypatch.setattr(minilm, "_counting_tokenizer", missing)
    assert default_token_counter() is approximate_token_counts
