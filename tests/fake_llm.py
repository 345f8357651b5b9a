"""A fake OpenAI-compatible chat endpoint on 127.0.0.1 whose behaviour a test sets: the
generation tests call it directly, the end-to-end report and question tests point a worker at
it. A request with ``"stream": true`` gets its reply as server-sent chunks, a word at a time."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeChat:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1. ``mode``: good, uncited, bogus,
    slow (answers after ``release`` or 5 s), 500, 400, garbage; for questions also misattributed
    (cites passage 2 for passage 1's sentence) and obey (a model that does what a passage tells
    it: repeats its whole context). ``script``: modes for the next requests, one each, before
    ``mode`` applies again. ``delay``: seconds between streamed pieces."""

    url: str
    mode: str = "good"
    script: list[str] = field(default_factory=list)
    delay: float = 0.02
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def _question_answer(messages: list[dict[str, str]], mode: str) -> str:
    """The first sentence of the first two passages, each cited, as a faithful model would."""
    if mode == "obey":
        return "\n\n".join(m["content"] for m in messages)
    prompt = messages[-1]["content"]
    passages = re.findall(r"^\[(\d+)\] Source:.*\n(.+)$", prompt, flags=re.MULTILINE)
    sentences = [(int(n), re.split(r"(?<=[.!?])\s+", text)[0].rstrip(".")) for n, text in passages[:2]]
    if mode == "misattributed":
        return f"{sentences[0][1]} [{len(passages)}]."
    reply = " ".join(f"{sentence} [{n}]." for n, sentence in sentences)
    if mode == "bogus":
        reply += " Dragons breathe fire inside every volcano [9]."
    return reply


def _answer(prompt: str, mode: str) -> str:
    numbers = [int(n) for n in re.findall(r"^\[(\d+)\] Source:", prompt, flags=re.MULTILINE)] or [1]
    if mode == "uncited":
        return "This section is written from memory and cites nothing at all, which must not pass for a report section."
    if "Write the report's conclusion" in prompt:
        return f"In short, the sources describe several distinct subjects [{numbers[0]}]."
    first, last = numbers[0], numbers[-1]
    passage = re.search(r"^\[1\] Source:.*\n(.+)$", prompt, flags=re.MULTILINE)
    opening = passage.group(1).split(". ")[0] if passage else "The passages agree"
    reply = (
        "<think>secret chain of thought</think>\n## Section title again\n\n"
        f"{opening} [{first}]. The other passages add detail <script>alert(1)</script> [{first}, {last}].\n\n"
        f"- A point drawn from the last passage [passage {last}]\n"
    )
    if mode == "bogus":
        reply += "\nAn invented claim about dragons [99].\n"
    return reply + "\n## References\n[1] Something the model made up\n"


def _handler(state: FakeChat) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            mode = state.script.pop(0) if state.script else state.mode
            if mode == "slow":
                state.release.wait(5)
                return self._send(200, {"choices": [{"message": {"role": "assistant", "content": "late"}}]})
            if mode == "500":
                return self._send(500, {"error": {"message": "upstream exploded"}})
            if mode == "400":
                message = (
                    "Incorrect API key provided: sk-test-secret. See https://example.invalid/keys?key=sk-test-secret"
                )
                return self._send(400, {"error": {"message": message}})
            if mode == "garbage":
                return self._send(200, {"unexpected": True})
            if "\n\nQuestion: " in body["messages"][-1]["content"]:
                content = _question_answer(body["messages"], mode)
            else:
                content = _answer(body["messages"][-1]["content"], mode)
            if body.get("stream"):
                return self._stream(content)
            return self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})

        def _stream(self, content: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                for piece in re.findall(r"\S+\s*", content):
                    chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(state.delay)
                self.wfile.write(b"data: [DONE]\n\n")
            except OSError:
                pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (the timeout test)

    return Handler


@contextmanager
def serve_fake_chat() -> Iterator[FakeChat]:
    state = FakeChat(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    server.block_on_close = False
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
