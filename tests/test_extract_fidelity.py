"""Extraction end to end: uploaded over HTTP, extracted by a real worker, read back as JSON and search hits."""

import uuid
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from tests.helpers import all_done, new_notebook, upload


@pytest.fixture
def http(live_server_url: str, make_user: Any) -> httpx.Client:
    token = Token.objects.create(user=make_user("titles-" + uuid.uuid4().hex[:6]))
    return httpx.Client(base_url=live_server_url, headers={"Authorization": f"Token {token.key}"}, timeout=30)


def test_an_uploaded_page_and_text_file_are_titled_as_their_authors_titled_them(
    workers: Any, http: httpx.Client
) -> None:
    prose = "".join(
        f"<p>Neon signs spread through American cities in the 1920s; paragraph {i} tells how.</p>" for i in range(10)
    )
    page = (
        "<!doctype html><html><head><title>A Brief History of Neon Signage - CityLab</title>"
        '<meta property="og:site_name" content="CityLab"></head><body><nav>Menu</nav>'
        f"<article><h1>The Modern Ambitions Behind Neon</h1>{prose}</article></body></html>"
    ).encode()
    text = (
        b"Plasma vitamin D metabolites and risk of colorectal cancer in women\n\n"
        b"Higher plasma 25-hydroxyvitamin D was associated with a lower risk of colorectal cancer.\n"
    )
    nb = new_notebook(http)
    response = upload(http, nb, [("saved-page.html", page), ("abstract-0042.txt", text)])
    assert response.status_code == 202, response.text
    ids = [s["id"] for s in response.json()["sources"]]
    assert {s.status for s in all_done(ids)} == {"ready"}

    sources = {s["original_filename"]: s for s in http.get(f"/api/v1/notebooks/{nb}/sources/").json()["results"]}
    assert sources["saved-page.html"]["title"] == "The Modern Ambitions Behind Neon"
    assert sources["saved-page.html"]["site"] == "CityLab"
    assert (
        sources["abstract-0042.txt"]["title"] == "Plasma vitamin D metabolites and risk of colorectal cancer in women"
    )
    assert sources["abstract-0042.txt"]["site"] == ""
    assert (sources["saved-page.html"]["extractor"], sources["abstract-0042.txt"]["extractor"]) == (
        "trafilatura",
        "text",
    )
    one = http.get(f"/api/v1/notebooks/{nb}/sources/{ids[0]}/").json()
    assert one["site"] == "CityLab"


def test_a_word_files_footnotes_endnotes_and_comments_are_found_by_search(workers: Any, http: httpx.Client) -> None:
    from notebooks.tests.ingest import docx_notes

    nb = new_notebook(http)
    response = upload(http, nb, [("tundra_v3.docx", docx_notes.tundra_docx())])
    assert response.status_code == 202, response.text
    source_id = response.json()["sources"][0]["id"]
    assert {s.status for s in all_done([source_id])} == {"ready"}
    source = http.get(f"/api/v1/notebooks/{nb}/sources/{source_id}/").json()
    assert source["title"] == "Lichen cover on the Arctic tundra"
    assert source["chunk_count"] > 1  # else every note would trivially share the one chunk

    for query, label in (
        ("Who identified the moss specimens?", "Footnote 2: "),
        ("Where are the raw lichen colony counts archived?", "Endnote 1: "),
        ("When was the permafrost thaw depth measured?", "Comment 1 (Reviewer Two): "),
    ):
        hits = http.get(f"/api/v1/notebooks/{nb}/search/", params={"q": query}).json()["results"]
        assert hits, query
        # The hit's passage carries the label, so a citation says where the words came from.
        assert label in hits[0]["text"], (query, hits[0]["text"])


def test_a_page_whose_article_extractor_keeps_a_stub_is_ingested_whole(workers: Any, http: httpx.Client) -> None:
    from notebooks.tests.ingest.test_titles import _delta_page

    nb = new_notebook(http)
    response = upload(http, nb, [("delta.html", _delta_page("comments"))])
    assert response.status_code == 202, response.text
    source_id = response.json()["sources"][0]["id"]
    assert {s.status for s in all_done([source_id])} == {"ready"}
    source = http.get(f"/api/v1/notebooks/{nb}/sources/{source_id}/").json()
    assert source["extractor"] == "densest-block"
    assert source["word_count"] > 300  # the article, not the 12-word teaser
    hits = http.get(f"/api/v1/notebooks/{nb}/search/", params={"q": "levees starving the marsh of sediment"}).json()
    assert "hectares of marsh" in hits["results"][0]["text"]
