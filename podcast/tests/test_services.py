"""The podcast app's services on their own: the database and Redis, no worker, no speech run and
no HTTP. What podcast_create writes, what it hands to RQ only once its transaction commits and
what it refuses; what deleting, discarding a failed run and the retention sweep leave behind.
The whole path (HTTP, workers, real audio) is in tests/test_podcasts.py."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from backend.errors import DomainError
from backend.models import Job
from notebooks.models import Notebook, Source
from podcast import services
from podcast.models import Podcast
from tests import factories

QUEUE = "rq:queue:podcast"


@pytest.fixture(autouse=True)
def own_files(settings: Any, tmp_path: Path) -> None:
    """Audio and work folders of this test only: the sweep lists whole folders."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.QUIRE_PODCAST_WORK_DIR = str(tmp_path / "work")
    assert Path(default_storage.path("x")) == tmp_path / "media" / "x"


@pytest.fixture
def owner(db: Any, redis_clean: Any) -> Any:
    return factories.user()


def source(notebook: Notebook, status: str = Source.Status.READY) -> Source:
    return Source.objects.create(
        notebook=notebook, kind=Source.Kind.TEXT, title=f"Basalt {status}", text="Basalt cools into columns.",
        status=status,
    )  # fmt: skip


def podcast_of(notebook: Notebook, status: str = Podcast.Status.PENDING) -> Podcast:
    return Podcast.objects.create(notebook=notebook, owner=notebook.owner, title=status, status=status)


def with_audio(podcast: Podcast) -> list[str]:
    """The two files _store_audio writes, under its names, named on the row."""
    base = f"podcasts/{podcast.notebook_id}/{podcast.id}"
    names = [
        default_storage.save(f"{base}.wav", ContentFile(b"RIFF")),
        default_storage.save(f"{base}.mp3", ContentFile(b"ID3")),
    ]
    Podcast.objects.filter(id=podcast.id).update(audio_wav=names[0], audio_mp3=names[1])
    assert names == [f"{base}.wav", f"{base}.mp3"] and all(default_storage.exists(n) for n in names)
    return names


def with_segments(podcast_id: Any) -> Path:
    folder = services.segment_dir(podcast_id)
    folder.mkdir(parents=True)
    (folder / "turn-0000.wav").write_bytes(b"RIFF")
    return folder


def aged(podcast: Podcast, now: datetime, days: float) -> Podcast:
    when = now - timedelta(days=days)
    Podcast.objects.filter(id=podcast.id).update(updated_at=when, completed_at=when)
    return podcast


def generate_job(podcast: Podcast, status: str) -> Job:
    job = Job.objects.create(
        id=str(uuid.uuid4()), kind="podcast.generate_podcast", queue="podcast", func="podcast.jobs.podcast_generate",
        timeout=60, status=status, subject_type="podcast.podcast", subject_id=str(podcast.id), owner=podcast.owner,
    )  # fmt: skip
    Podcast.objects.filter(id=podcast.id).update(job_id=job.id)
    podcast.refresh_from_db()
    return job


# --- podcast_create


def test_it_records_the_podcast_and_its_job_and_hands_rq_the_job_only_after_the_commit(
    owner: Any, redis_clean: Any, django_capture_on_commit_callbacks: Any
) -> None:
    nb = factories.notebook(owner, title="Volcanoes")
    chosen = source(nb)
    with django_capture_on_commit_callbacks(execute=True):
        created = services.podcast_create(
            notebook=nb, owner=owner, title="", minutes=2.5, focus="lava", source_ids=[str(chosen.id)]
        )
        assert redis_clean.llen(QUEUE) == 0  # nothing a worker could take before the rows exist

    podcast = Podcast.objects.get(notebook=nb)
    assert podcast.id == created.id and podcast.status == Podcast.Status.PENDING
    assert podcast.title == "Volcanoes: an overview"
    assert podcast.options == {"minutes": 2.5, "focus": "lava", "source_ids": [str(chosen.id)]}
    job = Job.objects.get(owner=owner)
    assert podcast.job_id == created.job_id == job.id
    assert (job.kind, job.queue, job.status) == ("podcast.generate_podcast", "podcast", Job.Status.QUEUED)
    assert job.kwargs == {"podcast_id": str(podcast.id)}
    assert (job.subject_id, job.notebook_id) == (str(podcast.id), nb.id)
    assert [i.decode() for i in redis_clean.lrange(QUEUE, 0, -1)] == [job.id]
    assert job.dispatched_at is not None


