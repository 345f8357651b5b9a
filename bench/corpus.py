"""Generated documents for the ingestion scenario: PDF, DOCX and HTML in turn, deterministic.

A document has ``pages`` pages of about ``words_per_page`` words. A PDF page is a real page;
DOCX and HTML have no pages (Quire reports page_count 0 for them), so there a "page" is the
same amount of text, in three paragraphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from notebooks.ingest.samples import make_docx, make_pdf, prose, wrap

KINDS = ("pdf", "docx", "html")
MIME = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "html": "text/html",
    "md": "text/markdown",
}


@dataclass(frozen=True)
class Document:
    name: str
    kind: str
    data: bytes
    pages: int
    words: int


def _paragraphs(text: str, parts: int = 3) -> list[str]:
    words = text.split()
    step = -(-len(words) // parts)
    return [" ".join(words[i : i + step]) for i in range(0, len(words), step)]


def document(index: int, *, pages: int, words_per_page: int) -> Document:
    kind = KINDS[index % len(KINDS)]
    title = f"Bench document {index + 1}"
    texts = [prose(words_per_page, seed=index * 1000 + p) for p in range(pages)]
    if kind == "pdf":
        data = make_pdf([wrap(t) for t in texts], title=title)
    elif kind == "docx":
        data = make_docx([para for t in texts for para in _paragraphs(t)], heading=title)
    else:
        body = "".join(f"<p>{escape(para)}</p>" for t in texts for para in _paragraphs(t))
        data = (
            f"<!doctype html><html><head><title>{title}</title></head><body>"
            f"<nav>Home | Archive | About</nav><article><h1>{title}</h1>{body}</article>"
            "<footer>Generated for Quire's benchmarks</footer></body></html>"
        ).encode()
    words = sum(len(t.split()) for t in texts)
    return Document(name=f"bench-{index + 1:03d}.{kind}", kind=kind, data=data, pages=pages, words=words)


def corpus(docs: int, *, pages: int = 10, words_per_page: int = 300) -> list[Document]:
    return [document(i, pages=pages, words_per_page=words_per_page) for i in range(docs)]


def markdown_file(size: int, salt: str, base: str) -> bytes:
    """A Markdown file of exactly ``size`` bytes whose content differs by ``salt`` (no duplicates)."""
    head = f"# Upload {salt}\n\n".encode()
    body = base.encode()
    data = head + body
    while len(data) < size:
        data += b"\n\n" + body
    return data[:size]
