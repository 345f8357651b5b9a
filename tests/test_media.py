"""Audio and video sources end to end: speech made at test time with the podcasts' piper voice,
uploaded over HTTP, transcribed offline by a real notebook_processing worker (#19)."""

import io
import struct
import time
import uuid
from functools import cache
from typing import Any

import httpx
import numpy as np
import pytest
from rest_framework.authtoken.models import Token

from backend.models import Job
from notebooks.ingest import speech_samples as samples
from notebooks.ingest.errors import TooLong
from notebooks.ingest.media import decode_windows
from notebooks.models import Chunk, Source
from tests import documents as docs
from tests.helpers import all_done, new_notebook, read_events, upload, wait_for, work_horse

SENTENCES = [s.strip() + "." for s in samples.SCRIPT.split(".") if s.strip()]


@cache
def _speech() -> tuple[np.ndarray, int, tuple[tuple[float, float], ...]]:
    audio, rate, times = samples.speak(SENTENCES)
    return audio, rate, tuple(times)


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice-" + uuid.uuid4().hex[:6])


@pytest.fixture
def http(live_server_url: str, alice: Any) -> httpx.Client:
    token = Token.objects.create(user=alice)
    return httpx.Client(base_url=live_server_url, headers={"Authorization": f"Token {token.key}"}, timeout=60)


def _under_way(job_id: str) -> None:
    wait_for(
        lambda: Job.objects.filter(id=job_id, message__regex=r"^Transcribing 0:[1-9]").exists(),
        timeout=90,
        message="transcription under way",
    )


def _retried(source_id: str) -> None:
    """Until the source ends after a lost attempt, running the reconciler as the maintenance
    worker's minute schedule would."""
    from backend.runtime.reconcile import reconcile

    def finished() -> bool:
        reconcile()
        return Source.objects.filter(id=source_id, status__in=["ready", "failed"]).exists()

    wait_for(finished, timeout=180, interval=1, message="the retry")


def _wav_header_only(seconds_declared: float, data: bytes, rate: int = 16000) -> bytes:
    """A 16-bit mono WAV whose header declares ``seconds_declared`` whatever data follows."""
    size = int(seconds_declared * rate * 2)
    header = (
        b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    )
    return header + b"data" + struct.pack("<I", size) + data


def _video_without_sound() -> bytes:
    import av

    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as muxer:
        picture = muxer.add_stream("mpeg4", rate=5)
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            image = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), dtype=np.uint8), format="rgb24")
            image.pts = index
            for packet in picture.encode(image):
                muxer.mux(packet)
        for packet in picture.encode(None):
            muxer.mux(packet)
    return out.getvalue()


