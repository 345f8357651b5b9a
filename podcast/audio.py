"""Audio plumbing for podcasts: WAV/MP3 encoding, joining segments, loudness, pitch and duration checks.

Pure numpy + the standard library (and lameenc for MP3); no Django.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from pathlib import Path

import lameenc
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

PAUSE_BETWEEN_TURNS_SECONDS = 0.35
TARGET_RMS_DBFS = -20.0
PEAK_CEILING = 0.95
MP3_BITRATE_KBPS = 64


class AudioError(ValueError):
    """Audio bytes that cannot be decoded or do not match what was expected."""


# --- WAV -------------------------------------------------------------------------------------------


def to_int16(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).astype(np.int16)


def wav_bytes(samples: npt.NDArray[np.floating], sample_rate: int) -> bytes:
    """16-bit mono PCM WAV of float samples in [-1, 1]."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(to_int16(samples).tobytes())
    return buffer.getvalue()


def read_wav(source: bytes | Path) -> tuple[FloatArray, int]:
    """Decode a 16-bit PCM WAV (mono, or stereo mixed down) to float32 samples and its sample rate."""
    handle: io.BytesIO | str = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with wave.open(handle, "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"not a readable WAV file: {exc}") from exc
    if width != 2:
        raise AudioError(f"expected 16-bit PCM, got {8 * width}-bit")
    data = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.float32)
    return data, rate


def duration_seconds(wav: bytes) -> float:
    try:
        with wave.open(io.BytesIO(wav), "rb") as reader:
            return reader.getnframes() / float(reader.getframerate())
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"not a readable WAV file: {exc}") from exc


# --- Signal helpers --------------------------------------------------------------------------------


def resample(samples: npt.NDArray[np.floating], factor: float) -> FloatArray:
    """Read the signal `factor` times as fast (linear interpolation): the result has len/factor samples.

    Played at the original rate, factor < 1 lowers the pitch and slows the tempo; factor > 1 does the
    opposite. Linear interpolation is enough for speech at these ratios (within half an octave).
    """
    source = np.asarray(samples, dtype=np.float32)
    if factor <= 0:
        raise ValueError("factor must be positive")
    if len(source) < 2 or abs(factor - 1.0) < 1e-9:
        return source.copy()
    count = max(1, round(len(source) / factor))
    positions = np.arange(count, dtype=np.float64) * factor
    positions = positions[positions <= len(source) - 1]
    return np.interp(positions, np.arange(len(source)), source).astype(np.float32)


def convert_rate(samples: npt.NDArray[np.floating], from_rate: int, to_rate: int) -> FloatArray:
    if from_rate == to_rate:
        return np.asarray(samples, dtype=np.float32)
    return resample(samples, from_rate / to_rate)


def active_rms(samples: npt.NDArray[np.floating], sample_rate: int) -> float:
    """RMS over the frames that carry speech (a gate 30 dB under the loudest frame), so pauses don't count."""
    data = np.asarray(samples, dtype=np.float64)
    frame = max(1, int(sample_rate * 0.02))
    usable = len(data) - len(data) % frame
    if usable == 0:
        return float(np.sqrt(np.mean(data**2))) if len(data) else 0.0
    frame_rms = np.sqrt(np.mean(data[:usable].reshape(-1, frame) ** 2, axis=1))
    loudest = float(frame_rms.max())
    if loudest <= 1e-9:
        return 0.0
    active = frame_rms[frame_rms >= loudest * 10 ** (-30 / 20)]
    return float(np.sqrt(np.mean(active**2)))


def normalize_loudness(
    samples: npt.NDArray[np.floating],
    sample_rate: int,
    *,
    target_dbfs: float = TARGET_RMS_DBFS,
    peak_ceiling: float = PEAK_CEILING,
) -> FloatArray:
    """Scale to a speech RMS of `target_dbfs`, never letting the peak pass `peak_ceiling`."""
    data = np.asarray(samples, dtype=np.float32)
    rms = active_rms(data, sample_rate)
    if rms <= 1e-9:
        return data.copy()
    gain = 10 ** (target_dbfs / 20) / rms
    peak = float(np.max(np.abs(data)))
    if peak * gain > peak_ceiling:
        gain = peak_ceiling / peak
    return (data * gain).astype(np.float32)


def join_segments(
    segments: Sequence[npt.NDArray[np.floating]],
    sample_rate: int,
    *,
    pause_seconds: float = PAUSE_BETWEEN_TURNS_SECONDS,
) -> FloatArray:
    """Concatenate turns with a silence between them; each turn is levelled first so both hosts match."""
    pause = np.zeros(round(pause_seconds * sample_rate), dtype=np.float32)
    parts: list[FloatArray] = []
    for index, segment in enumerate(segments):
        if index:
            parts.append(pause)
        parts.append(normalize_loudness(segment, sample_rate))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return normalize_loudness(np.concatenate(parts), sample_rate)


def join_wav_files(
    paths: Sequence[Path], *, pause_seconds: float = PAUSE_BETWEEN_TURNS_SECONDS
) -> tuple[FloatArray, int]:
    """Read per-turn WAV files and join them; segments at another rate are converted to the first one's."""
    if not paths:
        raise AudioError("no segments to join")
    segments: list[FloatArray] = []
    rate = 0
    for path in paths:
        data, segment_rate = read_wav(path)
        if not rate:
            rate = segment_rate
        segments.append(convert_rate(data, segment_rate, rate))
    return join_segments(segments, rate, pause_seconds=pause_seconds), rate


