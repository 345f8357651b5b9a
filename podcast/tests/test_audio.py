import numpy as np
import pytest

from podcast import audio

RATE = 22050


def voiced(f0: float, seconds: float, rate: int = RATE) -> np.ndarray:
    """A speech-like buzz: harmonics with falling amplitude and a little vibrato."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))) / rate
    signal = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (0.3 * signal / np.max(np.abs(signal))).astype(np.float32)


def test_it_round_trips_16_bit_wav() -> None:
    samples = voiced(120, 1.5)

    data = audio.wav_bytes(samples, RATE)
    decoded, rate = audio.read_wav(data)

    assert rate == RATE
    assert audio.duration_seconds(data) == pytest.approx(1.5, abs=1e-3)
    assert np.max(np.abs(decoded - samples)) < 1e-3


@pytest.mark.parametrize("f0", [85.0, 110.0, 180.0, 240.0])
def test_it_estimates_the_pitch_of_a_voiced_signal(f0: float) -> None:
    assert audio.estimate_pitch_hz(voiced(f0, 1.0), RATE) == pytest.approx(f0, rel=0.03)


def test_it_finds_no_pitch_in_silence_or_noise() -> None:
    noise = np.random.default_rng(1).normal(0, 0.1, RATE).astype(np.float32)

    assert audio.estimate_pitch_hz(np.zeros(RATE, dtype=np.float32), RATE) == 0.0
    assert audio.estimate_pitch_hz(noise, RATE) == 0.0


def test_it_shifts_pitch_by_resampling() -> None:
    lower = audio.resample(voiced(120, 1.0), 2 ** (-4 / 12))

    assert audio.estimate_pitch_hz(lower, RATE) == pytest.approx(120 * 2 ** (-4 / 12), rel=0.03)
    assert len(lower) / RATE == pytest.approx(2 ** (4 / 12), rel=0.01)


def test_it_joins_segments_with_pauses_at_an_even_loudness() -> None:
    quiet, loud = voiced(120, 1.0) * 0.05, voiced(90, 1.0)

    joined = audio.join_segments([quiet, loud], RATE, pause_seconds=0.35)

    assert len(joined) == 2 * RATE + round(0.35 * RATE)
    pause = joined[RATE : RATE + round(0.35 * RATE)]
    assert np.all(pause == 0)
    first, second = audio.active_rms(joined[:RATE], RATE), audio.active_rms(joined[-RATE:], RATE)
    assert first == pytest.approx(second, rel=0.1)
    assert 20 * np.log10(first) == pytest.approx(audio.TARGET_RMS_DBFS, abs=1.5)
    assert np.max(np.abs(joined)) <= audio.PEAK_CEILING + 1e-6


def test_it_encodes_mp3_with_the_same_duration() -> None:
    samples = np.concatenate([voiced(110, 2.0), np.zeros(RATE, dtype=np.float32), voiced(150, 1.0)])

    mp3 = audio.mp3_bytes(samples, RATE, bitrate_kbps=64)

    assert mp3[:2] == b"\xff\xf3" or mp3[:3] == b"ID3" or mp3[:2] == b"\xff\xfb"
    assert audio.decode_mp3_duration(mp3) == pytest.approx(4.0, abs=0.1)
    assert len(mp3) == pytest.approx(64_000 / 8 * 4.0, rel=0.1)


def test_it_rejects_bytes_that_are_not_audio() -> None:
    with pytest.raises(audio.AudioError):
        audio.decode_mp3_duration(b"not an mp3 at all" * 10)
    with pytest.raises(audio.AudioError):
        audio.duration_seconds(b"RIFF....nope")
