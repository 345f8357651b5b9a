"""Podcasts: a two-host script from the notebook's key passages, voiced turn by turn."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from backend.errors import Conflict, Unavailable
from backend.models import Job
from backend.runtime import JobError, jobs_cancel_active, progress
from notebooks import selectors as notebook_selectors
from podcast import jobs
from podcast.models import Podcast

if TYPE_CHECKING:  # for annotations only: the app reads notebooks through notebooks.selectors
    from notebooks.models import Notebook

logger = logging.getLogger(__name__)

SENTENCE = re.compile(r"(?<=[.!?])\s+")


def segment_dir(podcast_id: Any) -> Path:
    """Per-turn audio of one podcast on the worker's disk, kept across retries of its job."""
    return Path(settings.QUIRE_PODCAST_WORK_DIR) / str(podcast_id)


@transaction.atomic
def podcast_create(
    *, notebook: Notebook, owner: Any, title: str, minutes: float, focus: str = "", source_ids: list[str] | None = None
) -> Podcast:
    from podcast import speech

    # What can be known now is refused now, not ten minutes into a job.
    if not speech.available_backends():
        raise Unavailable("No speech synthesis is installed on this server.", code="SPEECH_UNAVAILABLE")
    if not notebook_selectors.ready_source_count(notebook=notebook, source_ids=source_ids):
        raise Conflict("The notebook has no ready sources to talk about yet.", code="NO_READY_SOURCES")
    podcast = Podcast.objects.create(
        notebook=notebook,
        owner=owner,
        title=title or f"{notebook.title}: an overview",
        options={"minutes": minutes, "focus": focus, "source_ids": source_ids or []},
    )
    job = jobs.podcast_generate.enqueue(
        {"podcast_id": str(podcast.id)}, owner=owner, subject=podcast, notebook_id=notebook.id
    )
    Podcast.objects.filter(id=podcast.id).update(job_id=job.id)
    podcast.job_id = job.id
    return podcast


def podcast_generate(*, podcast_id: str) -> dict[str, Any] | None:
    from podcast import audio, speech
    from podcast.script import KeyPoint, Turn, build_script, count_words, words_for_minutes

    podcast = Podcast.objects.select_related("notebook").filter(id=podcast_id).first()
    if podcast is None:
        logger.info("Podcast %s is gone; nothing to generate", podcast_id)
        return None
    options = podcast.options
    progress(3, "Choosing key points")
    found = notebook_selectors.passages(
        notebook=podcast.notebook, query=options.get("focus") or None, source_ids=options.get("source_ids"), limit=30
    )
    if not found:
        raise JobError("NO_READY_SOURCES", "The notebook has no ready sources to talk about.")
    topics = notebook_selectors.notebook_overview(notebook=podcast.notebook).get("key_topics", [])
    points = [
        KeyPoint(text=sentence, source_id=p.source_id, source_title=p.source_title, topic=_topic_of(p.text, topics))
        for p in found
        for sentence in _key_sentences(p.text)
    ]

    try:
        backend = speech.get_backend()
    except speech.SpeechUnavailable as exc:
        raise JobError("SPEECH_UNAVAILABLE", "No speech synthesis is available on the worker.") from exc
    progress(8, "Measuring the voices")
    wpm = speech.podcast_words_per_minute(backend)
    target_words = words_for_minutes(float(options.get("minutes", 3)), wpm)
    turns = build_script(points, title=podcast.title, focus=options.get("focus") or None, target_words=target_words)
    words = count_words(turns)
    expected = words * 60.0 / wpm
    # The script is stored before synthesis starts: a reader sees it while the audio is made.
    Podcast.objects.filter(id=podcast.id).update(
        script=[{"speaker": t.speaker, "text": t.text, "source_ids": t.source_ids} for t in turns],
        word_count=words,
        words_per_minute=round(wpm, 1),
        expected_seconds=round(expected, 1),
        updated_at=timezone.now(),
    )
    progress(15, f"Script written: {len(turns)} turns, {words} words")

    def voiced(done: int, total: int) -> None:
        progress(15 + int(75 * done / total), f"Voicing turn {done}/{total}")

    paths = speech.synthesize_turns(
        [Turn(speaker=t.speaker, text=t.text, source_ids=t.source_ids) for t in turns],
        backend,
        segment_dir(podcast.id),
        voiced,
        lambda: False,  # cancellation arrives through progress() (JobCancelled) or a killed horse
    )
    progress(92, "Joining and encoding")
    samples, rate = audio.join_wav_files(paths)
    # Where each turn sits in the episode, so a player can follow along (and tests can listen).
    timeline, at = [], 0.0
    for path in paths:
        length = audio.duration_seconds(path.read_bytes())
        timeline.append((round(at, 3), round(at + length, 3)))
        at += length + audio.PAUSE_BETWEEN_TURNS_SECONDS
    Podcast.objects.filter(id=podcast.id).update(
        script=[
            {"speaker": t.speaker, "text": t.text, "source_ids": t.source_ids, "start": start, "end": end}
            for t, (start, end) in zip(turns, timeline, strict=True)
        ]
    )
    wav = audio.wav_bytes(samples, rate)
    mp3 = audio.mp3_bytes(samples, rate)
    duration = audio.duration_seconds(wav)
    # Honest "done": audio that is far shorter than its script is a failure, not a podcast.
    if duration < 0.6 * expected:
        raise JobError(
            "AUDIO_TOO_SHORT", f"The audio lasts {duration:.0f} s but its script needs about {expected:.0f} s."
        )
    progress(97, "Saving audio")
    return _store_audio(podcast, wav, mp3, duration)


