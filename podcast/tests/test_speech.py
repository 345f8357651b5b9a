import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from podcast import audio, speech
from podcast.script import Turn
from podcast.speech import (
    HOSTS,
    PiperBackend,
    SpeechUnavailable,
    SynthesisCancelled,
    SynthesisStats,
    Voice,
    synthesize_turns,
)

TURNS = [
    Turn("A", "Welcome back. Today we are looking at how fast the Alpine glaciers are melting. What did you find?"),
    Turn(
        "B",
        "According to the monitoring report, the glaciers lost about a third of their ice in twenty years. "
        "The loss doubled after two thousand ten.",
        ["s1"],
    ),
    Turn("A", "That's a striking figure. Is there anything that could slow it down in the coming decades?"),
    Turn(
        "B",
        "Not much, sadly. The same source says the smaller glaciers will likely vanish by the middle of the "
        "century, whatever happens next.",
        ["s1"],
    ),
]


@dataclass
class CountingBackend:
    """Wraps a backend and records every synthesis call (same name, so it shares the segment cache)."""

    inner: speech.SpeechBackend
    calls: list[str] = field(default_factory=list)
    fail_on_call: int | None = None

    @property
    def name(self) -> str:
        return self.inner.name

    def synthesize(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        self.calls.append(text)
        if self.fail_on_call == len(self.calls):
            raise RuntimeError("synthesis crashed")
        return self.inner.synthesize(text, voice)


def no_progress(done: int, total: int) -> None:
    pass


def never() -> bool:
    return False


@pytest.fixture(scope="module")
def piper() -> PiperBackend:
    backend = PiperBackend()
    backend.preload()
    return backend


@pytest.fixture(scope="module")
def first_run(piper: PiperBackend, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache_dir = tmp_path_factory.mktemp("segments")
    backend = CountingBackend(piper)
    progress: list[tuple[int, int]] = []
    stats = SynthesisStats()
    started = time.perf_counter()
    paths = synthesize_turns(
        TURNS, backend, cache_dir, lambda done, total: progress.append((done, total)), never, stats=stats
    )
    return {
        "cache_dir": cache_dir,
        "paths": paths,
        "calls": backend.calls,
        "progress": progress,
        "stats": stats,
        "wall": time.perf_counter() - started,
    }


def test_it_synthesizes_each_turn_to_its_own_segment(first_run: dict) -> None:
    paths = first_run["paths"]

    assert len(paths) == 4 and len(set(paths)) == 4
    assert all(path.parent == first_run["cache_dir"] and path.suffix == ".wav" for path in paths)
    assert len(first_run["calls"]) == 4
    assert first_run["progress"] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_it_joins_turns_into_wav_and_mp3_that_last_what_the_script_implies(
    first_run: dict, piper: PiperBackend, tmp_path: Path
) -> None:
    samples, rate = audio.join_wav_files(first_run["paths"])
    wav = audio.wav_bytes(samples, rate)
    mp3 = audio.mp3_bytes(samples, rate)
    (tmp_path / "episode.wav").write_bytes(wav)

    decoded, decoded_rate = audio.read_wav(tmp_path / "episode.wav")
    assert decoded_rate == rate == 22050 and len(decoded) == len(samples)
    expected = sum(
        turn.words * 60 / speech.measure_words_per_minute(piper, HOSTS[turn.speaker]) for turn in TURNS
    ) + audio.PAUSE_BETWEEN_TURNS_SECONDS * (len(TURNS) - 1)
    actual = audio.duration_seconds(wav)
    print(f"\nepisode: {actual:.1f}s of audio, {expected:.1f}s expected from words and measured rates")
    assert actual == pytest.approx(expected, rel=0.25)
    assert audio.decode_mp3_duration(mp3) == pytest.approx(actual, abs=0.25)
    assert 20 * np.log10(audio.active_rms(samples, rate)) == pytest.approx(audio.TARGET_RMS_DBFS, abs=2)


def test_it_gives_the_two_hosts_clearly_different_pitch(first_run: dict) -> None:
    by_host: dict[str, list[np.ndarray]] = {"A": [], "B": []}
    for turn, path in zip(TURNS, first_run["paths"]):
        by_host[turn.speaker].append(audio.read_wav(path)[0])
    pitch_a = audio.estimate_pitch_hz(np.concatenate(by_host["A"]), 22050)
    pitch_b = audio.estimate_pitch_hz(np.concatenate(by_host["B"]), 22050)

    print(f"\nmedian pitch: host A {pitch_a:.0f} Hz, host B {pitch_b:.0f} Hz")
    assert 60 < pitch_b < pitch_a < 300
    assert pitch_b < pitch_a * 0.85


def test_it_reuses_every_cached_segment_on_a_second_run(first_run: dict, piper: PiperBackend) -> None:
    backend = CountingBackend(piper)
    before = {path: path.stat().st_mtime_ns for path in first_run["paths"]}
    stats = SynthesisStats()

    paths = synthesize_turns(TURNS, backend, first_run["cache_dir"], no_progress, never, stats=stats)

    assert paths == first_run["paths"]
    assert backend.calls == []
    assert (stats.synthesized, stats.reused) == (0, 4)
    assert {path: path.stat().st_mtime_ns for path in paths} == before


def test_it_keys_segments_by_text_and_voice(piper: PiperBackend) -> None:
    key = speech.segment_key(piper, "Hello there.", HOSTS["A"])

    assert key == speech.segment_key(piper, "Hello there.", HOSTS["A"])
    assert key != speech.segment_key(piper, "Hello there.", HOSTS["B"])
    assert key != speech.segment_key(piper, "Hello there!", HOSTS["A"])
    assert len(key) == 64


def test_it_redoes_only_the_missing_turns_after_a_crash(piper: PiperBackend, tmp_path: Path) -> None:
    crashing = CountingBackend(piper, fail_on_call=3)
    with pytest.raises(RuntimeError):
        synthesize_turns(TURNS[:3], crashing, tmp_path, no_progress, never)
    assert len(list(tmp_path.glob("*.wav"))) == 2
    assert list(tmp_path.glob("*.tmp")) == []

    retry = CountingBackend(piper)
    paths = synthesize_turns(TURNS[:3], retry, tmp_path, no_progress, never)

    assert retry.calls == [TURNS[2].text]
    assert all(path.exists() for path in paths)


def test_it_stops_after_the_current_turn_when_cancelled(piper: PiperBackend, tmp_path: Path) -> None:
    backend = CountingBackend(piper)
    stop = {"now": False}

    def progress(done: int, total: int) -> None:
        stop["now"] = True  # asked to stop while the first turn was being synthesised

    with pytest.raises(SynthesisCancelled):
        synthesize_turns(TURNS, backend, tmp_path, progress, lambda: stop["now"])

    assert backend.calls == [TURNS[0].text]
    assert [path.name for path in tmp_path.iterdir()] == [f"{speech.segment_key(piper, TURNS[0].text, HOSTS['A'])}.wav"]


def test_it_measures_speaking_rate_and_synthesis_speed(first_run: dict, piper: PiperBackend) -> None:
    wpm_a = speech.measure_words_per_minute(piper, HOSTS["A"])
    wpm_b = speech.measure_words_per_minute(piper, HOSTS["B"])
    episode_wpm = speech.podcast_words_per_minute(piper)
    stats: SynthesisStats = first_run["stats"]
    speed = stats.audio_seconds / stats.wall_seconds

    print(
        f"\nwords per minute: host A {wpm_a:.0f}, host B {wpm_b:.0f}, episode with pauses {episode_wpm:.0f}; "
        f"synthesis speed {speed:.1f}x real time ({stats.audio_seconds:.1f}s audio in {stats.wall_seconds:.2f}s, "
        f"{os.cpu_count()} cores)"
    )
    assert 120 < wpm_b < wpm_a < 240  # host B speaks a little slower
    assert min(wpm_a, wpm_b) < episode_wpm < max(wpm_a, wpm_b)
    assert speed > 2


def test_it_loads_the_piper_model_once_per_process(piper: PiperBackend) -> None:
    loaded = speech._PIPER_VOICES[piper.model_path]
    other = PiperBackend()
    other.synthesize("Just checking.", HOSTS["A"])

    assert speech._PIPER_VOICES[other.model_path] is loaded


def test_it_synthesizes_in_a_forked_child_after_preloading_in_the_parent(piper: PiperBackend) -> None:
    # The worker parent preloads the model; each job runs in a forked child.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            # Only its id: a reference held here would keep the inherited session alive, and the
            # child must survive dropping it (destroying it would wait for threads it has not).
            parent_session = id(speech._PIPER_VOICES[piper.model_path].session)
            samples, rate = piper.synthesize("Hello from the work horse.", HOSTS["B"])
            # A session of its own (with a thread pool of its own), from the parent's optimised graph.
            own = id(speech._PIPER_VOICES[piper.model_path].session) != parent_session
            import gc

            gc.collect()
            if own and speech._PIPER_LOADED_BY[piper.model_path] == os.getpid():
                os.write(write_end, str(len(samples) / rate).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + 60
    while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    if waited[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung")
    status = waited[1]
    seconds = float(os.read(read_end, 64).decode() or 0)
    os.close(read_end)

    assert os.waitstatus_to_exitcode(status) == 0
    assert seconds > 0.5


def test_it_reports_piper_as_available() -> None:
    assert "piper" in speech.available_backends()
    assert isinstance(speech.get_backend(), PiperBackend)


def test_it_refuses_when_no_backend_can_speak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech, "available_backends", lambda: [])

    with pytest.raises(SpeechUnavailable):
        speech.get_backend()
    with pytest.raises(SpeechUnavailable):
        PiperBackend(model_path=Path("/nonexistent/voice.onnx"))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_it_speaks_with_espeak_when_installed(tmp_path: Path) -> None:
    backend = speech.get_backend("espeak")
    paths = synthesize_turns(TURNS[:2], backend, tmp_path, no_progress, never)
    pitch_a = audio.estimate_pitch_hz(audio.read_wav(paths[0])[0], 22050)
    pitch_b = audio.estimate_pitch_hz(audio.read_wav(paths[1])[0], 22050)

    assert all(audio.duration_seconds(path.read_bytes()) > 1 for path in paths)
    assert pitch_b < pitch_a * 0.85


@pytest.mark.skipif(shutil.which("espeak-ng") is not None, reason="espeak-ng is installed")
def test_it_refuses_espeak_when_it_is_not_installed() -> None:
    assert "espeak" not in speech.available_backends()
    with pytest.raises(SpeechUnavailable):
        speech.get_backend("espeak")