def test_a_notebook_without_ready_sources_is_refused_and_nothing_is_written_or_queued(
    owner: Any, redis_clean: Any, django_capture_on_commit_callbacks: Any
) -> None:
    nb = factories.notebook(owner)
    source(nb, Source.Status.PENDING)
    source(nb, Source.Status.FAILED)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(DomainError) as refused:
        services.podcast_create(notebook=nb, owner=owner, title="t", minutes=2)
    assert refused.value.code == "NO_READY_SOURCES"
    assert not Podcast.objects.exists() and not Job.objects.exists()
    assert redis_clean.llen(QUEUE) == 0


def test_sources_chosen_for_the_podcast_must_be_ready_even_when_others_are(owner: Any) -> None:
    nb = factories.notebook(owner)
    source(nb)
    waiting = source(nb, Source.Status.PROCESSING)
    elsewhere = source(factories.notebook(owner))  # ready, but another notebook's
    for chosen in ([str(waiting.id)], [str(elsewhere.id)]):
        with pytest.raises(DomainError) as refused:
            services.podcast_create(notebook=nb, owner=owner, title="t", minutes=2, source_ids=chosen)
        assert refused.value.code == "NO_READY_SOURCES"
    assert not Podcast.objects.exists() and not Job.objects.exists()


def test_a_server_without_speech_synthesis_refuses_before_writing_anything(
    owner: Any, redis_clean: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    monkeypatch.setattr("podcast.speech.available_backends", lambda: [])
    nb = factories.notebook(owner)
    source(nb)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(DomainError) as refused:
        services.podcast_create(notebook=nb, owner=owner, title="t", minutes=2)
    assert refused.value.code == "SPEECH_UNAVAILABLE"
    assert not Podcast.objects.exists() and not Job.objects.exists()
    assert redis_clean.llen(QUEUE) == 0


# --- podcast_delete


def test_deleting_a_waiting_podcast_cancels_its_job_and_takes_it_out_of_rq(
    owner: Any, redis_clean: Any, django_capture_on_commit_callbacks: Any
) -> None:
    nb = factories.notebook(owner)
    source(nb)
    with django_capture_on_commit_callbacks(execute=True):
        podcast = services.podcast_create(notebook=nb, owner=owner, title="t", minutes=2)
    assert redis_clean.llen(QUEUE) == 1
    segments = with_segments(podcast.id)

    with django_capture_on_commit_callbacks(execute=True):
        services.podcast_delete(podcast=podcast)

    assert not Podcast.objects.filter(id=podcast.id).exists()
    assert Job.objects.get(id=podcast.job_id).status == Job.Status.CANCELLED
    assert redis_clean.llen(QUEUE) == 0
    assert not segments.exists()


def test_deleting_a_finished_podcast_removes_its_audio_once_the_delete_commits(
    owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    nb = factories.notebook(owner)
    podcast = podcast_of(nb, Podcast.Status.COMPLETED)
    done = generate_job(podcast, Job.Status.SUCCEEDED)
    names = with_audio(podcast)
    segments = with_segments(podcast.id)  # left by a run that stopped before its last step
    podcast.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.podcast_delete(podcast=podcast)
        assert all(default_storage.exists(n) for n in names)  # kept until the delete commits
    for callback in callbacks:
        callback()

    assert not Podcast.objects.filter(id=podcast.id).exists()
    assert not any(default_storage.exists(n) for n in names) and not segments.exists()
    assert Job.objects.get(id=done.id).status == Job.Status.SUCCEEDED  # a finished job is left as it was


# --- podcast_discard_partial


@pytest.mark.parametrize("status", [Podcast.Status.FAILED, Podcast.Status.CANCELLED])
def test_a_failed_or_cancelled_run_leaves_no_partial_audio_or_segments(owner: Any, status: str) -> None:
    podcast = podcast_of(factories.notebook(owner), status)
    run = generate_job(podcast, Job.Status.FAILED if status == Podcast.Status.FAILED else Job.Status.CANCELLED)
    names = with_audio(podcast)
    segments = with_segments(podcast.id)

    services.podcast_discard_partial(run=run)
    services.podcast_discard_partial(run=run)  # again once the worker has stopped: a no-op

    podcast.refresh_from_db()
    assert not podcast.audio_wav and not podcast.audio_mp3
    assert not any(default_storage.exists(n) for n in names) and not segments.exists()
    assert podcast.status == status  # the row stays, to say what happened


def test_a_completed_podcast_keeps_its_audio_when_a_late_pass_of_its_run_comes(owner: Any) -> None:
    podcast = podcast_of(factories.notebook(owner), Podcast.Status.COMPLETED)
    run = generate_job(podcast, Job.Status.CANCELLED)  # cancelled too late: the audio was saved
    names = with_audio(podcast)

    services.podcast_discard_partial(run=run)

    podcast.refresh_from_db()
    assert [podcast.audio_wav.name, podcast.audio_mp3.name] == names
    assert all(default_storage.exists(n) for n in names)


def test_an_older_run_leaves_the_work_of_the_newer_one_alone(owner: Any) -> None:
    podcast = podcast_of(factories.notebook(owner), Podcast.Status.FAILED)
    old_run = generate_job(podcast, Job.Status.FAILED)
    generate_job(podcast, Job.Status.RUNNING)  # a retry now owns the podcast and its folder
    names = with_audio(podcast)
    segments = with_segments(podcast.id)

    services.podcast_discard_partial(run=old_run)

    assert segments.exists() and all(default_storage.exists(n) for n in names)


def test_the_work_folder_of_a_run_whose_podcast_is_gone_is_removed(owner: Any) -> None:
    podcast = podcast_of(factories.notebook(owner), Podcast.Status.GENERATING)
    run = generate_job(podcast, Job.Status.CANCELLED)
    segments = with_segments(podcast.id)
    Podcast.objects.filter(id=podcast.id).delete()

    services.podcast_discard_partial(run=run)

    assert not segments.exists()


# --- podcasts_cleanup


def test_the_sweep_removes_failed_and_cancelled_podcasts_past_the_retention_with_their_files(
    owner: Any, settings: Any
) -> None:
    settings.QUIRE_PODCAST_RETENTION_DAYS = 7
    settings.QUIRE_PODCAST_COMPLETED_RETENTION_DAYS = None
    nb = factories.notebook(owner)
    now = timezone.now()
    old_failed = aged(podcast_of(nb, Podcast.Status.FAILED), now, 7.01)
    old_cancelled = aged(podcast_of(nb, Podcast.Status.CANCELLED), now, 30)
    recent_failed = aged(podcast_of(nb, Podcast.Status.FAILED), now, 6.99)
    old_completed = aged(podcast_of(nb, Podcast.Status.COMPLETED), now, 365)
    old_generating = aged(podcast_of(nb, Podcast.Status.GENERATING), now, 30)  # its job's business
    gone_files = with_audio(old_failed) + with_audio(old_cancelled)
    gone_segments = [with_segments(old_failed.id), with_segments(old_cancelled.id)]
    kept_files = with_audio(recent_failed) + with_audio(old_completed)

    removed = services.podcasts_cleanup(now=now)

    assert removed == {"podcasts": 2, "orphan_files": 0, "work_dirs": 0}
    assert set(Podcast.objects.values_list("id", flat=True)) == {recent_failed.id, old_completed.id, old_generating.id}
    assert not any(default_storage.exists(n) for n in gone_files)
    assert not any(folder.exists() for folder in gone_segments)
    assert all(default_storage.exists(n) for n in kept_files)


def test_completed_podcasts_are_removed_only_when_their_own_retention_is_set(owner: Any, settings: Any) -> None:
    settings.QUIRE_PODCAST_RETENTION_DAYS = 7
    settings.QUIRE_PODCAST_COMPLETED_RETENTION_DAYS = 30
    nb = factories.notebook(owner)
    now = timezone.now()
    old = aged(podcast_of(nb, Podcast.Status.COMPLETED), now, 31)
    recent = aged(podcast_of(nb, Podcast.Status.COMPLETED), now, 29)
    old_files, recent_files = with_audio(old), with_audio(recent)

    assert services.podcasts_cleanup(now=now)["podcasts"] == 1

    assert list(Podcast.objects.values_list("id", flat=True)) == [recent.id]
    assert not any(default_storage.exists(n) for n in old_files)
    assert all(default_storage.exists(n) for n in recent_files)


def test_the_sweep_removes_audio_and_work_folders_no_podcast_owns_but_not_those_being_made(
    owner: Any, settings: Any
) -> None:
    nb = factories.notebook(owner)
    finished = podcast_of(nb, Podcast.Status.COMPLETED)
    owned = with_audio(finished)
    making = [podcast_of(nb, Podcast.Status.PENDING), podcast_of(nb, Podcast.Status.GENERATING)]
    # A run saves its files a moment before its row names them.
    unnamed = [default_storage.save(f"podcasts/{nb.id}/{p.id}.mp3", ContentFile(b"ID3")) for p in making]
    orphans = [
        default_storage.save(f"podcasts/{nb.id}/{uuid.uuid4()}.wav", ContentFile(b"RIFF")),
        default_storage.save(f"podcasts/{uuid.uuid4()}/{uuid.uuid4()}.mp3", ContentFile(b"ID3")),  # notebook gone
    ]
    busy = [with_segments(p.id) for p in making]
    stale = [with_segments(finished.id), with_segments(uuid.uuid4())]

    removed = services.podcasts_cleanup()

    assert removed == {"podcasts": 0, "orphan_files": 2, "work_dirs": 2}
    assert not any(default_storage.exists(n) for n in orphans)
    assert all(default_storage.exists(n) for n in owned + unnamed)
    assert all(folder.exists() for folder in busy) and not any(folder.exists() for folder in stale)
    assert Podcast.objects.count() == 3


def test_a_podcast_finishing_while_the_sweep_runs_keeps_its_audio(owner: Any, monkeypatch: Any) -> None:
    nb = factories.notebook(owner)
    podcast = podcast_of(nb, Podcast.Status.GENERATING)
    files = [
        default_storage.save(f"podcasts/{nb.id}/{podcast.id}.{ext}", ContentFile(b"RIFF")) for ext in "wav mp3".split()
    ]
    being_made = services._being_made

    def finish_then_read() -> set[str]:
        # The worker commits the finished podcast (status and file names in one UPDATE) just as
        # the sweep asks which podcasts are being made: had it read the owned files before, the
        # files would be in neither set.
        Podcast.objects.filter(id=podcast.id).update(
            status=Podcast.Status.COMPLETED, audio_wav=files[0], audio_mp3=files[1]
        )
        return being_made()

    monkeypatch.setattr(services, "_being_made", finish_then_read)
    removed = services.podcasts_cleanup()

    assert removed["orphan_files"] == 0
    assert all(default_storage.exists(n) for n in files)


def test_the_sweep_of_an_empty_install_finds_nothing_to_do(owner: Any, settings: Any) -> None:
    assert not Path(settings.MEDIA_ROOT).exists() and not Path(settings.QUIRE_PODCAST_WORK_DIR).exists()
    assert services.podcasts_cleanup() == {"podcasts": 0, "orphan_files": 0, "work_dirs": 0}
