"""The offline generator: cited, topical, deterministic reports from three unrelated documents."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from reports.generation import ExtractiveGenerator, GenerationError, ReportOptions, get_generator, get_generator_for
from reports.generation.types import Passage
from reports.tests.documents import make_passages
from reports.tests.helpers import (
    CITATION,
    assert_citations_resolve,
    assert_html_matches,
    assert_sentences_are_quoted,
    sections_of,
)

ROOT = Path(__file__).resolve().parents[2]
FIXED = {"Introduction", "Key points", "Conclusion", "Review questions"}


def _sources_per_section(markdown: str, draft_citations: dict[int, str]) -> dict[str, set[str]]:
    out = {}
    for heading, text in sections_of(markdown).items():
        if heading not in FIXED:
            out[heading] = {draft_citations[int(n)] for n in CITATION.findall(text)}
    return out


@pytest.mark.parametrize("length", ["short", "medium", "long"])
def test_it_writes_one_section_per_topic_and_never_mixes_topics(passages: list[Passage], length: str) -> None:
    draft = ExtractiveGenerator().generate(passages, ReportOptions(length=length))

    sources = _sources_per_section(draft.markdown, {c.number: c.source_id for c in draft.citations})
    assert list(sources) == draft.sections
    assert all(len(s) == 1 for s in sources.values()), sources
    assert set().union(*sources.values()) == {"src-photo", "src-volcano", "src-roads"}
    if length == "short":
        assert len(draft.sections) == 3
    assert 3 <= len(draft.sections) <= {"short": 3, "medium": 4, "long": 6}[length]


def test_it_names_sections_from_their_salient_words(passages: list[Passage]) -> None:
    draft = ExtractiveGenerator().generate(passages, ReportOptions(length="short"))

    names = [s.lower() for s in draft.sections]
    assert any("carbon dioxide" in n or "light" in n for n in names)
    assert any("lava" in n or "eruption" in n or "volcan" in n for n in names)
    assert any("road" in n for n in names)


@pytest.mark.parametrize("embedder", ["hashing", None])
@pytest.mark.parametrize("length", ["short", "medium", "long"])
def test_it_titles_each_section_with_a_phrase_found_in_the_passages_it_cites(embedder: str | None, length: str) -> None:
    passages = make_passages(embedder)
    draft = ExtractiveGenerator().generate(passages, ReportOptions(length=length))

    by_number = {c.number: c.chunk_id for c in draft.citations}
    texts = {p.chunk_id: " ".join(p.text.lower().split()) for p in passages}
    sections = {h: t for h, t in sections_of(draft.markdown).items() if h not in FIXED}
    assert list(sections) == draft.sections and len(set(draft.sections)) == len(draft.sections)
    for heading, text in sections.items():
        cited = {by_number[int(n)] for n in CITATION.findall(text)}
        assert any(heading.lower() in texts[chunk] for chunk in cited), (heading, cited)
        assert "," not in heading and " and " not in heading  # a phrase, not a list of words


def test_it_never_quotes_a_source_title_as_a_finding() -> None:
    title = "Plasma vitamin D metabolites and risk of colorectal cancer in women."
    abstract = (
        f"{title}\n\nHigher plasma vitamin D was associated with a lower risk of colorectal cancer in women. "
        "We followed 32,826 women for eleven years and measured their plasma vitamin D twice. "
        f"{title} "
        "The association was strongest for cancers of the distal colon and of the rectum."
    )
    heading = "Vitamin D and colorectal cancer in a large trial"
    trial = (
        f"{heading}\nVitamin D supplementation did not reduce the risk of colorectal cancer in the trial. "
        "Women took vitamin D and calcium daily for seven years and were followed for colorectal cancer."
    )
    passages = make_passages(extra=[("src-d", title, abstract), ("src-trial", heading, trial)])
    for length in ("short", "medium", "long"):
        draft = ExtractiveGenerator().generate(passages, ReportOptions(length=length, topic="vitamin D"))

        titles = [" ".join(t.lower().rstrip(".").split()) for t in (title, heading)]
        for citation in draft.citations:
            assert not any(" ".join(citation.quote.lower().split()).startswith(t) for t in titles), citation
        assert_citations_resolve(draft, passages)
        assert any(c.source_id == "src-d" for c in draft.citations)


def test_its_lead_says_where_the_sources_agree_and_disagree_with_citations() -> None:
    def one(source_id: str, text: str) -> Passage:
        return Passage(source_id, f"Study {source_id}", f"{source_id}:0", 0, None, text, 0.7)

    passages = [
        one("a", "Higher plasma vitamin D was associated with a lower risk of colorectal cancer in women."),
        one("b", "Vitamin D intake was associated with a reduced risk of colorectal cancer in men."),
        one("c", "Vitamin D supplementation did not reduce the risk of colorectal cancer in the trial."),
    ]
    draft = ExtractiveGenerator().generate(passages, ReportOptions(length="medium", topic="vitamin D and cancer"))

    lead = sections_of(draft.markdown)["Introduction"].strip().split("\n\n")[1]
    source_of = {c.number: c.source_id for c in draft.citations}
    assert lead.startswith(f"The sources disagree on {draft.sections[0].lower()}:"), lead
    effect, none = lead.split(", one source finds none ")
    assert "two sources report an effect or an association" in effect
    assert {source_of[int(n)] for n in CITATION.findall(effect)} == {"a", "b"}
    assert {source_of[int(n)] for n in CITATION.findall(none)} == {"c"}
    assert_citations_resolve(draft, passages)

    agreeing = ExtractiveGenerator().generate(passages[:2], ReportOptions(length="medium"))
    lead = sections_of(agreeing.markdown)["Introduction"].strip().split("\n\n")[1]
    assert "The sources agree on" in lead and "two sources report an effect or an association [1][2]" in lead


def test_it_groups_by_words_when_passages_have_no_embeddings() -> None:
    passages = make_passages(None)
    draft = ExtractiveGenerator().generate(passages, ReportOptions(length="short"))

    sources = _sources_per_section(draft.markdown, {c.number: c.source_id for c in draft.citations})
    assert len(sources) == 3 and all(len(s) == 1 for s in sources.values())


def test_it_quotes_every_cited_sentence_verbatim_from_the_cited_passage(passages: list[Passage]) -> None:
    for style in ("summary", "briefing", "study-guide"):
        draft = ExtractiveGenerator().generate(passages, ReportOptions(length="medium", style=style))

        assert_citations_resolve(draft, passages)
        assert_sentences_are_quoted(draft, passages)
        assert_html_matches(draft)


def test_it_lists_in_references_only_what_the_body_cites(passages: list[Passage]) -> None:
    draft = ExtractiveGenerator().generate(passages, ReportOptions(length="short"))

    references = draft.markdown.split("\n## References\n", 1)[1]
    listed = [int(n) for n in CITATION.findall(references)]
    assert listed == [c.number for c in draft.citations]
    assert len({c.chunk_id for c in draft.citations}) == len(draft.citations) < len(passages)
    photo = next(c for c in draft.citations if c.source_id == "src-photo")
    assert f"p. {photo.page}" in references


def test_it_writes_more_for_a_longer_length(passages: list[Passage]) -> None:
    counts = [
        ExtractiveGenerator().generate(passages, ReportOptions(length=length)).word_count
        for length in ("short", "medium", "long")
    ]

    assert counts[0] < counts[1] < counts[2]
    assert counts[2] > 2 * counts[0]


def test_it_gives_the_same_report_for_the_same_passages(passages: list[Passage]) -> None:
    options = ReportOptions(length="medium", style="briefing", topic="volcanic eruptions")
    first = ExtractiveGenerator().generate(passages, options)
    second = ExtractiveGenerator().generate(list(passages), options)

    assert first == second


def test_it_gives_the_same_report_whatever_the_hash_seed() -> None:
    script = (
        "import hashlib; from reports.tests.documents import make_passages; "
        "from reports.generation import ExtractiveGenerator, ReportOptions; "
        "d = ExtractiveGenerator().generate(make_passages('hashing'), ReportOptions(length='long')); "
        "print(hashlib.sha256(d.html.encode()).hexdigest())"
    )
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    here = ExtractiveGenerator().generate(make_passages("hashing"), ReportOptions(length="long"))
    digests.add(hashlib.sha256(here.html.encode()).hexdigest())

    assert len(digests) == 1


def test_it_prefers_sentences_about_the_topic(passages: list[Passage]) -> None:
    plain = ExtractiveGenerator().generate(passages, ReportOptions(length="short"))
    topical = ExtractiveGenerator().generate(
        passages, ReportOptions(length="short", topic="volcanic ash and air travel")
    )

    assert "air travel" not in plain.markdown
    assert "Volcanic ash disrupts air travel" in topical.markdown
    assert topical.title == "Volcanic ash and air travel"


def test_it_follows_the_style(passages: list[Passage]) -> None:
    briefing = ExtractiveGenerator().generate(passages, ReportOptions(length="short", style="briefing"))
    guide = ExtractiveGenerator().generate(passages, ReportOptions(length="short", style="study-guide"))

    key_points = sections_of(briefing.markdown)["Key points"].strip().splitlines()
    assert len(key_points) == 3 and all(line.startswith("- ") and CITATION.search(line) for line in key_points)
    assert "Review questions" in sections_of(guide.markdown)
    assert "Key terms:" in guide.markdown


def test_it_reports_progress_by_stage(passages: list[Passage]) -> None:
    seen: list[tuple[int, str]] = []
    draft = ExtractiveGenerator().generate(passages, ReportOptions(length="short"), lambda p, m: seen.append((p, m)))

    messages = [m for _, m in seen]
    assert messages[0] == "Outlining"
    assert [m for m in messages if m.startswith("Writing section")] == [
        f"Writing section {i} of {len(draft.sections)}" for i in range(1, len(draft.sections) + 1)
    ]
    assert messages[-1] == "Rendering"
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and 0 <= percents[0] and percents[-1] <= 100


def test_it_escapes_markup_from_sources(passages: list[Passage]) -> None:
    evil = replace(
        passages[0],
        chunk_id="evil:0",
        source_title="<b>Evil</b> & Co",
        text="Photosynthesis <script>alert('x')</script> turns light energy into chemical energy "
        "in chlorophyll [7] *now*.",
        embedding=passages[0].embedding,
    )
    draft = ExtractiveGenerator().generate([evil, *passages], ReportOptions(length="medium"))

    assert "<script>" in draft.citations[0].quote
    assert "<script" not in draft.html and "<b>" not in draft.html
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in draft.html
    assert "&lt;b&gt;Evil&lt;/b&gt; &amp; Co" in draft.html
    assert "\\<script\\>" in draft.markdown and "\\[7\\]" in draft.markdown
    assert_citations_resolve(draft, [evil, *passages])
    assert_html_matches(draft)


def test_it_copes_with_text_that_has_no_sentences() -> None:
    table = Passage("s1", "Prices", "s1:0", 0, None, "item price\napples 3\npears 4\nplums 5\ncherries 9 per kilo", 0.0)
    draft = ExtractiveGenerator().generate([table], ReportOptions(length="short"))

    assert draft.citations and draft.citations[0].quote in table.text
    assert len(draft.sections) == 1


def test_it_refuses_an_empty_notebook() -> None:
    with pytest.raises(GenerationError) as caught:
        ExtractiveGenerator().generate([], ReportOptions())

    assert caught.value.code == "NO_PASSAGES" and not caught.value.retryable


def test_it_uses_the_extractive_generator_unless_an_endpoint_and_model_are_set() -> None:
    assert isinstance(get_generator(), ExtractiveGenerator)
    assert isinstance(get_generator(llm_base_url="http://127.0.0.1:9/v1"), ExtractiveGenerator)
    assert isinstance(get_generator(llm_model="m"), ExtractiveGenerator)
    assert get_generator(llm_base_url="http://127.0.0.1:9/v1", llm_model="m").name == "llm"


def test_it_reads_the_llm_configuration_from_settings() -> None:
    configured = SimpleNamespace(LLM_BASE_URL="http://127.0.0.1:9/v1", LLM_MODEL="m", LLM_API_KEY="k", LLM_TIMEOUT=5)

    assert get_generator_for(configured).name == "llm"
    assert get_generator_for(SimpleNamespace(LLM_BASE_URL="", LLM_MODEL="m")).name == "extractive"
    assert get_generator_for(object()).name == "extractive"


def test_it_works_with_real_minilm_embeddings() -> None:
    pytest.importorskip("onnxruntime")
    try:
        passages = make_passages("minilm-onnx")
    except Exception as exc:  # the model package is optional on a developer machine
        pytest.skip(f"MiniLM is not installed: {exc}")
    draft = ExtractiveGenerator().generate(passages, ReportOptions(length="medium"))

    sources = _sources_per_section(draft.markdown, {c.number: c.source_id for c in draft.citations})
    assert len(sources) == 3 and all(len(s) == 1 for s in sources.values())
    assert_citations_resolve(draft, passages)
