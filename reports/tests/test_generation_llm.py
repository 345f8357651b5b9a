"""The chat client and the LLM generator against an OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import socket
import time

import pytest

from notebooks.llm import LLMError, chat
from reports.generation import GenerationError, LLMGenerator, ReportOptions, get_generator
from reports.generation.types import Passage
from reports.tests.conftest import FakeChat
from reports.tests.helpers import CITATION, assert_citations_resolve, assert_html_matches, body_of, sections_of

KEY = "sk-test-secret"
MESSAGES = [{"role": "user", "content": "Say hi [1]"}]


def _generator(fake: FakeChat, timeout: float = 5.0) -> LLMGenerator:
    generator = get_generator(llm_base_url=fake.url, llm_model="test-model", llm_api_key=KEY, timeout=timeout)
    assert isinstance(generator, LLMGenerator)
    return generator


def test_it_posts_an_openai_chat_completion(fake_chat: FakeChat) -> None:
    reply = chat(MESSAGES, base_url=fake_chat.url + "/", model="test-model", api_key=KEY, timeout=5, max_tokens=50)

    assert "<think>" in reply
    (request,) = fake_chat.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["body"]["model"] == "test-model" and request["body"]["max_tokens"] == 50
    assert request["body"]["messages"] == MESSAGES


def test_it_reports_a_server_error_as_retryable_unavailability(fake_chat: FakeChat) -> None:
    fake_chat.mode = "500"
    with pytest.raises(LLMError) as caught:
        chat(MESSAGES, base_url=fake_chat.url, model="m", api_key=KEY)

    assert (caught.value.code, caught.value.retryable) == ("LLM_UNAVAILABLE", True)
    assert "HTTP 500" in caught.value.message


def test_it_reports_a_rejected_request_as_final_without_secrets(fake_chat: FakeChat) -> None:
    fake_chat.mode = "400"
    with pytest.raises(LLMError) as caught:
        chat(MESSAGES, base_url=fake_chat.url, model="m", api_key=KEY)

    error = caught.value
    assert (error.code, error.retryable) == ("LLM_REJECTED", False)
    assert "Incorrect API key provided" in error.message
    assert KEY not in str(error) and "sk-" not in error.message
    assert "http" not in error.message and "127.0.0.1" not in error.message


def test_it_times_out_a_slow_server(fake_chat: FakeChat) -> None:
    fake_chat.mode = "slow"
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        chat(MESSAGES, base_url=fake_chat.url, model="m", timeout=0.3)

    assert time.monotonic() - started < 3
    assert (caught.value.code, caught.value.retryable) == ("LLM_TIMEOUT", True)
    assert caught.value.message == "The language model did not answer within 0.3 seconds."


def test_it_reports_an_unreachable_endpoint_without_its_address() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    with pytest.raises(LLMError) as caught:
        chat(MESSAGES, base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=2)

    assert (caught.value.code, caught.value.retryable) == ("LLM_UNAVAILABLE", True)
    assert str(port) not in caught.value.message


def test_it_rejects_an_answer_that_is_no_chat_completion(fake_chat: FakeChat) -> None:
    fake_chat.mode = "garbage"
    with pytest.raises(LLMError) as caught:
        chat(MESSAGES, base_url=fake_chat.url, model="m")

    assert caught.value.code == "LLM_BAD_RESPONSE"


def test_it_writes_a_cited_report_with_the_model(fake_chat: FakeChat, passages: list[Passage]) -> None:
    seen: list[tuple[int, str]] = []
    draft = _generator(fake_chat).generate(passages, ReportOptions(length="short"), lambda p, m: seen.append((p, m)))

    assert draft.generator == "llm" and not draft.warnings
    assert len(draft.sections) == 3 and len(fake_chat.requests) == 4  # three sections and a conclusion
    assert_citations_resolve(draft, passages)
    assert_html_matches(draft)
    body = body_of(draft.markdown)
    assert "secret chain of thought" not in body and "Section title again" not in body
    assert "made up" not in draft.markdown, "the model's own reference list is dropped"
    assert "<script" not in draft.html and "\\<script>" in body
    assert [m for _, m in seen if m.startswith("Writing section")] == [f"Writing section {i} of 3" for i in (1, 2, 3)]
    assert seen[-1] == (92, "Rendering")
    texts = {c.number: next(p.text.lower() for p in passages if p.chunk_id == c.chunk_id) for c in draft.citations}
    for heading in draft.sections:
        cited = [int(n) for n in CITATION.findall(sections_of(draft.markdown)[heading])]
        assert cited
        # Titled, like the extractive report, by a phrase of a passage the section cites.
        assert any(heading.lower() in " ".join(texts[n].split()) for n in cited), heading
    # The prompt numbers the section's passages from 1 and quotes them whole.
    first_prompt = fake_chat.requests[0]["body"]["messages"][-1]["content"]
    assert "[1] Source: How plants capture light, page 1\n" in first_prompt
    assert "Cite only these numbers: [1]," in first_prompt


def test_it_drops_citations_to_passages_that_were_not_given(fake_chat: FakeChat, passages: list[Passage]) -> None:
    fake_chat.mode = "bogus"
    draft = _generator(fake_chat).generate(passages, ReportOptions(length="short"))

    assert "[99]" not in draft.markdown and "dragons" not in draft.markdown, "the claim goes with its citation"
    assert "The other passages add detail" in draft.markdown
    assert all(int(n) <= len(draft.citations) for n in CITATION.findall(draft.markdown))
    assert [w for w in draft.warnings if "[99]" in w] == [
        f"Section {i}: removed citation [99], which is not one of the passages given." for i in (1, 2, 3)
    ]
    assert_citations_resolve(draft, passages)


def test_it_fails_readably_when_the_model_cites_nothing(fake_chat: FakeChat, passages: list[Passage]) -> None:
    fake_chat.mode = "uncited"
    with pytest.raises(GenerationError) as caught:
        _generator(fake_chat).generate(passages, ReportOptions(length="short"))

    assert (caught.value.code, caught.value.retryable) == ("LLM_BAD_RESPONSE", True)


@pytest.mark.parametrize(
    ("mode", "code", "retryable"),
    [("500", "LLM_UNAVAILABLE", True), ("400", "LLM_REJECTED", False), ("slow", "LLM_TIMEOUT", True)],
)
def test_it_turns_endpoint_failures_into_generation_errors(
    fake_chat: FakeChat, passages: list[Passage], mode: str, code: str, retryable: bool
) -> None:
    fake_chat.mode = mode
    with pytest.raises(GenerationError) as caught:
        _generator(fake_chat, timeout=0.3).generate(passages, ReportOptions(length="short"))

    assert (caught.value.code, caught.value.retryable) == (code, retryable)
    assert KEY not in caught.value.message and fake_chat.url not in caught.value.message
