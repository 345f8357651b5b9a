"""Titles of real saved web pages (``files/real_pages.tar.xz``; where each page comes from is in
``files/README.md``): the extracted title is the article's own headline on at least 90% of them."""

import json
import re
import tarfile
from pathlib import Path

import pytest

from notebooks.ingest.extract import extract

PAGES = Path(__file__).parent / "files" / "real_pages.tar.xz"
TARGET = 0.9


def _key(title: str | None) -> str:
    # Case, spacing, quotes and dashes are typography, not a different title.
    return re.sub(r"[\W_]+", "", (title or "").casefold())


@pytest.fixture(scope="module")
def pages() -> list[tuple[dict[str, str], bytes]]:
    with tarfile.open(PAGES) as tar:
        manifest = json.loads(tar.extractfile("titles.json").read())  # type: ignore[union-attr]
        return [(entry, tar.extractfile(f"pages/{entry['page']}").read()) for entry in manifest]  # type: ignore[union-attr]


def test_the_set_is_the_one_the_readme_describes(pages: list[tuple[dict[str, str], bytes]]) -> None:
    assert len(pages) == 117
    assert all(entry["from"].endswith(entry["page"]) and entry["title"] for entry, _html in pages)


def test_a_real_pages_title_is_its_articles_headline(pages: list[tuple[dict[str, str], bytes]]) -> None:
    wrong = []
    for entry, html in pages:
        found = extract(html, "html").title
        if _key(found) != _key(entry["title"]):
            wrong.append(f"{entry['page']}: {found!r}, not {entry['title']!r}")
    share = 1 - len(wrong) / len(pages)
    assert share >= TARGET, f"{share:.3f} of {len(pages)} pages:\n" + "\n".join(wrong)
    # The six pages it misses today (README, "Source titles"); a change that loses more shows here.
    assert len(wrong) <= 6, "\n".join(wrong)
