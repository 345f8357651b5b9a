"""Text out of a file whose kind ``filetypes.detect_type`` has established.

``Extracted.text`` is the one string every later offset points into: chunk offsets, page starts
and citations all slice it. Pages exist only for PDFs (Word files do not store where their pages
break, HTML and text have none), so every other kind has ``pages == []`` and ``page_count == 0``.
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import docx
import trafilatura
from bs4 import BeautifulSoup
from docx.document import Document
from docx.table import Table
from lxml import etree
from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

from notebooks.ingest.errors import EncryptedPdf, ExtractionFailed, IngestError, NoText, TooLarge
from notebooks.ingest.filetypes import Kind, NotText, Source, decode_text, read_source

logger = logging.getLogger(__name__)

MAX_PAGES: Final = 2000
# Limits on a DOCX's zip members, checked before python-docx inflates anything. Word's own XML
# compresses about 5-20x; a ratio of 100 on a member of a megabyte or more is a bomb, not prose.
MAX_DOCX_UNCOMPRESSED: Final = 200 * 1024 * 1024
MAX_DOCX_RATIO: Final = 100
MAX_DOCX_MEMBERS: Final = 5000
_RATIO_CHECK_FROM: Final = 1024 * 1024
PAGE_SEPARATOR: Final = "\n\n"


@dataclass(frozen=True)
class PageText:
    number: int  # 1-based, as a reader would cite it
    text: str
    char_start: int  # where this page's text starts in Extracted.text


@dataclass(frozen=True)
class Extracted:
    text: str
    pages: list[PageText]
    title: str | None
    word_count: int
    page_count: int
    site: str = ""  # the web site's name, kept apart from the title (HTML only)
    extractor: str = ""  # what produced the text, shown on the source


def extract(source: Source, kind: Kind, *, max_pages: int = MAX_PAGES) -> Extracted:
    """Extract ``source`` as ``kind``; raises an ``IngestError`` (never anything else) on failure."""
    data = read_source(source)
    try:
        result = _EXTRACTORS[kind](data, max_pages)
    except IngestError:
        raise
    except RecursionError:
        # Deeply nested objects are a classic parser attack; the message stays generic.
        raise ExtractionFailed("The file's structure is too deeply nested to read.") from None
    except Exception:
        # Parsers raise anything on hostile input. The traceback goes to the log, not the user.
        logger.warning("extraction of a %s file failed", kind, exc_info=True)
        raise ExtractionFailed(f"The {_LABELS[kind]} could not be read; it may be damaged.") from None
    if not result.text.strip():
        raise NoText(_NO_TEXT[kind])
    return result


def extracted_from_text(text: str, *, title: str | None = None, kind: Kind = "txt") -> Extracted:
    """The result for text that never was a file (pasted text), normalised like a file's."""
    text = normalise(text)
    if title is None and kind == "md":
        title = markdown_title(text)
    elif title is None and kind == "txt":
        title = plain_title(text)
    extractor = "markdown" if kind == "md" else "text"
    return Extracted(text=text, pages=[], title=title, word_count=len(text.split()), page_count=0, extractor=extractor)


_LABELS: Final[dict[Kind, str]] = {
    "pdf": "PDF",
    "docx": "Word document",
    "txt": "text file",
    "md": "Markdown file",
    "html": "HTML page",
}
_NO_TEXT: Final[dict[Kind, str]] = {
    "pdf": "The PDF has no text layer (is it a scanned image?); no text could be extracted.",
    "docx": "The Word document contains no text.",
    "txt": "The file contains no text.",
    "md": "The file contains no text.",
    "html": "No readable text was found in the HTML page.",
}


# --- text normalisation -------------------------------------------------------------------

_LINE_BREAKS = re.compile(r"\r\n?|[\u2028\u2029\x85\x0b\x0c]")
_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalise(text: str) -> str:
    """One newline convention, no trailing spaces, at most one blank line in a row.

    Unicode line separators become newlines so that every line break is also whitespace to the
    tokenizer (the chunker relies on whitespace to find word boundaries).
    """
    text = _LINE_BREAKS.sub("\n", text.replace("\x00", ""))
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


