"""Search as people type it: hybrid by default, phrases, identifiers, other scripts, stop words,
indexes that follow deletes and re-ingestion, and keyword-only when the embedder is down.

Sources are ingested by the real pipeline (``source_process``, called in this process) and
searched through the API; the suite runs on SQLite and on PostgreSQL, so the exact rankings
asserted here are the same on both databases."""

from typing import Any

import pytest
from django.db.models import F

from notebooks import embeddings, ingestion, services
from notebooks.models import Chunk, Notebook, Source
from tests import factories


@pytest.fixture
def owner(make_user: Any) -> Any:
    return make_user()


@pytest.fixture
def client(owner: Any, api_client_for: Any) -> Any:
    return api_client_for(owner)


def add(notebook: Notebook, title: str, text: str) -> Source:
    source = factories.source(notebook, title=title, text=text)
    ingestion.source_process(source_id=str(source.id))
    source.refresh_from_db()
    assert source.status == Source.Status.READY
    return source


def search(client: Any, notebook: Notebook, q: str, **params: Any) -> Any:
    response = client.get(f"/api/v1/notebooks/{notebook.id}/search/", {"q": q, **params})
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def library(owner: Any) -> tuple[Notebook, dict[str, Source]]:
    notebook = services.notebook_create(owner=owner, title="Library")
    sources = {
        "phrase": add(
            notebook, "Gene editing", "Guide RNA directs the nuclease to the target. Off-target cuts are rare."
        ),
        "apart": add(notebook, "Editing guides", "The target of a guide can be far from the RNA that directs editing."),
        "crispr": add(notebook, "Tools", "We knocked out the gene with CRISPR-Cas9 in mouse embryos."),
        "paraphrase": add(notebook, "Methods", "Gene knockouts were made with a bacterial genome editing system."),
        "p53": add(notebook, "Tumours", "Mutations of p53 were found in 11873 of the tumours sequenced."),
        "german": add(notebook, "Vulkane", "Die Vulkanausbrüche auf Island verändern das Klima der Nordhalbkugel."),
        "arabic": add(notebook, "البراكين", "تتشكل البراكين عندما تصل الصهارة إلى سطح الأرض."),
    }
    return notebook, sources


def test_it_searches_hybrid_by_default_with_ranks_on_each_side_and_a_snippet(client: Any, library: Any) -> None:
    notebook, sources = library
    body = search(client, notebook, "CRISPR-Cas9 knockout")
    assert body["mode"] == "hybrid"
    assert "degraded" not in body
    top = body["results"][0]
    assert top["source_id"] == str(sources["crispr"].id)
    assert top["rank_keyword"] == 1 and top["rank_semantic"] is not None
    assert "CRISPR-Cas9" in top["snippet"]
    start, end = top["highlights"][0]
    assert top["snippet"][start:end].lower().startswith("crispr")


def test_a_quoted_phrase_finds_the_passage_with_the_phrase_first(client: Any, library: Any) -> None:
    notebook, sources = library
    for mode in ("keyword", "hybrid"):
        body = search(client, notebook, '"guide RNA directs"', mode=mode)
        assert body["results"][0]["source_id"] == str(sources["phrase"].id), mode
        assert str(sources["apart"].id) in {h["source_id"] for h in body["results"]}  # the words apart rank lower


def test_an_exact_identifier_outranks_paraphrases(client: Any, library: Any) -> None:
    notebook, sources = library
    for q, key in (("CRISPR-Cas9", "crispr"), ("p53", "p53"), ("11873", "p53")):
        body = search(client, notebook, q)
        assert body["results"][0]["source_id"] == str(sources[key].id), q
    keyword = search(client, notebook, "CRISPR-Cas9", mode="keyword")
    assert [h["source_id"] for h in keyword["results"]] == [str(sources["crispr"].id)]


def test_german_and_arabic_text_is_found_by_its_words(client: Any, library: Any) -> None:
    notebook, sources = library
    german = search(client, notebook, "Vulkanausbrüche Island", mode="keyword")
    assert german["results"][0]["source_id"] == str(sources["german"].id)
    arabic = search(client, notebook, "البراكين الصهارة", mode="keyword")
    assert arabic["results"][0]["source_id"] == str(sources["arabic"].id)


