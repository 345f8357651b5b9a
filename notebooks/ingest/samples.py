"""Real documents built in memory, for tests and ``measure``: nothing is read from disk or fetched.

The PDF is written by hand (pypdf can copy and encrypt PDFs but not typeset text): one Helvetica
text object per page, so pypdf extracts exactly the lines given.
"""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Sequence

import docx
from pypdf import PdfReader, PdfWriter

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no "
    "research notebook source chunk model search report citation evidence method result data "
    "analysis protein climate ocean river market energy policy theory history language memory "
    "network signal experiment sample measure observe compare explain describe predict increase "
    "decrease temperature pressure population economy government student teacher library archive "
    "journal article chapter figure table section abstract introduction conclusion discussion "
    "internationalisation photosynthesis electromagnetic thermodynamics epistemology"
).split()


def make_pdf(pages: Sequence[Sequence[str]], *, title: str | None = None) -> bytes:
    """A PDF with one page per item, each item a list of lines (keep lines under ~90 chars)."""
    objects: list[bytes] = []  # object n is objects[n - 1]
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = b" ".join(b"%d 0 R" % n for n in page_ids)
    objects.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for page_id, lines in zip(page_ids, pages, strict=True):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        body = (
            b"BT /F1 11 Tf 14 TL 56 740 Td " + b" ".join(b"(%s) Tj T*" % _pdf_string(line) for line in lines) + b" ET"
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(body), body))
    info = None
    if title is not None:
        objects.append(b"<< /Title (%s) >>" % _pdf_string(title))
        info = len(objects)

    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.writelines(b"%010d 00000 n \n" % offset for offset in offsets)
    trailer = b"/Size %d /Root 1 0 R" % (len(objects) + 1)
    if info is not None:
        trailer += b" /Info %d 0 R" % info
    out.write(b"trailer\n<< %s >>\nstartxref\n%d\n%%%%EOF\n" % (trailer, xref))
    return out.getvalue()


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def encrypt_pdf(data: bytes, *, user_password: str, owner_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(paragraphs: Sequence[str], *, heading: str | None = None, table: Sequence[Sequence[str]] = ()) -> bytes:
    document = docx.Document()
    if heading is not None:
        document.add_heading(heading, level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_docx_bomb(*, inflated_mb: int = 300) -> bytes:
    """A valid-looking DOCX whose document.xml inflates to ``inflated_mb`` MB of zeros."""
    base = zipfile.ZipFile(io.BytesIO(make_docx(["bait"])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in base.infolist():
            if item.filename != "word/document.xml":
                bomb.writestr(item, base.read(item))
        with bomb.open("word/document.xml", "w", force_zip64=True) as member:
            chunk = b"0" * (1024 * 1024)
            for _ in range(inflated_mb):
                member.write(chunk)
    return out.getvalue()


def prose(words: int, *, seed: int = 0) -> str:
    """Deterministic sentence-shaped filler text of about ``words`` words."""
    rng = random.Random(seed)
    sentences = []
    count = 0
    while count < words:
        length = rng.randint(6, 18)
        sentence = " ".join(rng.choice(_WORDS) for _ in range(length))
        sentences.append(sentence[0].upper() + sentence[1:] + rng.choice(".....?!"))
        count += length
    return " ".join(sentences)


def wrap(text: str, width: int = 90) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines
