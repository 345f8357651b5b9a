"""What a file really is, from its bytes and its name, before any parser sees it.

The client's name only says what the file claims to be; the content decides. A claim that the
content contradicts (a PNG named .pdf) is refused as a mismatch rather than guessed around, so a
user learns at upload time, not from a failed job, that the file is not what its name says.

Text rule (``decode_text``): UTF-8 (a BOM is dropped), UTF-16 when it starts with a BOM,
otherwise Windows-1252 (what "ANSI" text editors and most "latin-1" web pages really write; plain
latin-1 would accept every byte and so prove nothing). Whatever decodes must not contain NUL and
may hold control characters other than tab, newline, carriage return, form feed and escape in at
most 1% of its characters; anything else is binary.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from typing import Final, Literal, TypeAlias, get_args

from notebooks.ingest.errors import EmptyFile, ExtractionFailed, TypeMismatch, UnsupportedType
from notebooks.ingest.media import looks_like_media

Kind: TypeAlias = Literal["pdf", "docx", "txt", "md", "html", "audio"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)

# Bytes, or a path to a file on local disk (a str is never taken as a path: it could be text).
Source: TypeAlias = bytes | os.PathLike[str]

EXTENSIONS: Final[dict[str, Kind]] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
}
# Audio and video: "audio" is the kind of both (only the sound is read). The content decides
# here, not the name: a recording named .mp3 that is really a PDF is read as the PDF it is.
MEDIA_EXTENSIONS: Final = frozenset(
    {".mp3", ".wav", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".flac", ".mp4", ".m4v", ".webm", ".mkv", ".mov"}
)
_TEXT_KINDS: Final = frozenset({"txt", "md", "html"})
_SUPPORTED = "Upload a PDF, Word (.docx), plain text, Markdown or HTML file, or an audio or video recording."

# Formats told apart by their first bytes, so a mismatch message can say what the file is.
_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office document (.doc, .xls or .ppt)"),
    (b"\x7fELF", "a program"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"{\\rtf", "an RTF document"),
)
_ZIP_KINDS: Final[tuple[tuple[str, str], ...]] = (
    ("word/document.xml", "docx"),
    ("xl/workbook.xml", "an Excel workbook"),
    ("ppt/presentation.xml", "a PowerPoint presentation"),
    ("content.xml", "an OpenDocument file"),
)
# The start patterns browsers use to sniff HTML (WHATWG MIME sniffing), after an optional XML
# declaration and comments.
_HTML_START = re.compile(
    r"\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*"
    r"<(?:!doctype\s+html|html|head|body|script|iframe|h1|div|font|table|a|style|title|b|br|p|meta)"
    r"(?=[\s>/])",
    re.IGNORECASE | re.DOTALL,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
# The same characters as bytes: in UTF-8 and Windows-1252 each is one byte of the same value and
# no other character contains it, so they can be counted in the bytes (a C loop; the regex over
# the decoded text took a third of a millisecond per 64 KB).
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_MAX_CONTROL_SHARE = 0.01


class NotText(ValueError):
    """Raised by ``decode_text`` for bytes that are not text under the module's rule."""


def read_source(source: Source) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        with open(source, "rb") as fh:
            return fh.read()
    except OSError:
        # The OS error text names the path; the user gets no path.
        raise ExtractionFailed("The file could not be read.") from None


def decode_text(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = _decode(data, "utf-16")
        controls = len(_CONTROL.findall(text))
    elif b"\x00" in data:
        raise NotText("NUL bytes")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = _decode(data, "cp1252")
        controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if text and controls > len(text) * _MAX_CONTROL_SHARE:
        raise NotText("control characters")
    if "\x00" in text:
        raise NotText("NUL characters")
    return text


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise NotText(encoding) from None


def extension_of(filename: str) -> str:
    """``.pdf`` for ``C:\\docs\\Paper.PDF``; ``""`` when the name has none."""
    name = re.split(r"[\\/]", filename)[-1]
    stem, dot, ext = name.rpartition(".")
    return f".{ext.lower()}" if dot and stem else ""


# The type is decided from the first 64 KB: decoding and scanning a whole 50 MB upload in the
# request cost tens of milliseconds per MB. A file that stops decoding further on still fails,
# later and with a reason, when its text is extracted.
SNIFF_BYTES: Final = 64 * 1024


def _head(data: bytes) -> bytes:
    if len(data) <= SNIFF_BYTES:
        return data
    head = data[:SNIFF_BYTES]
    for cut in range(4):  # do not end inside a UTF-8 sequence
        try:
            head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return head[: len(head) - cut]
    return head


def detect_type(source: Source, filename: str) -> Kind:
    """The kind of a file named ``filename`` by its client, or an ``IngestError`` saying why not."""
    data = read_source(source)
    if not data:
        raise EmptyFile()
    ext = extension_of(filename)
    if ext in MEDIA_EXTENSIONS:
        found, description = _sniff(data)
        if found is None:
            raise UnsupportedType(
                f"The file is named {ext} but its content is {description}, not a recording Quire can read."
            )
        kind = found
    elif ext and ext not in EXTENSIONS:
        shown = ext if re.fullmatch(r"\.[a-z0-9]{1,10}", ext) else "this type"
        raise UnsupportedType(f"Files of type {shown} are not supported. {_SUPPORTED}")
    else:
        kind = _kind_for_claim(data, ext)
    if kind in _TEXT_KINDS and len(data) <= SNIFF_BYTES and not decode_text(data).strip():
        raise EmptyFile("The file contains only whitespace.")
    return kind


def _kind_for_claim(data: bytes, ext: str) -> Kind:
    found, description = _sniff(data)
    claimed = EXTENSIONS.get(ext)
    if claimed is None:
        # No extension: the content alone decides (pasted uploads, "README").
        if found is None:
            raise UnsupportedType(f"The file's type could not be recognised ({description}). {_SUPPORTED}")
        kind = found
    elif claimed == found or (claimed in _TEXT_KINDS and found in _TEXT_KINDS):
        # Among text kinds the name wins: Markdown may start with HTML, a .txt may hold markup.
        kind = claimed
    else:
        raise TypeMismatch(f"The file is named {ext} but its content is {description}.")
    return kind


def _sniff(data: bytes) -> tuple[Kind | None, str]:
    """(kind, description) from the content; kind is None for anything Quire does not read."""
    if b"%PDF-" in data[:1024]:
        # Readers accept junk before the header; so do we, within the first kilobyte.
        return "pdf", "a PDF document"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(data)
    if looks_like_media(data):
        return "audio", "an audio or video recording"
    for magic, description in _MAGIC:
        if data.startswith(magic):
            return None, description
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return None, "a WebP image"
    try:
        text = decode_text(_head(data))  # a ZIP's directory is at its end, text needs only its start
    except NotText:
        return None, "binary data"
    if _HTML_START.match(text[:1024]):
        return "html", "an HTML page"
    return "txt", "plain text"


def _sniff_zip(data: bytes) -> tuple[Kind | None, str]:
    try:
        # Only the central directory is read here; nothing is decompressed.
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise ExtractionFailed("The file is a damaged ZIP archive and cannot be read.") from None
    for member, what in _ZIP_KINDS:
        if member in names:
            return ("docx", "a Word document") if what == "docx" else (None, what)
    return None, "a ZIP archive"
