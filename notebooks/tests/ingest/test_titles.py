"""Titles a reader would recognise: the article's headline, not the tab's; no tool placeholders."""

import pytest

from notebooks.ingest import samples
from notebooks.ingest.extract import extract, html_title, meaningful_title, plain_title
from notebooks.tests.ingest import docx_notes


def _page(head: str, body: str = "") -> str:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


@pytest.mark.parametrize(
    ("html", "title", "site"),
    [
        # The issue's own examples: the site's name after a separator, with and without metadata.
        (
            _page(
                "<title>Facebook Is Tracking Me Even Though I'm Not on Facebook"
                " | American Civil Liberties Union</title>"
            ),
            "Facebook Is Tracking Me Even Though I'm Not on Facebook",
            "American Civil Liberties Union",
        ),
        (
            _page(
                "<title>Why the sea is rising faster - BBC News</title>"
                '<meta property="og:site_name" content="BBC News">'
            ),
            "Why the sea is rising faster",
            "BBC News",
        ),
        (
            _page(
                "<title>A Brief History of Neon Signage - CityLab</title>",
                "<header><a>CityLab</a></header>"
                "<article><h1>The Modern Ambitions Behind Neon</h1><p>Text.</p></article>",
            ),
            "The Modern Ambitions Behind Neon",
            "CityLab",
        ),
        # og:title wins over the tab, and loses the site name it sometimes repeats.
        (
            _page(
                '<title>Home</title><meta property="og:title" content="Vitamin D and cancer: a trial | The Lancet">'
                '<meta property="og:site_name" content="The Lancet">'
            ),
            "Vitamin D and cancer: a trial",
            "The Lancet",
        ),
        # A JSON-LD headline, its publisher as the site.
        (
            _page(
                '<title>Dark skies | Paper</title><script type="application/ld+json">'
                '{"@context": "https://schema.org", "@graph": [{"@type": "NewsArticle", "headline": "Dark skies '
                'return to the valley", "publisher": {"@type": "Organization", "name": "The Valley Paper"}}]}</script>'
            ),
            "Dark skies return to the valley",
            "The Valley Paper",
        ),
        # A dash inside a short title is part of it, not a site's name.
        (_page("<title>Vitamin D and cancer - a review</title>"), "Vitamin D and cancer - a review", ""),
        # A logo <h1> outside the article is not the headline when the page has several.
        (_page("<title>Tides explained</title>", "<h1>Logo</h1><h1>Menu</h1>"), "Tides explained", ""),
        (_page("", "<p>No title anywhere.</p>"), None, ""),
        # A blog theme's <h1> is the site's name; the post's heading agrees with the tab.
        (
            _page(
                "<title>Field Notes | Tides and the moon, explained</title>",
                '<h1>Field Notes</h1><h2 class="entry-title">Tides and the moon, explained</h2>',
            ),
            "Tides and the moon, explained",
            "Field Notes",
        ),
        # The page's only <h1> is the headline the reader sees, over a different social title.
        (
            _page(
                '<meta property="og:title" content="tide-tables-2018">',
                "<h1>Eighteen tide tables tested: four fail</h1>",
            ),
            "Eighteen tide tables tested: four fail",
            "",
        ),
        # A separator inside brackets is part of the title.
        (
            _page("<title>Moon Song - The Tide Band (Live - 2019)</title>"),
            "Moon Song - The Tide Band (Live - 2019)",
            "",
        ),
    ],
)
def test_an_html_title_is_the_articles_own(html: str, title: str | None, site: str) -> None:
    found = html_title(html)
    assert (found.title, found.site) == (title, site)


def test_an_extracted_page_carries_its_title_and_site() -> None:
    body = "".join(
        f"<p>Paragraph {i} about coral reefs and the warming water that bleaches them.</p>" for i in range(8)
    )
    html = _page(
        '<title>Coral reefs under stress - Ocean Weekly</title><meta property="og:site_name" content="Ocean Weekly">',
        f"<article><h1>Coral reefs under stress</h1>{body}</article>",
    )
    result = extract(html.encode(), "html")
    assert (result.title, result.site) == ("Coral reefs under stress", "Ocean Weekly")