# --- MP3 -------------------------------------------------------------------------------------------


def mp3_bytes(samples: npt.NDArray[np.floating], sample_rate: int, *, bitrate_kbps: int = MP3_BITRATE_KBPS) -> bytes:
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate_kbps)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_channels(1)
    encoder.set_quality(5)  # 2 is best, 7 fastest; 5 is lame's default trade-off for speech
    data = encoder.encode(to_int16(samples).tobytes())
    return bytes(data) + bytes(encoder.flush())


# MPEG audio header tables, indexed by version id bits (3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5).
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_LAYER3_BITRATES = {
    3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}


def _id3v2_size(data: bytes) -> int:
    if len(data) >= 10 and data[:3] == b"ID3":
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        footer = 10 if data[5] & 0x10 else 0
        return 10 + size + footer
    return 0


def decode_mp3_duration(mp3: bytes) -> float:
    """Duration of an MPEG Layer III stream, by walking its frame headers (no decoder needed).

    A leading Xing/Info frame (written by LAME) carries no audio and is not counted.
    """
    position = _id3v2_size(mp3)
    samples = 0
    frames = 0
    rate = 0
    while position + 4 <= len(mp3):
        header = int.from_bytes(mp3[position : position + 4], "big")
        version = (header >> 19) & 0x3
        layer = (header >> 17) & 0x3
        bitrate_index = (header >> 12) & 0xF
        rate_index = (header >> 10) & 0x3
        if (header >> 21) != 0x7FF or version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
            if frames:
                break  # trailing tag (ID3v1, APE) or garbage after the audio
            position += 1  # resynchronise before the first frame
            continue
        padding = (header >> 9) & 0x1
        frame_rate = _SAMPLE_RATES[version][rate_index]
        bitrate = _LAYER3_BITRATES[3 if version == 3 else 2][bitrate_index] * 1000
        per_frame = 1152 if version == 3 else 576
        length = (144 if version == 3 else 72) * bitrate // frame_rate + padding
        body = mp3[position + 4 : position + min(length, 64)]
        if not (frames == 0 and (b"Xing" in body or b"Info" in body)):
            samples += per_frame
        frames += 1
        rate = frame_rate
        position += length
    if not rate:
        raise AudioError("no MPEG audio frames found")
    return samples / rate


# --- Pitch -----------------------------------------------------------------------------------------


def estimate_pitch_hz(
    samples: npt.NDArray[np.floating],
    sample_rate: int,
    *,
    fmin: float = 60.0,
    fmax: float = 400.0,
    voicing_threshold: float = 0.5,
) -> float:
    """Median fundamental frequency over voiced frames, from the normalised autocorrelation.

    40 ms frames every 10 ms; a frame counts as voiced when it is loud enough and its autocorrelation
    peak within [fmin, fmax] passes `voicing_threshold`. Among near-equal peaks the shortest lag wins,
    which avoids the usual octave-down errors. Returns 0.0 when nothing is voiced.
    """
    data = np.asarray(samples, dtype=np.float64)
    frame = int(sample_rate * 0.04)
    hop = int(sample_rate * 0.01)
    min_lag = max(1, int(sample_rate / fmax))
    max_lag = min(frame - 1, int(np.ceil(sample_rate / fmin)))
    if len(data) < frame or min_lag >= max_lag:
        return 0.0
    starts = np.arange(0, len(data) - frame + 1, hop)
    frames = np.stack([data[start : start + frame] for start in starts])
    frames -= frames.mean(axis=1, keepdims=True)
    energy = np.sqrt(np.mean(frames**2, axis=1))
    loud = energy >= energy.max() * 10 ** (-25 / 20)
    if not loud.any():
        return 0.0
    frames = frames[loud]
    spectrum = np.fft.rfft(frames, n=2 * frame, axis=1)
    autocorr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :frame]
    autocorr /= frame - np.arange(frame)  # unbiased: later lags overlap fewer samples
    autocorr /= np.maximum(autocorr[:, :1], 1e-12)
    pitches: list[float] = []
    for row in autocorr:
        window = row[min_lag : max_lag + 1]
        best = float(window.max())
        if best < voicing_threshold:
            continue
        # Local maxima within 10% of the best peak; the shortest such lag is the period.
        candidates = [
            lag
            for lag in range(min_lag + 1, max_lag)
            if row[lag] >= 0.9 * best and row[lag] >= row[lag - 1] and row[lag] >= row[lag + 1]
        ]
        lag_i = candidates[0] if candidates else min_lag + int(window.argmax())
        lag = float(lag_i)
        if 0 < lag_i < frame - 1:
            left, centre, right = row[lag_i - 1], row[lag_i], row[lag_i + 1]
            denominator = left - 2 * centre + right
            if abs(denominator) > 1e-12:
                lag += 0.5 * (left - right) / denominator
        pitches.append(sample_rate / lag)
    return float(np.median(pitches)) if pitches else 0.0