def _store_audio(podcast: Podcast, wav: bytes, mp3: bytes, duration: float) -> dict[str, Any] | None:
    base = f"podcasts/{podcast.notebook_id}/{podcast.id}"
    # Same names every run: running the job twice leaves one set of files.
    for name in (f"{base}.wav", f"{base}.mp3"):
        default_storage.delete(name)
    wav_name = default_storage.save(f"{base}.wav", ContentFile(wav))
    mp3_name = default_storage.save(f"{base}.mp3", ContentFile(mp3))
    updated = (
        Podcast.objects.filter(id=podcast.id)
        .exclude(status=Podcast.Status.CANCELLED)
        .update(
            status=Podcast.Status.COMPLETED,
            audio_wav=wav_name,
            audio_mp3=mp3_name,
            duration_seconds=round(duration, 2),
            completed_at=timezone.now(),
            error="",
            error_code="",
            updated_at=timezone.now(),
        )
    )
    if not updated:  # cancelled or deleted while encoding: leave nothing behind
        _delete_audio([wav_name, mp3_name])
        return None
    shutil.rmtree(segment_dir(podcast.id), ignore_errors=True)
    return {"duration_seconds": round(duration, 2), "wav": wav_name, "mp3": mp3_name}


def _key_sentences(text: str, limit: int = 2) -> list[str]:
    sentences = [s.strip() for s in SENTENCE.split(" ".join(text.split())) if 30 <= len(s.strip()) <= 400]
    return sentences[:limit]


def _topic_of(text: str, topics: list[str]) -> str:
    lowered = text.lower()
    for topic in topics:
        if topic.lower() in lowered:
            return topic
    return topics[0] if topics else ""


def podcast_discard_partial(*, run: Job) -> None:
    """After a failed or cancelled run (see podcast.jobs.podcast_follow_job): no partial audio
    survives. Idempotent: it runs again once a cancelled job's worker has stopped
    (runtime.state.job_settled), to catch files written after the first pass."""
    podcast = Podcast.objects.filter(id=run.subject_id).first()
    if podcast is not None and (podcast.job_id != run.id or podcast.status == Podcast.Status.COMPLETED):
        return  # a finished podcast keeps its audio; a newer run owns the work folder
    shutil.rmtree(segment_dir(run.subject_id), ignore_errors=True)
    if podcast is not None and (podcast.audio_wav or podcast.audio_mp3):
        _delete_audio([podcast.audio_wav.name, podcast.audio_mp3.name])
        Podcast.objects.filter(id=podcast.id).update(audio_wav="", audio_mp3="")


