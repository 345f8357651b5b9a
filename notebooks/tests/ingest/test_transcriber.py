"""The worker's speech-model process and its client, over a real Unix socket, with a stand-in
model (the real one is exercised by tests/test_media.py through a worker)."""

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from notebooks.ingest import transcriber
from notebooks.ingest.media import Segment
from notebooks.ingest.transcriber import Info, RemoteModel, TranscriberGone


class CountingModel:
    """Says one segment per second of audio; notes what it was given and how far it got."""

    def __init__(self) -> None:
        self.received: list[tuple[np.ndarray, dict[str, Any]]] = []
        self.produced = 0
        self.finished = threading.Event()

    def transcribe(self, samples: np.ndarray, **options: Any) -> tuple[Iterator[Segment], Info]:
        self.received.append((samples.copy(), options))

        def pieces() -> Iterator[Segment]:
            try:
                for second in range(len(samples) // 16_000):
                    self.produced += 1
                    yield Segment(float(second), second + 1.0, f"second {second}")
            finally:
                self.finished.set()

        return pieces(), Info(language="en")


def _serve_once(model: Any, path: Path) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            transcriber._handle(model, conn)
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _no_fallback() -> Any:
    raise AssertionError("the model process was reachable")


def test_a_window_goes_to_the_model_process_and_its_segments_come_back_in_order(tmp_path: Path) -> None:
    model = CountingModel()
    thread = _serve_once(model, tmp_path / "m.sock")
    audio = np.linspace(-1, 1, 5 * 16_000, dtype=np.float32)
    pieces, info = RemoteModel(str(tmp_path / "m.sock"), _no_fallback).transcribe(audio, language=None, beam_size=5)
    assert info.language == "en"
    assert list(pieces) == [Segment(float(s), s + 1.0, f"second {s}") for s in range(5)]
    thread.join(5)
    ((sent, options),) = model.received
    assert np.array_equal(sent, audio) and options == {"language": None, "beam_size": 5}


def test_a_horse_that_stops_listening_makes_the_model_process_drop_the_window(tmp_path: Path) -> None:
    model = CountingModel()
    thread = _serve_once(model, tmp_path / "m.sock")
    hour = np.zeros(3600 * 16_000, dtype=np.float32)
    pieces, _info = RemoteModel(str(tmp_path / "m.sock"), _no_fallback).transcribe(hour)
    assert next(pieces).text == "second 0"
    pieces.close()  # what a cancel does: the consumer stops, the connection closes
    assert model.finished.wait(10)
    thread.join(10)
    assert not thread.is_alive() and model.produced < 3600


def test_an_unreachable_model_process_means_the_model_is_loaded_here(tmp_path: Path) -> None:
    local = CountingModel()
    pieces, _info = RemoteModel(str(tmp_path / "nobody.sock"), lambda: local).transcribe(np.zeros(32_000, np.float32))
    assert [p.text for p in pieces] == ["second 0", "second 1"] and len(local.received) == 1


def test_a_model_process_that_dies_mid_window_fails_the_transcription_as_retryable(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "m.sock"))
    listener.listen(1)

    def die_after_one_segment() -> None:
        conn, _ = listener.accept()
        reader = conn.makefile("rb")
        reader.read(int(json.loads(reader.readline())["samples"]) * 4)
        conn.sendall(b'{"language": "en"}\n{"start": 0.0, "end": 1.0, "text": "hello"}\n')
        conn.close()

    threading.Thread(target=die_after_one_segment, daemon=True).start()
    pieces, _info = RemoteModel(str(tmp_path / "m.sock"), _no_fallback).transcribe(np.zeros(16_000, np.float32))
    assert next(pieces).text == "hello"
    with pytest.raises(TranscriberGone):
        next(pieces)
    listener.close()