@pytest.mark.parametrize(
    ("text", "title"),
    [
        (
            "Plasma vitamin D metabolites and risk of colorectal cancer in women\n\nWe measured plasma levels.",
            "Plasma vitamin D metabolites and risk of colorectal cancer in women",
        ),
        ("# Field notes\n\nDay one.", "Field notes"),
        ("This first line is a sentence.\n\nAnd so on.", None),  # a sentence, not a title
        ("Line one\nline two of the same paragraph\n\nMore.", None),  # no blank line after it
        (" ".join(["word"] * 40) + "\n\nMore.", None),  # too long to be a title
        ("12345\n\nNumbers.", None),
        ("Only a title", "Only a title"),
    ],
)
def test_a_text_files_first_line_is_its_title_when_it_reads_as_one(text: str, title: str | None) -> None:
    assert plain_title(text) == title
    assert extract(text.encode(), "txt").title == title


@pytest.mark.parametrize(
    "placeholder",
    [
        "Microsoft Word - draft3.docx",
        "Untitled",
        "untitled document",
        "Document1",
        "report_v2",
        "scan0042",
        "notes.pdf",
    ],
)
def test_a_tools_placeholder_is_not_a_title(placeholder: str) -> None:
    assert meaningful_title(placeholder) is None


@pytest.mark.parametrize("title", ["Ocean Report", "COVID-19", "Results of the 2019 survey"])
def test_a_real_metadata_title_is_kept(title: str) -> None:
    assert meaningful_title(title) == title


def test_a_pdf_with_a_placeholder_title_has_none() -> None:
    result = extract(samples.make_pdf([["Some text on the page."]], title="Microsoft Word - draft3.docx"), "pdf")
    assert result.title is None


def test_a_docx_with_a_placeholder_title_is_titled_by_its_heading() -> None:
    import io

    import docx

    document = docx.Document()
    document.core_properties.title = "Untitled"
    document.add_heading("Tidal energy in the estuary", level=1)
    document.add_paragraph("The estuary's tides could power the town.")
    buffer = io.BytesIO()
    document.save(buffer)
    assert extract(buffer.getvalue(), "docx").title == "Tidal energy in the estuary"


def _delta_page(wrapper: str) -> bytes:
    prose = "".join(
        f"<p>The river delta lost {i} hectares of marsh as the levees starved it of sediment, and the "
        "fishermen of the bayou watched their channels widen year after year.</p>"
        for i in range(15)
    )
    return (
        "<html><head><title>Delta</title></head><body><nav><a>Home</a></nav><article><h1>The sinking delta</h1>"
        "<p>Subscribe to read the whole story of the delta today.</p></article>"
        f"<div class='{wrapper}'><h2>Marsh loss</h2>{prose}</div><footer>© Bayou Times</footer></body></html>"
    ).encode()


def test_a_page_whose_article_extractor_keeps_a_stub_falls_back_to_the_densest_block() -> None:
    # trafilatura drops a block whose class says "comments": the article, on this page.
    result = extract(_delta_page("comments"), "html")
    assert result.extractor == "densest-block"
    assert result.text.startswith("Marsh loss\n\nThe river delta lost 0 hectares")
    assert result.text.count("hectares of marsh") == 15
    assert "Home" not in result.text and "Bayou Times" not in result.text


def test_a_page_whose_article_extractor_keeps_the_article_keeps_its_text() -> None:
    result = extract(_delta_page("story"), "html")
    assert result.extractor == "trafilatura"
    assert result.text.count("hectares of marsh") == 15


def test_each_kind_names_its_extractor() -> None:
    assert extract(samples.make_pdf([["Words on a page."]]), "pdf").extractor == "pypdf"
    assert extract(b"Plain words.", "txt").extractor == "text"
    assert extract(b"# Notes\n\nWords.", "md").extractor == "markdown"
    assert extract(docx_notes.tundra_docx(), "docx").extractor == "python-docx"