def podcast_delete(*, podcast: Podcast) -> None:
    jobs_cancel_active(job_ids=[podcast.job_id])
    names = [podcast.audio_wav.name, podcast.audio_mp3.name]
    podcast_id = podcast.id
    with transaction.atomic():
        podcast.delete()
        transaction.on_commit(lambda: _remove_outputs(podcast_id, names))


def _remove_outputs(podcast_id: Any, names: list[str | None]) -> None:
    _delete_audio(names)
    shutil.rmtree(segment_dir(podcast_id), ignore_errors=True)


def _delete_audio(names: list[str | None]) -> None:
    for name in names:
        if name:
            try:
                default_storage.delete(name)
            except OSError:
                logger.warning("Could not delete %s", name, exc_info=True)


def podcasts_cleanup(*, now: Any = None) -> dict[str, int]:
    """Retention: failed and cancelled podcasts after QUIRE_PODCAST_RETENTION_DAYS, completed ones
    only when QUIRE_PODCAST_COMPLETED_RETENTION_DAYS is set; then audio files and work folders
    that no podcast owns any more."""
    from datetime import timedelta

    now = now or timezone.now()
    removed = {"podcasts": 0, "orphan_files": 0, "work_dirs": 0}
    doomed = Podcast.objects.filter(
        status__in=(Podcast.Status.FAILED, Podcast.Status.CANCELLED),
        updated_at__lt=now - timedelta(days=settings.QUIRE_PODCAST_RETENTION_DAYS),
    )
    if settings.QUIRE_PODCAST_COMPLETED_RETENTION_DAYS is not None:
        doomed = doomed | Podcast.objects.filter(
            status=Podcast.Status.COMPLETED,
            completed_at__lt=now - timedelta(days=settings.QUIRE_PODCAST_COMPLETED_RETENTION_DAYS),
        )
    progress(message="Removing old podcasts")  # step boundaries: where crash tests strike
    for podcast in doomed:
        _delete_audio([podcast.audio_wav.name, podcast.audio_mp3.name])
        shutil.rmtree(segment_dir(podcast.id), ignore_errors=True)
        podcast.delete()
        removed["podcasts"] += 1

    # Each pass lists first, then reads which podcasts are being made, then (files) which files
    # rows own: whatever is listed was made by a podcast already being made, and one that
    # completes after the first read names its files in the second (completion sets both in one
    # UPDATE). What a podcast makes after the listing is not in it.
    progress(message="Removing orphaned audio")
    files = []
    if default_storage.exists("podcasts"):
        for notebook_dir in default_storage.listdir("podcasts")[0]:
            files += [
                f"podcasts/{notebook_dir}/{name}" for name in default_storage.listdir(f"podcasts/{notebook_dir}")[1]
            ]
    making = _being_made()  # a podcast being made saves its files a moment before its row names them
    owned = set()
    for wav, mp3 in Podcast.objects.values_list("audio_wav", "audio_mp3"):
        owned.update({wav, mp3})
    for path in files:
        if path not in owned and path.rsplit("/", 1)[-1].split(".")[0] not in making:
            default_storage.delete(path)
            removed["orphan_files"] += 1
    progress(message="Removing stale work folders")
    work_root = Path(settings.QUIRE_PODCAST_WORK_DIR)
    folders = list(work_root.iterdir()) if work_root.exists() else []
    making = _being_made()
    for work_dir in folders:
        if work_dir.name not in making:
            shutil.rmtree(work_dir, ignore_errors=True)
            removed["work_dirs"] += 1
    return removed


def _being_made() -> set[str]:
    being_made = Podcast.objects.filter(status__in=(Podcast.Status.PENDING, Podcast.Status.GENERATING))
    return {str(i) for i in being_made.values_list("id", flat=True)}


def speech_preload() -> None:
    """Called by the podcast worker before it forks: the voice model and its measured rate, and
    the modules the job imports lazily (each horse would import them again)."""
    from podcast import audio, script, speech  # noqa: F401

    if speech.available_backends():
        speech.podcast_words_per_minute(speech.get_backend())
