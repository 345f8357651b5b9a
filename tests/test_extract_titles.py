"""Source titles end to end: uploaded over HTTP, extracted by a real worker, read back as JSON."""

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
    one = http.get(f"/api/v1/notebooks/{nb}/sources/{ids[0]}/").json()
    assert one["site"] == "CityLab"
