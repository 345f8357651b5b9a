"""Media: a recording transcribed through the job against faster-whisper alone on the same audio.

A ten-minute recording (quick: two minutes) of a known script is synthesised at bench time by
the piper voice the podcasts use, as a WAV. It is uploaded to ``POST
/api/v1/notebooks/{id}/sources/`` and timed from the upload to the source ``ready`` (probing,
decoding, transcription, chunking, embedding, indexing, in the Procfile's notebook_processing
worker). The baseline, in the same run, is faster-whisper alone in this process: the same model
folder, int8, the same decoding options, on the same WAV file. Both are given as audio seconds
per second of wall time, and both transcripts' word error rates against the script.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from bench.context import Context, say, wait_for
from bench.report import Row

NAME = "media"
TITLE = "media"

# Sentences of ordinary prose, spoken in turn until the recording is long enough.
SENTENCES = [
    "Volcanoes form where molten rock rises through the crust.",
    "The lava that reaches the surface cools into new land.",
    "Scientists measure the gases a volcano releases to predict an eruption.",
    "Ash clouds can travel thousands of kilometres and ground aircraft for days.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "The leaves of a plant hold the green pigment that captures light.",
    "Roman roads were built in layers of sand, gravel and stone.",
    "Many of them are still used as routes across Europe today.",
    "Jazz grew out of the music of New Orleans at the start of the last century.",
    "Musicians improvised over the chords of popular songs and the blues.",
    "A research notebook keeps every source in one place and answers questions about them.",
    "Each answer cites the passage it comes from, so a reader can check it.",
]


def _recording(seconds: float) -> tuple[bytes, str, float]:
    from notebooks.ingest.speech_samples import speak, wav_bytes

    spoken: list[str] = []
    pieces: list[Any] = []
    total = 0.0
    rate = 22050
    index = 0
    while total < seconds:
        sentence = SENTENCES[index % len(SENTENCES)]
        audio, rate, _ = speak([sentence])
        pieces.append(audio)
        spoken.append(sentence)
        total += len(audio) / rate
        index += 1
    import numpy as np

    samples = np.concatenate(pieces)
    return wav_bytes(samples, rate), " ".join(spoken), len(samples) / rate


def _alone(path: Path) -> tuple[float, str]:
    from faster_whisper import WhisperModel

    from notebooks.ingest.media import model_dir

    folder = model_dir(settings.QUIRE_WHISPER_MODEL, Path(settings.QUIRE_MODEL_CACHE_DIR))
    model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=settings.QUIRE_WHISPER_THREADS)
    start = time.perf_counter()
    segments, _ = model.transcribe(
        str(path), vad_filter=True, beam_size=5, temperature=0.0, condition_on_previous_text=False
    )
    text = " ".join(s.text.strip() for s in segments)
    return time.perf_counter() - start, text


def _through_the_job(ctx: Context, data: bytes) -> tuple[float, str]:
    from notebooks.models import Source

    notebook = ctx.new_notebook("bench: media")
    started = time.time()
    with ctx.http(timeout=600) as client:
        response = client.post(
            f"/api/v1/notebooks/{notebook}/sources/", files=[("files", ("lecture.wav", data, "audio/wav"))]
        )
        if response.status_code != 202:
            raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
        source_id = response.json()["sources"][0]["id"]
    terminal = (Source.Status.READY, Source.Status.FAILED, Source.Status.CANCELLED)
    wait_for(
        lambda: Source.objects.filter(id=source_id, status__in=terminal).exists(),
        timeout=3600,
        interval=0.25,
        what="the recording to be ready",
    )
    source = Source.objects.get(id=source_id)
    if source.status != Source.Status.READY:
        raise RuntimeError(f"the recording ended {source.status}: {source.error_code} {source.error}")
    seconds = source.updated_at.timestamp() - started
    ctx.delete_notebook(notebook)
    return seconds, source.text


def run(ctx: Context) -> list[Row]:
    from notebooks.ingest.speech_samples import word_error_rate

    length = ctx.size(600.0, 120.0)
    say(f"  synthesising a {length / 60:.0f}-minute recording")
    data, script, duration = _recording(length)
    runs = ctx.runs(1, 1)
    job_speed, alone_speed, job_wer, alone_wer = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lecture.wav"
        path.write_bytes(data)
        for i in range(runs):
            job_seconds, job_text = _through_the_job(ctx, data)
            alone_seconds, alone_text = _alone(path)
            job_speed.append(duration / job_seconds)
            alone_speed.append(duration / alone_seconds)
            job_wer.append(word_error_rate(script, job_text))
            alone_wer.append(word_error_rate(script, alone_text))
            say(
                f"  run {i + 1}/{runs}: {duration:.0f} s of audio: the job {job_seconds:.1f} s "
                f"(WER {job_wer[-1]:.3f}), faster-whisper alone {alone_seconds:.1f} s (WER {alone_wer[-1]:.3f})"
            )
    ctx.details[NAME] = {
        "audio_seconds": duration,
        "model": settings.QUIRE_WHISPER_MODEL,
        "job_audio_seconds_per_s": job_speed,
        "alone_audio_seconds_per_s": alone_speed,
        "job_wer": job_wer,
        "alone_wer": alone_wer,
    }
    return [
        Row(
            TITLE,
            f"upload→ready, {duration / 60:.0f} min recording",
            "audio s/s",
            job_speed,
            alone_speed,
            "faster-whisper alone",
            "≥ 0.9x faster-whisper alone",
            lambda v, b: b is not None and v >= 0.9 * b,
        ),
        Row(TITLE, "word error rate through the job", "WER", job_wer, alone_wer, "faster-whisper alone"),
    ]
