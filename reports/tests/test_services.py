"""Writing a report (the job's service, called in this process) from sources ingested by the real
pipeline and searched with the real embedder: what a topic report draws on, and how it reads.
The queue path (worker, HTTP, events) is covered by tests/test_reports.py."""

from __future__ import annotations

from typing import Any

import pytest

from backend.runtime import JobError
from notebooks import ingestion, selectors
from notebooks import services as notebook_services
from notebooks.models import Chunk, Notebook, Source
from reports.models import Report
from reports.services import report_generate
from reports.tests.documents import ROMAN_ROADS, VOLCANOES, documents
from reports.tests.helpers import CITATION, sections_of

GEYSERS = (
    "Geysers are hot springs that erupt periodically, throwing columns of hot water and steam into the air. "
    "Old Faithful in Yellowstone erupts about every ninety minutes. Groundwater heated by hot rock deep "
    "underground boils and forces the water above it out through a narrow vent."
)
TOPIC = "volcanic eruptions and their hazards"
FIXED = {"Introduction", "Key points", "Conclusion", "Review questions"}


def add(notebook: Notebook, title: str, text: str) -> Source:
    source = Source.objects.create(notebook=notebook, kind=Source.Kind.TEXT, title=title, text=text)
    ingestion.source_process(source_id=str(source.id))
    source.refresh_from_db()
    assert source.status == Source.Status.READY
    return source


@pytest.fixture
def library(make_user: Any) -> tuple[Notebook, dict[str, Source]]:
    owner = make_user()
    notebook = notebook_services.notebook_create(owner=owner, title="Earth and empire")
    plants = documents()[0]
    sources = {
        "volcano": add(notebook, "Volcanoes and eruptions", VOLCANOES[0]),
        "roads": add(notebook, "The Roman road network", ROMAN_ROADS[0]),
        "plants": add(notebook, plants[1], plants[2]),
        "geysers": add(notebook, "Geysers", GEYSERS),
    }
    return notebook, sources


def write(notebook: Notebook, topic: str = "", length: str = "medium") -> Report:
    report = Report.objects.create(notebook=notebook, owner=notebook.owner, topic=topic, options={"length": length})
    report_generate(report_id=str(report.id))
    report.refresh_from_db()
    assert report.status == Report.Status.COMPLETED, report.error
    return report


def test_it_leaves_out_a_passage_that_only_shares_words_with_the_topic(library: Any) -> None:
    notebook, sources = library
    geysers = str(sources["geysers"].id)
    # The hybrid search finds the geyser passage ("erupt"), and the semantic retrieval reports
    # used before issue #23 kept it (within 0.6 of the best cosine); the answerer's scoring does not.
    assert geysers in {h.source_id for h in selectors.notebook_search(notebook=notebook, query=TOPIC, k=5)}
    assert geysers in {p.source_id for p in selectors.passages(notebook=notebook, query=TOPIC)}
    kept = selectors.topic_passages(notebook=notebook, topic=TOPIC)
    assert {p.source_id for p in kept} == {str(sources["volcano"].id)}
    assert all(p.score >= 0.58 for p in kept)

    report = write(notebook, TOPIC)

    assert {c["source_id"] for c in report.citations} == {str(sources["volcano"].id)}
    assert "Geysers" not in report.markdown and "Old Faithful" not in report.markdown
    for citation in report.citations:
        assert citation["quote"] in Chunk.objects.get(id=int(citation["chunk_id"])).text


@pytest.mark.parametrize("topic", ["", TOPIC])
def test_its_section_titles_are_phrases_found_in_the_passages_they_cite(library: Any, topic: str) -> None:
    notebook, _ = library
    report = write(notebook, topic, length="long")

    by_number = {c["number"]: int(c["chunk_id"]) for c in report.citations}
    sections = {h: t for h, t in sections_of(report.markdown).items() if h not in FIXED}
    assert list(sections) == report.sections and sections
    for heading, text in sections.items():
        cited = [by_number[int(n)] for n in CITATION.findall(text)]
        chunks = Chunk.objects.filter(id__in=cited).values_list("text", flat=True)
        assert any(heading.lower() in " ".join(t.lower().split()) for t in chunks), heading


def test_it_quotes_findings_not_the_titles_heading_the_sources(make_user: Any) -> None:
    notebook = notebook_services.notebook_create(owner=make_user(), title="Abstracts")
    title = "Plasma vitamin D metabolites and risk of colorectal cancer in women."
    add(
        notebook,
        title,
        f"{title}\n\nHigher plasma vitamin D was associated with a lower risk of colorectal cancer in women. "
        "We followed 32,826 women for eleven years and measured plasma vitamin D twice. The association "
        "was strongest for cancers of the distal colon and rectum.",
    )
    report = write(notebook, "vitamin D and colorectal cancer")

    assert report.citations
    # The introduction names the source by its title; no section quotes it.
    quoted = " ".join(t for h, t in sections_of(report.markdown).items() if h != "Introduction")
    assert "Higher plasma vitamin D was associated" in quoted
    assert title.rstrip(".").lower() not in quoted.lower()
    assert not any(c["quote"].lower().startswith(title.lower().rstrip(".")) for c in report.citations)


def test_a_topic_nothing_is_about_fails_readably(library: Any) -> None:
    notebook, _ = library
    report = Report.objects.create(
        notebook=notebook, owner=notebook.owner, topic="sourdough bread baking at home", options={}
    )

    with pytest.raises(JobError) as caught:
        report_generate(report_id=str(report.id))

    assert caught.value.code == "TOPIC_NOT_COVERED" and not caught.value.retryable
    assert "sourdough bread baking at home" in caught.value.message
