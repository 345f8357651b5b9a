"""The LLM answerer's check of a reply, and the streaming client, without Django or a server:
the real MiniLM embedder, and httpx's mock transport standing in for the endpoint."""

import json

import httpx
import pytest

from notebooks.answer import DECLINE, Evidence
from notebooks.answer_llm import EmbedFn, answer_with_llm, checked, messages
from notebooks.ingest.embedding import get_embedder
from notebooks.llm import LLM_BAD_RESPONSE, LLM_UNAVAILABLE, LLMError, chat_stream

VOLCANOES = (
    "Volcanoes form where magma from the mantle reaches the surface of the Earth. "
    "Volcanologists watch ground swelling, small earthquakes and sulfur dioxide to forecast eruptions. "
    "The 1991 eruption of Pinatubo cooled the global climate by about half a degree for two years."
)
PLANTS = (
    "Photosynthesis turns light energy, water and carbon dioxide into sugar and oxygen. "
    "Chlorophyll in the chloroplasts absorbs mostly red and blue light and reflects green."
)
PASSAGES = [
    Evidence(11, "s-volcano", "Volcanoes", 0, None, VOLCANOES),
    Evidence(22, "s-plants", "Photosynthesis", 0, 3, PLANTS),
]


@pytest.fixture(scope="module")
def embed() -> EmbedFn:
    return get_embedder("minilm-onnx").embed


def test_it_keeps_supported_markers_in_any_notation_and_quotes_exactly(embed: EmbedFn) -> None:
    draft = (
        "<think>the user wants forecasts</think>Volcanologists forecast eruptions from ground swelling, small "
        "earthquakes and sulfur dioxide. [1] Chlorophyll absorbs mostly red and blue light [1, 2].\n\n"
        "## References\n[1] Volcanoes\n[2] Photosynthesis"
    )
    answer = checked(draft, PASSAGES, embed)
    assert answer.answered is True
    assert answer.text == (
        "Volcanologists forecast eruptions from ground swelling, small earthquakes and sulfur dioxide. [1] "
        "Chlorophyll absorbs mostly red and blue light. [2]"
    )
    first, second = answer.citations
    assert (first.chunk_id, second.chunk_id, second.page) == (11, 22, 3)
    for citation, passage in ((first, PASSAGES[0]), (second, PASSAGES[1])):
        assert passage.text[citation.start : citation.end] == citation.quote
    assert "forecast eruptions" in first.quote and "red and blue light" in second.quote


def test_a_reply_that_cites_nothing_that_holds_is_declined(embed: EmbedFn) -> None:
    for draft in (DECLINE, "Dragons sleep inside volcanoes [1]. Unicorns eat chlorophyll [7]."):
        answer = checked(draft, PASSAGES, embed)
        assert (answer.answered, answer.text, answer.citations) == (False, DECLINE, [])


def test_an_uncited_sentence_stays_and_a_cited_one_is_checked(embed: EmbedFn) -> None:
    draft = (
        "The 1991 Pinatubo eruption cooled the global climate by about half a degree [2]. "
        "The sources do not say how long eruptions last."
    )
    answer = checked(draft, PASSAGES, embed)
    # Cited to the plants, held by the volcanoes: the marker moves.
    assert answer.text == (
        "The 1991 Pinatubo eruption cooled the global climate by about half a degree. [1] "
        "The sources do not say how long eruptions last."
    )
    assert [c.source_id for c in answer.citations] == ["s-volcano"]


def test_the_prompt_holds_the_instruction_the_passages_the_turns_and_the_question() -> None:
    chat = messages("And in plants?", PASSAGES, [("How do eruptions start?", "Magma rises. [1] [2]")])
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user"]
    assert chat[2]["content"] == "Magma rises."
    assert chat[3]["content"] == (
        f"Passages:\n\n[1] Source: Volcanoes\n{VOLCANOES}\n\n[2] Source: Photosynthesis, page 3\n{PLANTS}"
        "\n\nQuestion: And in plants?"
    )


def _sse(*pieces: str) -> bytes:
    lines = [f"data: {json.dumps({'choices': [{'delta': {'content': p}}]})}\n\n" for p in pieces]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def test_chat_stream_yields_the_pieces_in_order_and_maps_failures() -> None:
    def endpoint(body: bytes, status: int = 200, kind: str = "text/event-stream") -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: httpx.Response(status, content=body, headers={"content-type": kind}))

    def stream(transport: httpx.MockTransport) -> list[str]:
        return list(chat_stream([{"role": "user", "content": "hi"}], base_url="http://llm/v1", model="m",
                                transport=transport))  # fmt: skip

    assert stream(endpoint(_sse("Magma ", "rises", "."))) == ["Magma ", "rises", "."]
    # A server that ignores "stream" answers with the whole completion.
    whole = json.dumps({"choices": [{"message": {"content": "All at once."}}]}).encode()
    assert stream(endpoint(whole, kind="application/json")) == ["All at once."]
    with pytest.raises(LLMError) as failed:
        stream(endpoint(b'{"error": {"message": "boom"}}', status=500, kind="application/json"))
    assert (failed.value.code, failed.value.retryable) == (LLM_UNAVAILABLE, True)
    with pytest.raises(LLMError) as empty:
        stream(endpoint(b"data: [DONE]\n\n"))
    assert empty.value.code == LLM_BAD_RESPONSE


def test_answer_with_llm_reports_each_piece_then_checks_the_whole(embed: EmbedFn) -> None:
    seen: list[tuple[str, str]] = []
    reply = ["Chlorophyll absorbs ", "mostly red and blue light ", "[2]. Dragons [9]."]
    answer = answer_with_llm(
        "What does chlorophyll absorb?",
        PASSAGES,
        embed,
        lambda chat: iter(reply),
        on_text=lambda t, d: seen.append((t, d)),
    )
    assert [d for _, d in seen] == reply
    assert seen[-1][0] == "".join(reply)
    assert answer.text == "Chlorophyll absorbs mostly red and blue light. [1]"