def test_spoken_wav_and_mp4_become_a_timed_searchable_transcript(workers: Any, http: httpx.Client) -> None:
    audio, rate, times = _speech()
    wav, mp4 = samples.wav_bytes(audio, rate), samples.encode(audio, rate, container="mp4", codec="aac", video=True)
    nb = new_notebook(http)
    with http.stream("GET", f"/api/v1/notebooks/{nb}/events/") as stream:
        response = upload(http, nb, [("talk.wav", wav), ("screen-recording.mp4", mp4)])
        assert response.status_code == 202, response.text
        ids = [s["id"] for s in response.json()["sources"]]
        received = [job for _, job in read_events(stream, {"succeeded", "failed"}, limit=400)]
    sources = all_done(ids, timeout=120)
    assert {s.status for s in sources} == {"ready"}, [(s.title, s.error) for s in sources]
    # Progress is told in media time, as it goes.
    messages = [job["message"] for job in received if job["status"] == "running"]
    assert "Transcribing 0:00 of 0:15" in messages
    assert any(m.startswith("Transcribing 0:1") and m.endswith(" of 0:15") for m in messages), messages

    duration = len(audio) / rate
    for source in sources:
        assert source.content_type == "audio" and source.extractor == "whisper-base" and source.language == "en"
        body = http.get(f"/api/v1/notebooks/{nb}/sources/{source.id}/content/").json()
        wer = samples.word_error_rate(samples.SCRIPT, body["text"])
        assert wer <= 0.15, (source.original_filename, wer, body["text"])
        segments = body["segments"]
        assert body["text"] == "\n".join(s["text"] for s in segments)
        starts = [s["start"] for s in segments]
        assert starts == sorted(starts) and all(s["end"] > s["start"] for s in segments)
        assert segments[0]["start"] < 1.0 and segments[-1]["end"] > duration - 2.5
        assert abs(body["duration"] - duration) < 0.5
        chunks = list(Chunk.objects.filter(source=source).order_by("position"))
        assert chunks and all(c.time_start is not None and c.time_end is not None for c in chunks)
        assert chunks[0].time_start == segments[0]["start"] and chunks[-1].time_end == segments[-1]["end"]

    # A spoken phrase is found with the moment it is said.
    found = http.get(f"/api/v1/notebooks/{nb}/search/", params={"q": "ash clouds ground aircraft", "k": 3}).json()
    top = found["results"][0]
    assert "aircraft" in top["text"] and top["time"] is not None
    assert top["time"] <= times[3][0] + 1.0 and top["time_label"] == f"0:{int(top['time']):02d}"

    # An answer's and a report's citations of a recording say when the passage is spoken.
    from notebooks.models import Question
    from reports.models import Report

    asked = http.post(f"/api/v1/notebooks/{nb}/questions/", json={"question": "How do scientists predict an eruption?"})
    assert asked.status_code == 202, asked.text
    wait_for(lambda: Question.objects.filter(id=asked.json()["id"], status="completed").exists(), timeout=60)
    answer = http.get(f"/api/v1/questions/{asked.json()['id']}/").json()
    assert answer["citations"] and all(
        c["time"] is not None and c["time_label"] == f"0:{int(c['time']):02d}" for c in answer["citations"]
    ), answer
    posted = http.post(f"/api/v1/notebooks/{nb}/reports/", json={"length": "short"})
    assert posted.status_code == 202, posted.text
    report = wait_for(lambda: Report.objects.filter(id=posted.json()["id"], status="completed").first(), timeout=90)
    assert report.citations and all(c["time_label"] == f"0:{int(c['time']):02d}" for c in report.citations)
    assert f" at {report.citations[0]['time_label']}" in report.markdown
    posted = http.post(f"/api/v1/notebooks/{nb}/reports/", json={"length": "short", "topic": "volcanic eruptions"})
    assert posted.status_code == 202, posted.text
    topical = wait_for(lambda: Report.objects.filter(id=posted.json()["id"], status="completed").first(), timeout=90)
    assert topical.citations and all(c["time"] is not None for c in topical.citations)

    # The original is served with Range, for a player to seek in.
    wav_source = next(s for s in sources if s.original_filename == "talk.wav")
    ranged = http.get(f"/api/v1/notebooks/{nb}/sources/{wav_source.id}/file/", headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and ranged.content == wav[:100]
    assert (
        ranged.headers["content-range"] == f"bytes 0-99/{len(wav)}" and ranged.headers["content-type"] == "audio/x-wav"
    )

    # Running the job again (a retry after a crash) leaves the same chunks.
    from notebooks.jobs import source_process

    before = list(Chunk.objects.filter(source=wav_source).values_list("position", "text", "time_start", "time_end"))
    again = source_process.enqueue(
        {"source_id": str(wav_source.id)}, subject=wav_source, notebook_id=wav_source.notebook_id
    )
    Source.objects.filter(id=wav_source.id).update(job_id=again.id)
    wait_for(lambda: Job.objects.get(id=again.id).status == "succeeded", timeout=60, message="rerun")
    after = list(Chunk.objects.filter(source=wav_source).values_list("position", "text", "time_start", "time_end"))
    assert after == before


def test_recordings_are_refused_at_upload_with_a_reason(workers: Any, http: httpx.Client) -> None:
    nb = new_notebook(http)
    url = f"/api/v1/notebooks/{nb}/sources/"

    silent_video = upload(http, nb, [("clip.mp4", _video_without_sound())])
    assert silent_video.status_code == 415 and silent_video.json()["error"]["code"] == "NO_AUDIO"
    assert "no sound track" in silent_video.json()["error"]["message"]

    program = upload(http, nb, [("song.mp3", b"\x7fELF\x02\x01\x01" + bytes(500))])
    assert program.status_code == 415 and "a program" in program.json()["error"]["message"]
    garbage = upload(http, nb, [("song.mp3", bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8)))])
    assert garbage.status_code == 415, garbage.text

    # Five hours (at 100 samples a second: 1.8 MB) are over the four-hour limit.
    rate_100 = 5 * 3600 * 100
    header = (
        b"RIFF" + struct.pack("<I", 36 + rate_100) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 100, 100, 1, 8)
    )
    hours = upload(http, nb, [("long.wav", header + b"data" + struct.pack("<I", rate_100) + bytes([128]) * rate_100)])
    assert hours.status_code == 413 and hours.json()["error"]["code"] == "TOO_LONG"
    assert "5:00:00" in hours.json()["error"]["message"]

    # A recording cut short: its header says more than the file holds; what is there is kept.
    audio, rate, _ = _speech()
    full = samples.wav_bytes(audio, rate)
    truncated = upload(http, nb, [("cut.wav", full[: len(full) // 2])])
    # Silence and a file with no samples at all: the job fails and says why.
    silence = upload(http, nb, [("quiet.wav", samples.wav_bytes(np.zeros(16000 * 4, np.float32), 16000))])
    empty = upload(http, nb, [("empty.wav", _wav_header_only(0, b""))])
    # A header declaring five hours over a second of data: the data decides, memory stays small.
    liar = upload(http, nb, [("liar.wav", _wav_header_only(5 * 3600, bytes(32000)))])
    # A .mp3 that is really a PDF is read as the PDF it is; a language can be set per upload.
    pdf = http.post(url, files=[("files", ("paper.mp3", docs.volcano_pdf()))])
    english = http.post(
        url,
        files=[("files", ("talk.ogg", samples.encode(audio, rate, container="ogg", codec="libopus")))],
        data={"language": "en"},
    )
    unknown = http.post(
        url,
        files=[("files", ("talk.flac", samples.encode(audio, rate, container="flac", codec="flac")))],
        data={"language": "klingon"},
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "UNKNOWN_LANGUAGE"
    accepted = (truncated, silence, empty, liar, pdf, english)
    for response in accepted:
        assert response.status_code == 202, response.text
    ids = [r.json()["sources"][0]["id"] for r in accepted]
    all_done(ids, timeout=120)
    cut, quiet, nothing, lied, paper, ogg = (Source.objects.get(id=i) for i in ids)
    assert cut.status == "ready" and "molten rock" in cut.text and "aircraft" not in cut.text
    assert quiet.status == "failed" and quiet.error_code == "NO_TEXT" and "No speech was found" in quiet.error
    assert nothing.status == "failed" and nothing.error_code == "NO_TEXT", nothing.error
    assert lied.status == "failed" and lied.error_code == "NO_TEXT" and "(0:01 of audio)" in lied.error
    assert paper.status == "ready" and paper.content_type == "pdf" and "Mauna Loa" in paper.text
    assert ogg.status == "ready" and ogg.language == "en" and samples.word_error_rate(samples.SCRIPT, ogg.text) <= 0.15


def test_decoding_stops_at_the_duration_limit_whatever_the_header_says() -> None:
    """A decompression bomb: ten minutes of silence compress to a few kilobytes; decoding stops
    at the limit with a reason instead of filling memory."""
    rate = 16000
    flac = samples.encode(np.zeros(rate * 600, np.float32), rate, container="flac", codec="flac")
    assert len(flac) < 200_000
    with pytest.raises(TooLong):
        for _ in decode_windows(flac, max_seconds=60, window_seconds=30):
            pass
    windows = list(decode_windows(flac, max_seconds=700, window_seconds=120))
    assert max(len(w) for _, w in windows) <= (120 + 5) * rate
    assert sum(len(w) for _, w in windows) == rate * 600


def test_cancelling_a_transcription_ends_it_within_seconds(workers: Any, http: httpx.Client) -> None:
    audio, rate, _ = _speech()
    long = np.tile(audio, 6)  # a minute and a half of speech
    nb = new_notebook(http)
    body = upload(http, nb, [("lecture.wav", samples.wav_bytes(long, rate))]).json()
    source_id, job_id = body["sources"][0]["id"], body["sources"][0]["job"]["id"]
    _under_way(job_id)
    assert http.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 200
    started = time.monotonic()
    source = wait_for(
        lambda: Source.objects.filter(id=source_id, status="cancelled").first(), timeout=10, message="cancelled"
    )
    job = wait_for(lambda: (j := Job.objects.get(id=job_id)).finished_at and j, timeout=10, message="job ended")
    assert time.monotonic() - started < 10 and job.status == "cancelled"
    assert source.error_code == "CANCELLED" and not Chunk.objects.filter(source_id=source_id).exists()


@pytest.mark.slow
def test_a_transcription_whose_work_horse_is_killed_runs_again_to_the_same_chunks(
    workers: Any, http: httpx.Client
) -> None:
    import psutil

    audio, rate, _ = _speech()
    lecture = samples.wav_bytes(np.tile(audio, 4), rate)  # a minute of speech
    clean_nb, crash_nb = new_notebook(http, "clean"), new_notebook(http, "crash")
    (clean,) = all_done([upload(http, clean_nb, [("lecture.wav", lecture)]).json()["sources"][0]["id"]], timeout=120)
    assert clean.status == "ready", clean.error

    body = upload(http, crash_nb, [("lecture.wav", lecture)]).json()
    source_id, job_id = body["sources"][0]["id"], body["sources"][0]["job"]["id"]
    _under_way(job_id)
    worker = psutil.Process(workers.procs["notebook_processing"].pid)
    work_horse(worker).kill()  # as the OOM killer would

    _retried(source_id)
    crashed = Source.objects.get(id=source_id)
    assert crashed.status == "ready" and Job.objects.get(id=job_id).attempts == 2, crashed.error

    def rows(source: Source) -> list[tuple[Any, ...]]:
        return list(Chunk.objects.filter(source=source).values_list("position", "text", "time_start", "time_end"))

    assert rows(crashed) == rows(clean) and crashed.transcript == clean.transcript


def _model_process(worker: Any) -> Any:
    import psutil

    found = []
    for child in worker.children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "notebooks.ingest.transcriber" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:  # ended meanwhile
            continue
    return found[0] if len(found) == 1 else None


@pytest.mark.slow
def test_the_worker_holds_the_speech_model_in_one_process_and_survives_losing_it(
    workers: Any, http: httpx.Client
) -> None:
    import psutil

    audio, rate, _ = _speech()
    clip = samples.wav_bytes(audio, rate)
    worker = psutil.Process(workers.procs["notebook_processing"].pid)
    model = wait_for(lambda: _model_process(worker), timeout=60, message="the speech model's process")

    # Two recordings, one after the other: the same process transcribes both (its CPU time
    # grows by the transcriptions'), and no work-horse loads a model of its own.
    used = []
    for name in ("one.wav", "two.wav"):
        before = sum(model.cpu_times()[:2])
        nb = new_notebook(http, name)
        (source,) = all_done([upload(http, nb, [(name, clip)]).json()["sources"][0]["id"]], timeout=120)
        assert source.status == "ready", source.error
        used.append(sum(model.cpu_times()[:2]) - before)
        assert _model_process(worker).pid == model.pid
    assert min(used) > 0.5, used  # seconds of CPU: a 15 s clip is about 1-2 s of Whisper base

    # The model's process dies in the middle of a recording: the job is retried, and the retry
    # (no model process now) loads the model in its work-horse and finishes to the same text.
    lecture = samples.wav_bytes(np.tile(audio, 4), rate)
    clean_nb, crash_nb = new_notebook(http, "clean"), new_notebook(http, "crash")
    (clean,) = all_done([upload(http, clean_nb, [("lecture.wav", lecture)]).json()["sources"][0]["id"]], timeout=180)
    body = upload(http, crash_nb, [("lecture.wav", lecture)]).json()
    source_id, job_id = body["sources"][0]["id"], body["sources"][0]["job"]["id"]
    _under_way(job_id)
    model.kill()

    _retried(source_id)
    crashed = Source.objects.get(id=source_id)
    assert crashed.status == "ready" and Job.objects.get(id=job_id).attempts == 2, crashed.error
    assert _model_process(worker) is None
    assert crashed.transcript == clean.transcript
    assert list(Chunk.objects.filter(source=crashed).values_list("text", "time_start")) == list(
        Chunk.objects.filter(source=clean).values_list("text", "time_start")
    )
