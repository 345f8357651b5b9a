"""Word files: the notes, comments, text boxes and headers that python-docx's body API skips."""

from pathlib import Path

from notebooks.ingest.extract import extract
from notebooks.tests.ingest import docx_notes

FILES = Path(__file__).parent / "files"


def test_footnotes_endnotes_comments_text_boxes_and_headers_are_kept_and_labelled() -> None:
    result = extract(docx_notes.tundra_docx(), "docx")
    paragraphs = result.text.split("\n\n")
    assert f"Footnote 1: {docx_notes.FOOTNOTES[0]}" in paragraphs
    assert f"Footnote 2: {docx_notes.FOOTNOTES[1]}" in paragraphs
    assert f"Endnote 1: {docx_notes.ENDNOTE}" in paragraphs
    assert f"Comment 1 (Reviewer Two): {docx_notes.COMMENT}" in paragraphs
    assert f"Text box: {docx_notes.TEXT_BOX}" in paragraphs
    assert "Header: Arctic Ecology Working Paper, draft for the field team" in paragraphs
    # Separators are not notes, a bare page label is not content, and the body comes first.
    assert "Page 1" not in result.text
    assert paragraphs[1] == "Lichen cover fell by a third between the two surveys."
    assert result.text.count(docx_notes.TEXT_BOX) == 1
    # The metadata title is Word's placeholder, so the heading titles the document.
    assert result.title == "Lichen cover on the Arctic tundra"


def test_python_docxs_own_comments_file_has_its_comments_with_authors() -> None:
    result = extract((FILES / "comments-rich-para.docx").read_bytes(), "docx")
    assert "Comment 1 (Steve Canny): Text with hyperlink https://google.com embedded." in result.text
    assert "Comment 4: Paragraph with Heading 2 paragraph style." in result.text


def test_headers_that_say_something_are_kept_once_and_short_labels_dropped() -> None:
    result = extract((FILES / "sct-first-page-hdrftr.docx").read_bytes(), "docx")
    assert result.text.endswith("Header: Default (odd, primary) Header\n\nHeader: First Page Header (section 2)")
    # Sections that inherit their header repeat it in the package; it is kept once.
    inherited = extract((FILES / "hdr-header-footer.docx").read_bytes(), "docx")
    assert inherited.text.split("\n\n")[2:] == ["Header: Header for section-1", "Footer: Footer for section 1"]