def test_a_query_of_stop_words_alone_is_a_400(client: Any, library: Any) -> None:
    notebook, _ = library
    response = client.get(f"/api/v1/notebooks/{notebook.id}/search/", {"q": "what is the of and"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "EMPTY_QUERY"
    bad_mode = client.get(f"/api/v1/notebooks/{notebook.id}/search/", {"q": "gene", "mode": "fuzzy"})
    assert bad_mode.status_code == 400


def test_deleting_or_reingesting_a_source_updates_both_indexes(client: Any, library: Any) -> None:
    notebook, sources = library
    assert search(client, notebook, "p53", mode="keyword")["results"]
    services.source_delete(source=sources["p53"])
    for mode in ("keyword", "semantic", "hybrid"):
        ids = {h["source_id"] for h in search(client, notebook, "p53 tumour mutations", mode=mode)["results"]}
        assert str(sources["p53"].id) not in ids, mode

    crispr = sources["crispr"]
    Source.objects.filter(id=crispr.id).update(text="Zebrafish fins regrow after amputation within weeks.")
    ingestion.source_process(source_id=str(crispr.id))
    assert search(client, notebook, "zebrafish", mode="keyword")["results"][0]["source_id"] == str(crispr.id)
    assert str(crispr.id) not in {
        h["source_id"] for h in search(client, notebook, "CRISPR-Cas9", mode="keyword")["results"]
    }
    assert Chunk.objects.filter(source=crispr).count() == 1


def test_it_answers_by_keywords_and_says_so_when_the_embedder_is_down(
    client: Any, library: Any, monkeypatch: Any
) -> None:
    notebook, sources = library

    def broken() -> Any:
        raise RuntimeError("model files missing")

    monkeypatch.setattr(embeddings, "embedder", broken)
    body = search(client, notebook, "CRISPR-Cas9")
    assert body["degraded"] == "keyword only"
    assert body["results"][0]["source_id"] == str(sources["crispr"].id)
    assert body["results"][0]["rank_semantic"] is None
    assert search(client, notebook, "CRISPR-Cas9", mode="keyword")["results"]


def test_the_cache_kept_up_to_date_by_difference_answers_as_a_rebuilt_one(owner: Any) -> None:
    """Sources added and deleted one by one (as an import and a clean-up do) are read into the
    process's cache by difference; every answer equals the one a cache built from scratch gives,
    including after the rows of deleted chunks are compacted away."""
    from notebooks import search as searching

    notebook = services.notebook_create(owner=owner, title="Growing")
    topics = ["volcano eruption ash", "glacier ice melt", "coral reef bleaching", "river delta sediment"]
    sources = [add(notebook, f"Note {i}", f"Field note {i} on {topics[i % 4]} near station {i}.") for i in range(6)]
    queries = ["volcano ash", "ice melt station", "sediment", "coral bleaching near station 3"]

    def answers(rebuilt: bool) -> list[list[tuple[str, float]]]:
        if rebuilt:
            searching._cache.clear()
        notebook.refresh_from_db()
        return [
            [(h.source_id, h.score) for h in searching.notebook_search(notebook=notebook, query=q, mode=mode).hits]
            for q in queries
            for mode in searching.MODES
        ]

    answers(rebuilt=True)  # the cache now holds six sources
    for step in range(6):
        if step % 2:
            services.source_delete(source=sources.pop(0))
        else:
            sources.append(add(notebook, f"Later {step}", f"Later note on {topics[step % 4]} at station {step}."))
        entry = searching._cache[notebook.id]
        kept = entry.snapshot
        incremental = answers(rebuilt=False)
        assert searching._cache[notebook.id] is entry and entry.snapshot is not kept  # updated, not replaced
        assert incremental == answers(rebuilt=True), step
        searching._cache[notebook.id] = entry  # go on from the incremental cache
    assert entry.snapshot is not None and entry.snapshot.alive is None  # 3 of 9 rows deleted: compacted
    live = set(Chunk.objects.filter(notebook=notebook).values_list("id", flat=True))
    assert set(entry.snapshot.ids.tolist()) == live

    # On PostgreSQL a transaction can commit chunks whose ids are below ones already read.
    late = factories.source(notebook, title="Late", status=Source.Status.READY)
    text = "A late note on volcano ash."
    # Its own vector: a copy of another chunk's would tie with it, and BLAS may order exact ties
    # by where the rows sit in memory.
    vector = embeddings.embedder().embed([text])[0].tobytes()
    gap = min(set(range(1, max(live))) - live)
    factories.chunk(late, text, id=gap, embedding=vector)
    Notebook.objects.filter(id=notebook.id).update(chunks_version=F("chunks_version") + 1)
    incremental = answers(rebuilt=False)
    assert gap in entry.snapshot.ids.tolist()  # type: ignore[union-attr]
    assert incremental == answers(rebuilt=True)
