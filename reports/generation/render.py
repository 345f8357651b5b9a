"""Markdown (the subset the generators write, and what a chat model commonly adds) to a whole page.

Supported: ATX headings, paragraphs, bullet and numbered lists (nesting is flattened), block
quotes, fenced code, rules, **strong**, *emphasis*, `code`, backslash escapes and citations [n].
Anything else is shown as text. Every piece of text is HTML-escaped, raw HTML included, so a
source or a model cannot inject markup; links are not rendered, so no URL becomes clickable.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Final

from reports.generation import text as tx
from reports.generation.types import Citation

_HEADING: Final = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_BULLET: Final = re.compile(r"^\s*[-*+][ \t]+(.*)$")
_NUMBERED: Final = re.compile(r"^\s*\d{1,9}[.)][ \t]+(.*)$")
_RULE: Final = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_FENCE: Final = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_QUOTE: Final = re.compile(r"^ {0,3}>[ \t]?(.*)$")
_INLINE: Final = re.compile(r"\\([!-/:-@\[-`{-~])|(`+)(.+?)\2|\[(\d{1,4})\](?!\()")
_EM: Final = re.compile(
    r"(?<![*\w])\*(?![\s*])([^*<>]+?)(?<![\s*])\*(?![*\w])"
    r"|(?<![_\w])_(?![\s_])([^_<>]+?)(?<![\s_])_(?![_\w])"
)
_STRONG: Final = re.compile(r"(\*\*|__)(?![\s*_])((?:[^<*_]|<em>[^<]*</em>)+?)(?<![\s*_])\1")
_STASH: Final = re.compile("\ue000(\\d+)\ue001")
_REFERENCE_ITEM: Final = re.compile(r"^\[(\d{1,4})\]\s+")
TITLE_QUOTE_CHARS: Final = 300

CSS: Final = """
body { margin: 0; background: #fafaf7; color: #1d1d1f; font: 17px/1.6 Georgia, "Times New Roman", serif; }
main { max-width: 44rem; margin: 0 auto; padding: 2.5rem 1.25rem 4rem; }
h1, h2, h3, h4 { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; line-height: 1.25; }
h1 { font-size: 2rem; margin: 0 0 1.5rem; }
h2 { font-size: 1.35rem; margin-top: 2.25rem; border-bottom: 1px solid #ddd; padding-bottom: .25rem; }
sup.cite { font-size: .7em; line-height: 0; }
sup.cite a { text-decoration: none; color: #0b5cad; }
ul.references { list-style: none; padding-left: 0; font-size: .9rem; }
ul.references li { margin-bottom: .6rem; }
ul.references li:target { background: #fff6c8; }
blockquote { margin-left: 0; padding-left: 1rem; border-left: 3px solid #ccc; color: #444; }
pre { overflow-x: auto; background: #f0f0ec; padding: .75rem; }
@media print { body { background: #fff; } sup.cite a { color: inherit; } }
""".strip()


def render_page(markdown: str, *, title: str, citations: Sequence[Citation] = ()) -> str:
    """A complete, standalone HTML5 document for ``markdown``."""
    body = render_markdown(markdown, citations=citations)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="Quire">\n'
        f"<title>{html.escape(tx.collapse(title) or 'Report')}</title>\n"
        f"<style>\n{CSS}\n</style>\n</head>\n<body>\n<main>\n<article>\n{body}</article>\n</main>\n</body>\n</html>\n"
    )


def render_markdown(markdown: str, *, citations: Sequence[Citation] = ()) -> str:
    """An HTML fragment; [n] becomes a link to ``#ref-n`` when n is one of ``citations``."""
    cites = {c.number: c for c in citations}
    lines = markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    in_references = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if fence := _FENCE.match(line):
            marker = fence.group(1)
            code: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(marker):
                code.append(lines[i])
                i += 1
            i += 1
            out.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>\n")
            continue
        if heading := _HEADING.match(line):
            level = len(heading.group(1))
            label = heading.group(2)
            in_references = level <= 2 and _plain(label).lower() == "references"
            out.append(f"<h{level}>{render_inline(label, cites)}</h{level}>\n")
            i += 1
            continue
        if _RULE.match(line):
            out.append("<hr>\n")
            i += 1
            continue
        if _QUOTE.match(line):
            quoted: list[str] = []
            while i < len(lines) and (match := _QUOTE.match(lines[i])):
                quoted.append(match.group(1))
                i += 1
            inner = render_markdown("\n".join(quoted), citations=citations)
            out.append(f"<blockquote>\n{inner}</blockquote>\n")
            continue
        if _BULLET.match(line) or _NUMBERED.match(line):
            i = _list(lines, i, cites, in_references, out)
            continue
        paragraph: list[str] = []
        while i < len(lines) and lines[i].strip() and not _starts_block(lines[i]):
            paragraph.append(lines[i].strip())
            i += 1
        out.append(f"<p>{render_inline(' '.join(paragraph), cites)}</p>\n")
    return "".join(out)


def _starts_block(line: str) -> bool:
    return any(p.match(line) for p in (_HEADING, _BULLET, _NUMBERED, _RULE, _FENCE, _QUOTE))


def _list(lines: list[str], i: int, cites: Mapping[int, Citation], in_references: bool, out: list[str]) -> int:
    pattern = _BULLET if _BULLET.match(lines[i]) else _NUMBERED
    tag = "ul" if pattern is _BULLET else "ol"
    items: list[str] = []
    while i < len(lines):
        line = lines[i]
        if match := pattern.match(line):
            items.append(match.group(1).strip())
        elif line.strip() and not _starts_block(line) and items:
            items[-1] += " " + line.strip()  # a continuation of the item above
        else:
            break
        i += 1
    css = ' class="references"' if in_references and tag == "ul" else ""
    out.append(f"<{tag}{css}>\n")
    for item in items:
        ref = _REFERENCE_ITEM.match(item) if in_references else None
        if ref and int(ref.group(1)) in cites:
            n = int(ref.group(1))
            rest = render_inline(item[ref.end() :], cites)
            out.append(f'<li id="ref-{n}"><span class="ref-number">[{n}]</span> {rest}</li>\n')
        else:
            out.append(f"<li>{render_inline(item, cites)}</li>\n")
    out.append(f"</{tag}>\n")
    return i


def render_inline(text: str, cites: Mapping[int, Citation]) -> str:
    """One line of Markdown as escaped HTML with emphasis, code and citation links."""
    text = text.replace("\ue000", "").replace("\ue001", "")
    stash: list[str] = []

    def keep(fragment: str) -> str:
        stash.append(fragment)
        return f"\ue000{len(stash) - 1}\ue001"

    def protect(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return keep(html.escape(match.group(1)))
        if match.group(3) is not None:
            return keep(f"<code>{html.escape(match.group(3).strip())}</code>")
        n = int(match.group(4))
        citation = cites.get(n)
        if citation is None:
            return keep(f"[{n}]")
        tooltip = html.escape(_tooltip(citation), quote=True)
        return keep(f'<sup class="cite"><a href="#ref-{n}" title="{tooltip}">[{n}]</a></sup>')

    escaped = html.escape(_INLINE.sub(protect, text), quote=False)
    escaped = _EM.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", escaped)
    escaped = _STRONG.sub(lambda m: f"<strong>{m.group(2)}</strong>", escaped)
    return _STASH.sub(lambda m: stash[int(m.group(1))], escaped)


def _tooltip(citation: Citation) -> str:
    where = citation.where
    quote = tx.collapse(citation.quote)
    short = tx.truncate_words(quote, TITLE_QUOTE_CHARS)
    return f"{citation.source_title}{where}: \u201c{short}{'…' if len(short) < len(quote) else ''}\u201d"


def _plain(markdown: str) -> str:
    return re.sub(r"[\\*_`#]", "", markdown).strip()