# --- PDF ----------------------------------------------------------------------------------


def _extract_pdf(data: bytes, max_pages: int) -> Extracted:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            _decrypt(reader)
        page_count = len(reader.pages)
    except IngestError:
        raise
    except (DependencyError, FileNotDecryptedError):
        raise EncryptedPdf(_ENCRYPTED) from None
    except LimitReachedError:
        raise TooLarge("The PDF expands past the size limit for extraction.") from None
    if page_count > max_pages:
        raise TooLarge(f"The PDF has {page_count} pages; at most {max_pages} can be processed.")

    texts: list[str] = []
    failed = 0
    for index, page in enumerate(reader.pages):
        try:
            texts.append(normalise(page.extract_text()))
        except LimitReachedError:
            raise TooLarge("A page of the PDF expands past the size limit for extraction.") from None
        except Exception:
            # One unreadable page should not cost the user the rest of the document.
            logger.warning("could not extract page %s of a PDF", index + 1, exc_info=True)
            failed += 1
            texts.append("")
    if page_count and failed == page_count:
        raise ExtractionFailed("No page of the PDF could be read; it may be damaged.")

    pages: list[PageText] = []
    offset = 0
    for number, page_text in enumerate(texts, start=1):
        pages.append(PageText(number=number, text=page_text, char_start=offset))
        offset += len(page_text) + len(PAGE_SEPARATOR)
    text = PAGE_SEPARATOR.join(texts)
    return Extracted(
        text=text,
        pages=pages,
        title=_pdf_title(reader),
        word_count=len(text.split()),
        page_count=page_count,
        extractor="pypdf",
    )


_ENCRYPTED = "The PDF is password-protected; remove the password and upload it again."


def _decrypt(reader: PdfReader) -> None:
    # Many PDFs are encrypted only to restrict printing or copying, with an empty user password;
    # any viewer opens those, so Quire does too.
    if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise EncryptedPdf(_ENCRYPTED)


def _pdf_title(reader: PdfReader) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:
        return None
    return meaningful_title(title)


# --- DOCX ---------------------------------------------------------------------------------


