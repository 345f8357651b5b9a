from pathlib import Path

import pytest

from notebooks.ingest import samples
from notebooks.ingest.errors import IngestError
from notebooks.ingest.extract import extract, extracted_from_text, markdown_title

PAGES = [
    ["The mitochondria is the powerhouse of the cell.", "Energy flows through it (mostly)."],
    ["Photosynthesis turns light into chemical energy.", "Plants do it every day."],
    ["Rivers carry sediment to the ocean."],
]


def _error(data: bytes, kind: str, **kwargs: int) -> IngestError:
    with pytest.raises(IngestError) as caught:
        extract(data, kind, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_it_extracts_pdf_text_page_by_page() -> None:
    result = extract(samples.make_pdf(PAGES, title="Cell Biology Notes"), "pdf")

    assert result.page_count == 3
    assert [p.number for p in result.pages] == [1, 2, 3]
    assert "Photosynthesis turns light into chemical energy." in result.pages[1].text
    assert "Energy flows through it (mostly)." in result.text
    for page in result.pages:
        assert result.text[page.char_start : page.char_start + len(page.text)] == page.text
    assert result.title == "Cell Biology Notes"
    assert result.word_count == len(result.text.split())


def test_it_extracts_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "paper.pdf"
    path.write_bytes(samples.make_pdf(PAGES))
    assert "Rivers carry sediment" in extract(path, "pdf").text


def test_it_keeps_blank_pages_so_numbers_stay_right() -> None:
    result = extract(samples.make_pdf([["First page."], [], ["Third page."]]), "pdf")
    assert [(p.number, p.text) for p in result.pages] == [(1, "First page."), (2, ""), (3, "Third page.")]


def test_it_refuses_a_password_protected_pdf() -> None:
    error = _error(samples.encrypt_pdf(samples.make_pdf(PAGES), user_password="s3cret", owner_password="owner"), "pdf")
    assert error.code == "ENCRYPTED_PDF"
    assert "password" in error.message


def test_it_opens_a_pdf_encrypted_only_against_copying() -> None:
    result = extract(samples.encrypt_pdf(samples.make_pdf(PAGES), user_password="", owner_password="owner"), "pdf")
    assert "Rivers carry sediment to the ocean." in result.text


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.4\n garbage that is not a pdf", samples.make_pdf(PAGES)[:200], b"%PDF-" + bytes(range(256)) * 8],
)
def test_it_reports_a_corrupt_pdf_without_internals(data: bytes) -> None:
    error = _error(data, "pdf")
    assert error.code == "EXTRACTION_FAILED"
    assert "Traceback" not in error.message and "/" not in error.message


def test_it_caps_the_page_count() -> None:
    error = _error(samples.make_pdf([["x"]] * 5), "pdf", max_pages=4)
    assert error.code == "TOO_LARGE"
    assert "5 pages" in error.message


def test_it_says_when_a_pdf_has_no_text_layer() -> None:
    assert _error(samples.make_pdf([[], []]), "pdf").code == "NO_TEXT"


def test_it_extracts_docx_paragraphs_tables_and_title() -> None:
    data = samples.make_docx(
        ["The first paragraph talks about climate.", "The second one about oceans."],
        heading="Ocean Report",
        table=[["Region", "Depth"], ["Pacific", "4000 m"]],
    )
    result = extract(data, "docx")

    assert result.title == "Ocean Report"
    assert "The first paragraph talks about climate." in result.text
    assert "The second one about oceans." in result.text
    assert "Pacific | 4000 m" in result.text
    assert result.pages == [] and result.page_count == 0


def test_it_refuses_a_docx_zip_bomb_before_inflating_it() -> None:
    error = _error(samples.make_docx_bomb(inflated_mb=300), "docx")
    assert error.code == "TOO_LARGE"


def test_it_refuses_a_docx_with_a_suspicious_compression_ratio() -> None:
    # 20 MB is under the total limit; the ratio (about 1000:1) gives it away.
    error = _error(samples.make_docx_bomb(inflated_mb=20), "docx")
    assert error.code == "TOO_LARGE"
    assert "zip bomb" in error.message


def test_it_reports_a_broken_docx() -> None:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", "<not-closed")
    assert _error(out.getvalue(), "docx").code == "EXTRACTION_FAILED"


def test_it_keeps_markdown_as_text_and_titles_it_by_the_first_heading() -> None:
    data = b"Intro line.\r\n\r\n## Background\r\n\r\n# Real Title\r\n\r\nSome *emphasis* here.\r\n"
    result = extract(data, "md")
    assert result.title == "Real Title"
    assert "Some *emphasis* here." in result.text
    assert "\r" not in result.text


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ('---\ntitle: "From Front Matter"\n---\n# Heading\n', "From Front Matter"),
        ("Setext Title\n============\n\nbody\n", "Setext Title"),
        ("### Only a small heading\n", "Only a small heading"),
        ("no heading at all\n", None),
        ("#not a heading\n", None),
    ],
)
def test_it_finds_markdown_titles(text: str, title: str | None) -> None:
    assert markdown_title(text) == title


def test_it_extracts_plain_text_in_windows_1252() -> None:
    result = extract("Caf\u00e9 \u201cquoted\u201d text.".encode("cp1252"), "txt")
    assert result.text == "Café “quoted” text."
    assert result.title is None


def test_it_extracts_the_article_from_html() -> None:
    body = " ".join(
        f"<p>Paragraph {i} explains how coral reefs respond to warming oceans and acidification.</p>" for i in range(12)
    )
    html = (
        "<!doctype html><html><head><title>Coral Reefs</title><script>var tracking = 1;</script>"
        "<style>p { color: red }</style></head><body><nav><a href='/'>Home</a></nav>"
        f"<article><h1>Coral reefs under stress</h1>{body}</article><footer>Copyright</footer></body></html>"
    )
    result = extract(html.encode(), "html")
    assert result.title == "Coral reefs under stress"  # the headline, not the tab
    assert "Paragraph 7 explains how coral reefs respond to warming oceans" in result.text
    assert "tracking" not in result.text and "color: red" not in result.text


def test_it_falls_back_to_beautifulsoup_for_pages_trafilatura_skips() -> None:
    html = b"<html><body><script>x()</script><div>Tiny page.</div><ul><li>One item</li></ul></body></html>"
    result = extract(html, "html")
    assert "Tiny page." in result.text and "One item" in result.text
    assert "x()" not in result.text


def test_it_says_when_html_has_no_text() -> None:
    assert _error(b"<html><body><script>only()</script></body></html>", "html").code == "NO_TEXT"


def test_it_builds_a_result_for_pasted_text() -> None:
    result = extracted_from_text("  Pasted   words here.\r\n\r\n\r\n\r\nMore.  ", title="Clip")
    assert result.text == "Pasted   words here.\n\nMore."
    assert (result.title, result.word_count, result.pages) == ("Clip", 4, [])
