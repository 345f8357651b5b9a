"""A small client for OpenAI-compatible chat completion endpoints (OpenAI, vLLM, llama.cpp,
Ollama's /v1, LiteLLM...), configured by arguments so it needs no Django.

Every failure is an ``LLMError`` with a machine-readable code and a message safe to show a user:
messages never contain the endpoint URL, the API key or a token-like string echoed back by the
server.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import httpx

logger = logging.getLogger(__name__)

LLM_TIMEOUT: Final = "LLM_TIMEOUT"
LLM_UNAVAILABLE: Final = "LLM_UNAVAILABLE"
LLM_BAD_RESPONSE: Final = "LLM_BAD_RESPONSE"
LLM_REJECTED: Final = "LLM_REJECTED"
_DETAIL_CHARS: Final = 200
# Keys (even masked ones, "sk-ab***yz"), long opaque tokens, and URLs, which may carry either.
_SECRETISH: Final = re.compile(
    r"\b(?:sk|pk|rk|key|tok|token)[-_]\S+|\bbearer\s+\S+|\b[\w-]{32,}|\w+://\S+", re.IGNORECASE
)


class LLMError(Exception):
    """``retryable``: whether the same request may succeed later (timeouts, 5xx, rate limits)."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable

    def __repr__(self) -> str:
        return f"LLMError({self.code!r}, {self.message!r}, retryable={self.retryable})"


def chat(
    messages: Sequence[Mapping[str, str]],
    *,
    base_url: str,
    model: str,
    api_key: str | None = None,
    timeout: float = 60.0,
    max_tokens: int = 1200,
    temperature: float = 0.2,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """The assistant's reply to ``messages`` ([{"role": ..., "content": ...}]).

    ``base_url`` is the API root that ``/chat/completions`` is appended to, e.g.
    ``https://api.openai.com/v1`` or ``http://127.0.0.1:8080/v1``.
    """
    url, headers, payload = _request(base_url, messages, model, api_key, max_tokens, temperature, stream=False)
    with _transport_errors(timeout):
        with httpx.Client(timeout=timeout, follow_redirects=False, transport=transport) as client:
            response = client.post(url, json=payload, headers=headers)
    return _reply(response, api_key)


def _request(
    base_url: str,
    messages: Sequence[Mapping[str, str]],
    model: str,
    api_key: str | None,
    max_tokens: int,
    temperature: float,
    *,
    stream: bool,
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL, headers and body of a chat completion request."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    payload = {
        "model": model,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": stream,
    }
    return base_url.rstrip("/") + "/chat/completions", headers, payload


@contextmanager
def _transport_errors(timeout: float) -> Iterator[None]:
    """httpx's failures as the LLMErrors callers handle."""
    try:
        yield
    except httpx.TimeoutException:
        raise LLMError(
            LLM_TIMEOUT, f"The language model did not answer within {timeout:g} seconds.", retryable=True
        ) from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        raise LLMError(LLM_UNAVAILABLE, "The language model endpoint URL is not valid.", retryable=False) from None
    except httpx.HTTPError as exc:
        logger.warning("LLM endpoint unreachable or stream broken: %s", type(exc).__name__)
        raise LLMError(LLM_UNAVAILABLE, "The language model endpoint could not be reached.", retryable=True) from None


def chat_stream(
    messages: Sequence[Mapping[str, str]],
    *,
    base_url: str,
    model: str,
    api_key: str | None = None,
    timeout: float = 60.0,
    max_tokens: int = 1200,
    temperature: float = 0.2,
    transport: httpx.BaseTransport | None = None,
) -> Iterator[str]:
    """The assistant's reply to ``messages`` as it is written: the pieces of text the endpoint
    streams (``"stream": true``, server-sent ``data:`` lines). ``timeout`` bounds the connection
    and each wait for the next piece, not the whole reply, so a long answer is not cut while a
    stalled endpoint is. The same ``LLMError``s as ``chat``, raised where they happen."""
    url, headers, payload = _request(base_url, messages, model, api_key, max_tokens, temperature, stream=True)
    wrote = False
    with _transport_errors(timeout):
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, transport=transport) as client,
            client.stream("POST", url, json=payload, headers=headers) as response,
        ):
            if response.status_code != 200:
                response.read()
                _reply(response, api_key)  # raises the error its status means
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                # A server that ignores "stream" sends the whole completion at once.
                response.read()
                yield _reply(response, api_key)
                return
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                piece = _delta(data)
                if piece:
                    wrote = True
                    yield piece
    if not wrote:
        raise LLMError(LLM_BAD_RESPONSE, "The language model returned an empty answer.", retryable=True)


def _delta(data: str) -> str:
    try:
        body: Any = json.loads(data)
        choice = body["choices"][0] if body.get("choices") else {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        message = "The language model endpoint sent a stream that is not a chat completion."
        raise LLMError(LLM_BAD_RESPONSE, message, retryable=True) from None
    if isinstance(body.get("error"), dict | str):
        raise LLMError(LLM_UNAVAILABLE, "The language model endpoint failed while answering.", retryable=True)
    piece = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
    return piece if isinstance(piece, str) else ""


def _reply(response: httpx.Response, api_key: str | None) -> str:
    status = response.status_code
    if status >= 500 or status == 429:
        what = "is rate limiting requests" if status == 429 else "failed"
        raise LLMError(LLM_UNAVAILABLE, f"The language model endpoint {what} (HTTP {status}).", retryable=True)
    if status == 408:
        raise LLMError(LLM_TIMEOUT, "The language model endpoint timed out (HTTP 408).", retryable=True)
    if status >= 400:
        detail = _error_detail(response, api_key)
        reason = {401: "refused the API key", 403: "refused access", 404: "does not know this model or path"}.get(
            status, "rejected the request"
        )
        message = f"The language model endpoint {reason} (HTTP {status})" + (f": {detail}" if detail else ".")
        raise LLMError(LLM_REJECTED, message, retryable=False)
    if status != 200:
        raise LLMError(LLM_BAD_RESPONSE, f"The language model endpoint answered HTTP {status}.", retryable=True)
    try:
        body: Any = response.json()
        content = body["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        message = "The language model endpoint sent an answer that is not a chat completion."
        raise LLMError(LLM_BAD_RESPONSE, message, retryable=True) from None
    if not isinstance(content, str) or not content.strip():
        raise LLMError(LLM_BAD_RESPONSE, "The language model returned an empty answer.", retryable=True)
    return content


def _error_detail(response: httpx.Response, api_key: str | None) -> str:
    """The server's own explanation (it often says what to fix), without anything secret."""
    try:
        body: Any = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    if not isinstance(message, str):
        return ""
    if api_key:
        message = message.replace(api_key, "[redacted]")
    message = _SECRETISH.sub("[redacted]", " ".join(message.split()))
    if len(message) > _DETAIL_CHARS:
        message = message[:_DETAIL_CHARS].rsplit(" ", 1)[0] + "…"
    return message
