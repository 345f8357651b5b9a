"""Markdown to a complete page: every piece of text escaped, citations linked to references."""

from __future__ import annotations

from reports.generation.render import render_page
from reports.generation.text import md_escape, sentence_spans
from reports.generation.types import Citation
from reports.tests.helpers import check_html

CITES = [Citation(1, "s", "A <i>title</i>", "s:0", 3, 'He said "stop" & left.')]


def test_it_renders_a_complete_valid_page() -> None:
    markdown = (
        "# Title\n\n## Part one\n\nSome **bold** and *em* and `code <x>` text [1] and [2].\n\n"
        "- item one [1]\n- item two\n  continued\n\n1. first\n2. second\n\n> quoted\n\n---\n\n"
        "```\n<pre> & raw\n```\n\n## References\n\n- [1] *A title*, p. 3 — “quote”\n"
    )
    page = render_page(markdown, title="Title & more", citations=CITES)

    checker = check_html(page)
    assert checker.title == "Title & more"
    assert "<strong>bold</strong>" in page and "<em>em</em>" in page and "<code>code &lt;x&gt;</code>" in page
    assert '<li id="ref-1">' in page and 'class="references"' in page
    assert checker.links == ["#ref-1", "#ref-1"]
    assert checker.link_titles[0] == 'A <i>title</i>, p. 3: “He said "stop" & left.”'
    assert "[2]" in page, "a number that is no citation stays text"
    assert "<pre><code>&lt;pre&gt; &amp; raw</code></pre>" in page
    assert "<li>item two continued</li>" in page


def test_it_escapes_html_everywhere() -> None:
    markdown = (
        "# <script>alert(1)</script>\n\n<script>alert(2)</script> <img src=x onerror=y> [x](javascript:alert(3))\n"
    )
    page = render_page(markdown, title="<script>alert(0)</script>")

    check_html(page)
    assert "<script" not in page and "<img" not in page and 'href="javascript' not in page
    assert page.count("&lt;script&gt;") == 3


def test_it_never_produces_crossed_or_unclosed_tags() -> None:
    tricky = [
        "*a **b* c**",
        "**a *b** c*",
        "***both***",
        "__a _b__ c_",
        "** not bold **",
        "*unclosed and **also",
        "snake_case_name and 2*3*4",
        "`unclosed code and *em*",
        "\ue000 0 \ue001 stray placeholders [1]",
    ]
    for line in tricky:
        check_html(render_page(f"# T\n\n{line}\n\n- {line}\n", title="T", citations=CITES))


def test_it_round_trips_escaped_source_text() -> None:
    text = "Use a*b*c, [7], <tag>, # not a heading, _x_ & 1. not a list `tick` \\ back"
    page = render_page(md_escape(text), title="t")

    body = page.split("<article>\n", 1)[1]
    assert body.startswith(
        "<p>Use a*b*c, [7], &lt;tag&gt;, # not a heading, _x_ &amp; 1. not a list `tick` \\ back</p>"
    )


def test_it_splits_sentences_without_breaking_at_abbreviations() -> None:
    text = "Dr. Smith met J. R. Tolkien in 1950. They talked, e.g. about roads. Then it rained! “Really?” she asked."
    sentences = [text[s.start : s.end] for s in sentence_spans(text)]

    assert sentences == [
        "Dr. Smith met J. R. Tolkien in 1950.",
        "They talked, e.g. about roads.",
        "Then it rained!",
        "“Really?” she asked.",
    ]
