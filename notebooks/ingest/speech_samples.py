"""Recordings of known scripts made at run time, for tests and ``make bench``: the piper voice
the podcasts use speaks them (nothing is downloaded), PyAV encodes them.

Also the word error rate a transcript is judged by.
"""

from __future__ import annotations

import io
import re
import wave
from collections.abc import Sequence
from typing import Any

import numpy as np

SCRIPT = (
    "Volcanoes form where molten rock rises through the crust. "
    "The lava that reaches the surface cools into new land. "
    "Scientists measure the gases a volcano releases to predict an eruption. "
    "Ash clouds can travel thousands of kilometres and ground aircraft for days."
)


def speak(sentences: Sequence[str], *, pause: float = 0.4) -> tuple[np.ndarray, int, list[tuple[float, float]]]:
    """(float32 samples, rate, (start, end) seconds of each sentence) of the sentences spoken."""
    from podcast.speech import HOSTS, PiperBackend

    backend = PiperBackend()
    pieces: list[np.ndarray] = []
    times: list[tuple[float, float]] = []
    rate = 22050
    at = 0
    for sentence in sentences:
        audio, rate = backend.synthesize(sentence, HOSTS["A"])
        gap = np.zeros(int(rate * pause), dtype=np.float32)
        times.append((at / rate, (at + len(audio)) / rate))
        pieces += [audio.astype(np.float32), gap]
        at += len(audio) + len(gap)
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32), rate, times


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def encode(samples: np.ndarray, rate: int, *, container: str = "mp4", codec: str = "aac", video: bool = False) -> bytes:
    """The samples encoded with PyAV (``mp4``/``aac``, ``ogg``/``libopus``, ``flac``…); with
    ``video`` a small black picture track beside the sound, as a screen recording has."""
    import av

    out = io.BytesIO()
    with av.open(out, "w", format=container) as muxer:
        picture = None
        if video:
            picture = muxer.add_stream("mpeg4", rate=5)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        out_rate = 48000 if codec == "libopus" else rate
        sound: Any = muxer.add_stream(codec, rate=out_rate)
        sound.layout = "mono"
        resampler = av.AudioResampler(format=sound.format.name, layout="mono", rate=out_rate)
        pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in sound.encode(resampled):
                muxer.mux(packet)
        for packet in sound.encode(None):
            muxer.mux(packet)
        if picture is not None:
            black = np.zeros((48, 64, 3), dtype=np.uint8)
            for index in range(int(len(samples) / rate * 5)):
                image = av.VideoFrame.from_ndarray(black, format="rgb24")
                image.pts = index
                for packet in picture.encode(image):
                    muxer.mux(packet)
            for packet in picture.encode(None):
                muxer.mux(packet)
    return out.getvalue()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance over words."""
    ref, hyp = words(reference), words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, other in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
        previous = current
    return previous[-1] / max(len(ref), 1)