def _check_zip(data: bytes) -> None:
    """Refuse a zip bomb from its central directory, before anything is inflated.

    The declared sizes are trustworthy enough: Python's zipfile stops a member at its declared
    size and fails the CRC check, so a member that lies cannot expand further than it says.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
    if len(members) > MAX_DOCX_MEMBERS:
        raise TooLarge(f"The Word document has too many parts ({len(members)}).")
    total = sum(m.file_size for m in members)
    if total > MAX_DOCX_UNCOMPRESSED:
        raise TooLarge(
            f"The Word document expands to {total // (1024 * 1024)} MB; "
            f"at most {MAX_DOCX_UNCOMPRESSED // (1024 * 1024)} MB can be processed."
        )
    for m in members:
        if m.file_size >= _RATIO_CHECK_FROM and m.file_size > MAX_DOCX_RATIO * max(m.compress_size, 1):
            raise TooLarge("The Word document is compressed suspiciously well (a zip bomb?) and was refused.")


def _extract_docx(data: bytes, max_pages: int) -> Extracted:
    try:
        _check_zip(data)
    except zipfile.BadZipFile:
        raise ExtractionFailed("The Word document is damaged and cannot be read.") from None
    document = docx.Document(io.BytesIO(data))
    blocks = [block for block in _docx_blocks(document) if block]
    blocks.extend(_docx_extras(document))
    text = normalise("\n\n".join(blocks))
    title = meaningful_title(document.core_properties.title) or _docx_heading(document)
    return Extracted(
        text=text, pages=[], title=title, word_count=len(text.split()), page_count=0, extractor="python-docx"
    )


def _docx_blocks(document: Document) -> Iterator[str]:
    """Paragraphs and tables in reading order (tables as one line per row, cells by " | ")."""
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells = [" ".join(cell.text.split()) for cell in row.cells]
                # Merged cells repeat the same cell object along the row.
                unique = [c for i, c in enumerate(cells) if c and (i == 0 or c != cells[i - 1])]
                yield " | ".join(unique)
        else:
            yield block.text.strip()


# Word keeps notes, comments and headers in parts of their own, which python-docx's body API
# does not read. Each note becomes its own paragraph after the body, led by a label a reader
# can cite ("Footnote 3: …"), so search hits and report citations say where the text came from.
_W: Final = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_CT: Final = "application/vnd.openxmlformats-officedocument.wordprocessingml."
_NOTE_PARTS: Final = (("footnotes+xml", "footnote", "Footnote"), ("endnotes+xml", "endnote", "Endnote"))
# A header or footer is kept only when it says something: a page number, a date or a one-word
# label repeated on every page is not prose (and would otherwise match every search).
_HDRFTR_MIN_WORDS: Final = 3
_XML_PARSER: Final = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _docx_extras(document: Document) -> Iterator[str]:
    """Text boxes, footnotes, endnotes, comments and contentful headers/footers, labelled."""
    body = document.element.body
    seen_boxes: set[str] = set()
    for box in body.iter(f"{_W}txbxContent"):
        # A text box is written twice (DrawingML and its VML fallback); keep it once.
        text = _xml_paragraphs(box)
        if text and text not in seen_boxes:
            seen_boxes.add(text)
            yield f"Text box: {text}"
    parts: dict[str, list[Any]] = {}
    for rel in document.part.rels.values():
        if not rel.is_external:
            parts.setdefault(rel.target_part.content_type, []).append(rel.target_part)
    for suffix, tag, label in _NOTE_PARTS:
        for part in parts.get(_CT + suffix, []):
            number = 0
            for note in _parse(part.blob).iter(f"{_W}{tag}"):
                if note.get(f"{_W}type") in ("separator", "continuationSeparator", "continuationNotice"):
                    continue
                number += 1
                text = _xml_paragraphs(note)
                if text:
                    yield f"{label} {number}: {text}"
    for part in parts.get(_CT + "comments+xml", []):
        for number, comment in enumerate(_parse(part.blob).iter(f"{_W}comment"), start=1):
            text = _xml_paragraphs(comment)
            author = " ".join(str(comment.get(f"{_W}author") or "").split())
            if text:
                yield f"Comment {number}" + (f" ({author})" if author else "") + f": {text}"
    seen: set[str] = set()
    for suffix, label in (("header+xml", "Header"), ("footer+xml", "Footer")):
        for part in _section_parts(document, parts.get(_CT + suffix, [])):
            text = _xml_paragraphs(_parse(part.blob))
            words = [w for w in text.split() if any(ch.isalpha() for ch in w)]
            if len(words) >= _HDRFTR_MIN_WORDS and text not in seen:
                seen.add(text)
                yield f"{label}: {text}"


def _section_parts(document: Document, parts: list[Any]) -> list[Any]:
    # In partname order (header1, header2, …), which is the order Word wrote them in.
    return sorted(parts, key=lambda part: str(part.partname))


def _parse(blob: bytes) -> Any:
    return etree.fromstring(blob, parser=_XML_PARSER)


def _xml_paragraphs(element: Any) -> str:
    """The text of the ``w:p`` paragraphs under ``element``, one space between paragraphs."""
    paragraphs = []
    for paragraph in element.iter(f"{_W}p"):
        pieces = []
        for node in paragraph.iter(f"{_W}t", f"{_W}tab", f"{_W}br"):
            pieces.append(node.text or "" if node.tag == f"{_W}t" else " ")
        text = " ".join("".join(pieces).split())
        if text:
            paragraphs.append(text)
    return " ".join(paragraphs)


def _docx_heading(document: Document) -> str | None:
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        if style and (style == "Title" or style.startswith("Heading")) and paragraph.text.strip():
            return paragraph.text.strip()
    return None


# --- plain text and Markdown --------------------------------------------------------------

_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_SETEXT_HEADING = re.compile(r"^ {0,3}(\S[^\n]*)\n {0,3}(=+|-+)[ \t]*$", re.MULTILINE)
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n(?:---|\.\.\.)\n", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(['\"]?)(.+?)\1[ \t]*$", re.MULTILINE)


def markdown_title(text: str) -> str | None:
    """The front-matter title, else the first level-1 heading, else the first heading of any level."""
    front = _FRONT_MATTER.match(text)
    if front:
        found = _FRONT_MATTER_TITLE.search(front.group(1))
        if found:
            return found.group(2).strip()
        text = text[front.end() :]
    headings: list[tuple[int, int, str]] = []  # (position, level, text)
    for m in _ATX_HEADING.finditer(text):
        headings.append((m.start(), len(m.group(1)), m.group(2)))
    for m in _SETEXT_HEADING.finditer(text):
        if not m.group(1).lstrip().startswith(("#", "-", "*", ">", "|")):
            headings.append((m.start(), 1 if m.group(2)[0] == "=" else 2, m.group(1)))
    headings.sort()
    best = next((h for h in headings if h[1] == 1), headings[0] if headings else None)
    return best[2].strip() if best else None


def _extract_plain(data: bytes, max_pages: int) -> Extracted:
    return extracted_from_text(_decode_or_fail(data), kind="txt")


def _extract_markdown(data: bytes, max_pages: int) -> Extracted:
    # Kept as Markdown: the markup is light, reads fine in citations, and its headings help chunks.
    return extracted_from_text(_decode_or_fail(data), kind="md")


def _decode_or_fail(data: bytes) -> str:
    try:
        return decode_text(data)
    except NotText:
        raise ExtractionFailed("The file is not readable text (unknown encoding or binary data).") from None


# --- HTML ---------------------------------------------------------------------------------


def _extract_html(data: bytes, max_pages: int) -> Extracted:
    html = _decode_or_fail(data)
    # trafilatura finds the main content and drops navigation; it never fetches anything when
    # handed a document. It returns None for pages it judges to have no article (short pages,
    # link lists); those still have text a user meant to keep, so BeautifulSoup takes over.
    main = trafilatura.extract(
        html, output_format="txt", include_comments=False, include_tables=True, favor_recall=True
    )
    text, extractor = (normalise(main), "trafilatura") if main else (_html_text(html), "full-text")
    # One parse serves the title and then (it drops tags) the fallback's check: ~8 ms a page.
    soup = BeautifulSoup(html, "lxml")
    named = _soup_title(soup)
    if main:
        # trafilatura sometimes throws the article away with the boilerplate (an article body
        # whose class says "comments", a page built of unusual containers) and keeps a teaser.
        # The page's own prose paragraphs say how much article there was to keep.
        block = _densest_block(soup)
        block_words = len(block.split())
        if block_words >= HTML_FALLBACK_MIN_WORDS and len(text.split()) < HTML_PLAUSIBLE_SHARE * block_words:
            text, extractor = block, "densest-block"
    return Extracted(
        text=text,
        pages=[],
        title=named.title,
        site=named.site,
        word_count=len(text.split()),
        page_count=0,
        extractor=extractor,
    )


_HTML_DROP: Final = ("script", "style", "noscript", "template", "svg", "head", "iframe", "object")
# The fallback applies when trafilatura keeps less than half the words of the page's densest
# block of prose paragraphs, and only when that block is an article's worth (a short page's
# stub is all there is).
HTML_PLAUSIBLE_SHARE: Final = 0.5
HTML_FALLBACK_MIN_WORDS: Final = 150
_PROSE_MIN_WORDS: Final = 12  # a <p> shorter than this is a caption, a byline or a link label


def _html_text(html: str) -> str:
    soup = BeautifulSoup(html, "lxml")
    for tag in soup(list(_HTML_DROP)):
        tag.decompose()
    lines = (" ".join(line.split()) for line in soup.get_text("\n").splitlines())
    return normalise("\n".join(line for line in lines if line))


def _densest_block(soup: BeautifulSoup) -> str:
    """The prose of the element whose child paragraphs hold the most words of prose, with its
    headings; empty when the page has no paragraph of prose. Drops scripts and such from ``soup``."""
    for tag in soup(list(_HTML_DROP)):
        tag.decompose()
    words: dict[int, int] = {}
    parents: dict[int, Any] = {}
    for paragraph in soup.find_all("p"):
        count = len(paragraph.get_text(" ").split())
        if count >= _PROSE_MIN_WORDS and paragraph.parent is not None:
            key = id(paragraph.parent)
            parents[key] = paragraph.parent
            words[key] = words.get(key, 0) + count
    if not words:
        return ""
    block = parents[max(words, key=lambda key: words[key])]
    pieces = [
        " ".join(element.get_text(" ").split())
        for element in block.find_all(["h1", "h2", "h3", "h4", "p", "li", "blockquote"])
        if element.find_parent(["p", "li", "blockquote"]) is None
    ]
    return normalise("\n\n".join(piece for piece in pieces if piece))


# --- titles -------------------------------------------------------------------------------

TITLE_WORDS_MAX: Final = 25
# Separators sites put between an article's title and their own name: "Title | Site",
# "Title - BBC News", "Site: Title" is too ambiguous (titles have colons) and is left alone.
_TITLE_SEPARATORS = re.compile(r"\s+(?:\||-|\u2013|\u2014|·|::|»|«|\u203a|•)\s+")
# Titles an authoring tool writes by itself: the document's real title is elsewhere or nowhere.
_PLACEHOLDER_TITLE = re.compile(
    r"^(?:(?:microsoft\s+)?(?:word|powerpoint|excel)\s*-\s*.*"
    r"|untitled(?:\s+document)?(?:\s*\d+)?|document\s*\d*|title|no title|presentation\s*\d*"
    r"|.*\.(?:docx?|pdf|rtf|odt|txt|md|html?|tex|indd|pages)"
    r"|\S*_\S*|[a-z]+\d+)$",
    re.IGNORECASE,
)


def _clean_title(title: object) -> str:
    return " ".join(str(title or "").split())


def meaningful_title(title: object) -> str | None:
    """``title`` unless it is a tool's placeholder ("Microsoft Word - draft3.docx", "Untitled",
    a file name such as ``report_v2`` or ``scan0042``); None then, so a better guess is used."""
    cleaned = _clean_title(title)
    if not cleaned or _PLACEHOLDER_TITLE.match(cleaned):
        return None
    return cleaned


def plain_title(text: str) -> str | None:
    """A text file's first line when it reads as a title: short, not a sentence (no final
    period), and followed by a blank line (or nothing). Otherwise None: the file name is better
    than a title made of half a paragraph."""
    lines = text.lstrip("\n").split("\n", 2)
    first = lines[0].strip()
    if not first or (len(lines) > 1 and lines[1].strip()):
        return None
    heading = re.match(r"^#{1,6}\s+(.+?)[\s#]*$", first)
    if heading:
        return heading.group(1).strip() or None
    words = first.split()
    if len(words) > TITLE_WORDS_MAX or len(first) > 200 or first[-1] in ".,;:":
        return None
    if not any(ch.isalpha() for ch in first):
        return None
    return first


@dataclass(frozen=True)
class PageTitle:
    title: str | None
    site: str


def html_title(html: str) -> PageTitle:
    """The article's own title and the site's name, from what the page says about itself.

    The article's headline is in og:title / twitter:title / a JSON-LD ``headline`` or, failing
    those, the one ``<h1>`` of the article; the browser tab's ``<title>`` is the last resort
    because sites append their name to it ("… - BBC News"). Whichever is chosen loses a leading
    or trailing segment that is the site's name, and that name is kept as ``site``.
    """
    return _soup_title(BeautifulSoup(html, "lxml"))


def _soup_title(soup: BeautifulSoup) -> PageTitle:
    meta = _html_meta(soup)
    ld_headline, ld_site = _json_ld(soup)
    site = _clean_title(meta.get("og:site_name") or ld_site or meta.get("application-name"))
    tab = _clean_title(soup.title.get_text(" ")) if soup.title is not None else ""
    host = _key(_host(soup, meta))
    named = [t for t in (_clean_title(meta.get(k)) for k in ("og:title", "twitter:title")) if t]
    named += [t for t in (_clean_title(ld_headline), tab) if t]
    headline = _headline(soup, named=named, site=site, host=host)
    if headline:
        # The tab or the metadata may still say what the site is called.
        found_site = next((_strip_site(t, site="", tab=tab, h1=headline, host=host)[1] for t in named), "")
        return PageTitle(title=headline, site=site or found_site)
    for title in named:
        stripped, found_site = _strip_site(title, site=site, tab=tab, h1="", host=host)
        if not (site or found_site) and tab and tab != title:
            # The headline came from the page; the tab's title may still name the site.
            found_site = _strip_site(tab, site="", tab=tab, h1="", host=host)[1]
        return PageTitle(title=stripped, site=site or found_site)
    return PageTitle(title=None, site=site)


# Where a blog theme's <h1> is the site's name, the post's headline carries one of these classes.
_HEADLINE_CLASS = re.compile(r"(?:^|[\s_-])(?:entry|post|article|blog_post)[_-]?title\b|^headline$", re.IGNORECASE)


def _headline(soup: BeautifulSoup, *, named: list[str], site: str, host: str) -> str:
    """The headline a reader sees above the article, when the page marks one out; "" if none.

    In order: a heading that one of the page's own titles (og:title, twitter:title, JSON-LD, the
    tab; ``named``, the tab last), or a segment of one, agrees with; an ``<h1>`` such a title was
    cut from (a kicker or the site's name around it); the page's only ``<h1>``; the ``<h1>`` of
    its ``<article>``/``<main>`` when the page has no title but the tab's. A heading that is the
    site's name never counts.
    """
    parts = [part for title in named for part in [title, *_segments(title)]]
    # The last segment of a title: where sites put their name.
    ends = {_key(segments[-1]) for segments in map(_segments, named) if len(segments) > 1}

    def is_site(text: str) -> bool:
        k = _key(text)
        return bool(k) and ((bool(site) and k in _key(site)) or (len(k) >= 4 and k in host))

    h1s = list(dict.fromkeys(t for t in (_clean_title(h.get_text(" ")) for h in soup.find_all("h1")) if t))
    marked = [
        _clean_title(el.get_text(" "))
        for el in soup.find_all(["h1", "h2", "h3"])
        if _HEADLINE_CLASS.search(" ".join(el.get("class") or [])) or el.get("itemprop") == "headline"
    ]
    for text in (t for t in dict.fromkeys(marked + h1s) if t and not is_site(t)):
        for part in parts:
            if _same(part, text):
                return part
    for text in (t for t in h1s if not is_site(t)):
        for part in sorted(parts, key=len, reverse=True):
            k, whole = _key(part), _key(text)
            if k and len(k) >= len(whole) / 2 and k in whole:
                # The rest is a kicker, a byline or the site's name, which is left out.
                rest = whole.replace(k, "", 1)
                return part if whole.endswith(rest) and (is_site(rest) or rest in ends) else text
    if len(h1s) == 1 and not is_site(h1s[0]):
        return h1s[0]
    if len(named) <= 1:
        for container in (soup.find("article"), soup.find("main")):
            heading = container.find("h1") if container is not None else None
            text = _clean_title(heading.get_text(" ")) if heading is not None else ""
            if text and not is_site(text):
                return text
    return ""


def _host(soup: BeautifulSoup, meta: dict[str, str]) -> str:
    """The page's own host name, from og:url or its canonical link ("" when it gives neither)."""
    canonical = soup.find("link", rel="canonical")
    url = meta.get("og:url") or (str(canonical.get("href") or "") if canonical is not None else "")
    host = urlsplit(url).hostname or "" if url.startswith(("http://", "https://")) else ""
    return host.removeprefix("www.")


def _key(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


def _segments(title: str) -> list[str]:
    """``title`` cut at the separators sites put around their name (none inside brackets)."""
    cuts = _separators(title)
    starts = [0] + [m.end() for m in cuts]
    ends = [m.start() for m in cuts] + [len(title)]
    return [title[a:b].strip() for a, b in zip(starts, ends, strict=True)]


def _separators(title: str) -> list[re.Match[str]]:
    depth, found = 0, []
    marks = {m.start(): m for m in _TITLE_SEPARATORS.finditer(title)}
    for i, ch in enumerate(title):
        if ch in "([{":
            depth += 1
        elif ch in ")]}" and depth:
            depth -= 1
        elif i in marks and depth == 0:
            found.append(marks[i])
    return found


def _html_meta(soup: BeautifulSoup) -> dict[str, str]:
    found: dict[str, str] = {}
    for tag in soup.find_all("meta"):
        key = str(tag.get("property") or tag.get("name") or "").strip().lower()
        content = tag.get("content")
        if key and content and key not in found:
            found[key] = str(content)
    return found


def _json_ld(soup: BeautifulSoup) -> tuple[str, str]:
    """(headline, publisher or site name) of the first JSON-LD article-like object."""
    for script in soup.find_all("script", type="application/ld+json"):
        try:
            data = json.loads(script.string or "")
        except ValueError:
            continue
        stack = [data]
        while stack:
            item = stack.pop(0)
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                if "@graph" in item:
                    stack.extend(item["@graph"] if isinstance(item["@graph"], list) else [item["@graph"]])
                headline = item.get("headline")
                if isinstance(headline, str) and headline.strip():
                    publisher = item.get("publisher")
                    name = publisher.get("name") if isinstance(publisher, dict) else None
                    return headline, name if isinstance(name, str) else ""
    return "", ""


def _same(a: str, b: str) -> bool:
    return bool(_key(a)) and _key(a) == _key(b)


def _strip_site(title: str, *, site: str, tab: str, h1: str, host: str) -> tuple[str, str]:
    """``title`` without a leading or trailing segment naming the site, and that segment."""
    parts = _segments(title)
    if len(parts) < 2:
        return title, ""
    # A segment that is the article's headline tells which part is the title.
    for i, part in enumerate(parts):
        if h1 and _same(part, h1):
            rest = [p for j, p in enumerate(parts) if j != i]
            return part, rest[-1] if i == 0 else rest[0]
    # The site is named in the metadata or the page's address, or the same segment ends the
    # tab's title as well.
    for edge in (-1, 0):
        part = parts[edge]
        key = _key(part)
        if (
            (site and (_same(part, site) or site.casefold() in part.casefold()))
            or (len(key) >= 4 and key in host)
            or (tab and tab != title and _segments(tab)[edge] == part and len(part.split()) <= 5)
        ):
            return _without_edge(title, edge), part
    # No name to go by: a short last segment after a much longer title is a site's name
    # ("… | American Civil Liberties Union" is long but still the shorter end).
    last = parts[-1]
    head = " ".join(parts[:-1])
    if last[0].isupper() and len(last.split()) <= 6 and len(head.split()) >= max(4, 2 * len(last.split())):
        return _without_edge(title, -1), last
    return title, ""


def _without_edge(title: str, edge: int) -> str:
    separators = _separators(title)
    return title[: separators[-1].start()] if edge == -1 else title[separators[0].end() :]


_EXTRACTORS: Final = {
    "pdf": _extract_pdf,
    "docx": _extract_docx,
    "txt": _extract_plain,
    "md": _extract_markdown,
    "html": _extract_html,
}
