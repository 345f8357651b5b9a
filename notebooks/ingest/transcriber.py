"""The speech model held once per worker, in a process of its own, for the work-horses.

CTranslate2 runs a model on threads it starts when the model loads, and threads do not survive
``fork``: a model loaded in a forking worker's parent hangs in every work-horse at its first
encode. So the parent starts this module as a process of its own (a fresh interpreter, not a
fork) when it preloads; the process loads the model once and transcribes, one connection at a
time, the windows of audio that work-horses send over a Unix socket. A work-horse that goes
away (a cancel, a time limit, a kill) closes its connection; the model process notices when it
sends the next segment and drops that window. It exits when its worker does.

If the model process cannot be reached, a work-horse loads the model itself, as it would
without one (0.3-0.4 s a job); if it dies in the middle of a window, the transcription fails
with ``TranscriberGone`` and the job is retried.

Protocol (one connection per window): the horse sends a JSON line
``{"samples": n, "options": {...}}`` then ``n`` float32 samples; the model process answers with
JSON lines: ``{"language": ...}``, one ``{"start", "end", "text"}`` per segment, then
``{"done": true}``, or ``{"error": message}`` at any point.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from notebooks.ingest.media import Segment, get_model

logger = logging.getLogger(__name__)

READY_TIMEOUT = 120.0  # seconds for the model process to load the model and listen
GONE = "The speech model's process stopped while transcribing; the job will be retried."


class TranscriberGone(RuntimeError):
    """The model process stopped in the middle of a window."""


@dataclass(frozen=True)
class Info:
    language: str


@dataclass
class _Server:
    process: subprocess.Popen[bytes]
    path: str


_server: _Server | None = None  # started in a worker's parent; its horses inherit it


def start(size: str, cache_root: Path, threads: int = 0) -> str:
    """Start the model process for this worker (once) and wait until it listens; its socket path."""
    global _server
    if _server is not None and _server.process.poll() is None:
        return _server.path
    folder = tempfile.mkdtemp(prefix="quire-speech-")
    path = os.path.join(folder, "model.sock")
    command = [sys.executable, "-m", __name__, "--socket", path, "--size", size, "--cache", str(cache_root)]
    command += ["--threads", str(threads), "--parent", str(os.getpid())]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + READY_TIMEOUT
    while not os.path.exists(path):
        if process.poll() is not None:
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError(f"the speech model process exited with {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            process.kill()
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError("the speech model process was not ready in time")
        time.sleep(0.05)
    _server = _Server(process, path)
    logger.info("speech model process %s listening on %s", process.pid, path)
    return path


def socket_path() -> str | None:
    """Where the model process listens, when this process or its worker parent started one.
    (A work-horse must not poll the process: it is its parent's child, not its own.)"""
    return _server.path if _server is not None else None


class RemoteModel:
    """Quacks like faster-whisper's ``WhisperModel.transcribe`` for ``media.transcribe``,
    running it in the worker's model process; loads a model here (``fallback``) when that
    process cannot be reached."""

    def __init__(self, path: str, fallback: Callable[[], Any]) -> None:
        self.path = path
        self.fallback = fallback

    def transcribe(self, samples: np.ndarray, **options: Any) -> tuple[Iterator[Segment], Info]:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
        except OSError:
            conn.close()
            logger.warning("the speech model process is not reachable at %s; loading the model here", self.path)
            return self.fallback().transcribe(samples, **options)
        try:
            data = np.ascontiguousarray(samples, dtype=np.float32)
            header = json.dumps({"samples": int(data.size), "options": options}).encode() + b"\n"
            conn.sendall(header)
            conn.sendall(data.tobytes())
            reader = conn.makefile("rb")
            first = _message(reader)
        except OSError as exc:
            conn.close()
            raise TranscriberGone(GONE) from exc
        except BaseException:
            conn.close()
            raise
        if "error" in first:
            conn.close()
            raise RuntimeError(f"the speech model failed: {first['error']}")
        return _pieces(conn, reader), Info(language=str(first["language"]))


def _message(reader: Any) -> dict[str, Any]:
    try:
        line = reader.readline()
    except OSError as exc:
        raise TranscriberGone(GONE) from exc
    if not line:
        raise TranscriberGone(GONE)
    found: dict[str, Any] = json.loads(line)
    return found


def _pieces(conn: socket.socket, reader: Any) -> Iterator[Segment]:
    # Closing the connection (the consumer stopped: a cancel, an error) tells the model process
    # to drop the window.
    try:
        while True:
            message = _message(reader)
            if message.get("done"):
                return
            if "error" in message:
                raise RuntimeError(f"the speech model failed: {message['error']}")
            yield Segment(float(message["start"]), float(message["end"]), str(message["text"]))
    finally:
        reader.close()
        conn.close()


# --- the model process ---------------------------------------------------------------------------


def serve(path: str, size: str, cache_root: Path, threads: int, parent: int) -> None:
    model = get_model(size, cache_root, threads)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}"
    listener.bind(tmp)
    listener.listen(8)
    os.replace(tmp, path)  # the path appears only once the model is loaded and the socket listens
    listener.settimeout(1.0)
    try:
        while os.getppid() == parent:  # a worker that died leaves this process to init
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(None)
                _handle(model, conn)
    finally:
        listener.close()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def _handle(model: Any, conn: socket.socket) -> None:
    reader = conn.makefile("rb")
    try:
        header = json.loads(reader.readline() or b"{}")
        count = int(header.get("samples", 0))
        raw = reader.read(count * 4)
        if len(raw) != count * 4:
            return  # the horse went away before it had sent its window
        samples = np.frombuffer(raw, dtype=np.float32)
        try:
            pieces, info = model.transcribe(samples, **header.get("options", {}))
            _send(conn, {"language": info.language})
            for piece in pieces:
                _send(conn, {"start": piece.start, "end": piece.end, "text": piece.text})
            _send(conn, {"done": True})
        except (BrokenPipeError, ConnectionResetError):
            logger.info("a work-horse stopped listening; its window is dropped")
        except Exception as exc:
            logger.exception("transcription failed")
            _send(conn, {"error": f"{type(exc).__name__}: {exc}"})
    except (BrokenPipeError, ConnectionResetError, ValueError):
        return
    finally:
        reader.close()


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--size", required=True)
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s speech-model %(levelname)s %(message)s")
    serve(args.socket, args.size, args.cache, args.threads, args.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
