"""Podcasts end to end: a notebook's sources become a two-voice script and real audio."""

import io
import uuid
import wave
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from rest_framework.authtoken.models import Token

from backend.models import Job
from notebooks.models import Notebook
from podcast import services
from podcast.audio import estimate_pitch_hz, read_wav
from podcast.models import Podcast
from tests import documents as docs
from tests import factories
from tests.helpers import all_done, new_notebook, upload, wait_for


@pytest.fixture
def http(live_server_url: str, make_user: Any) -> httpx.Client:
    token = Token.objects.create(user=make_user())
    return httpx.Client(base_url=live_server_url, headers={"Authorization": f"Token {token.key}"}, timeout=60)


def notebook_with_sources(http: httpx.Client) -> str:
    nb = new_notebook(http, "Earth and life")
    body = upload(http, nb, [("volcanoes.pdf", docs.volcano_pdf()), ("plants.docx", docs.photosynthesis_docx())])
    sources = all_done([s["id"] for s in body.json()["sources"]])
    assert {s.status for s in sources} == {"ready"}
    return nb


def test_a_podcast_has_a_sourced_script_and_two_voices_of_the_right_length(workers: Any, http: httpx.Client) -> None:
    nb = notebook_with_sources(http)
    response = http.post(f"/api/v1/notebooks/{nb}/podcasts/", json={"minutes": 1, "title": "Earth and life"})
    assert response.status_code == 202, response.text
    podcast_id = response.json()["id"]
    assert response.json()["job"]["queue"] == "podcast"

    podcast = wait_for(
        lambda: Podcast.objects.filter(id=podcast_id, status__in=["completed", "failed"]).first(),
        timeout=180,
        message="podcast",
    )
    assert podcast.status == "completed", podcast.error
    detail = http.get(f"/api/v1/podcasts/{podcast_id}/").json()
    script = detail["script"]
    assert {t["speaker"] for t in script} == {"A", "B"}
    spoken = " ".join(t["text"] for t in script)
    source_facts = ["Mauna Loa", "Pinatubo", "pyroclastic", "chlorophyll", "Calvin cycle", "RuBisCO", "magma"]
    assert sum(fact.lower() in spoken.lower() for fact in source_facts) >= 2
    assert all(t["source_ids"] for t in script if t["speaker"] == "B" and t is not script[-1])

    wav = http.get(f"/api/v1/podcasts/{podcast_id}/audio/?format=wav")
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(wav.content)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert seconds == pytest.approx(detail["duration_seconds"], abs=0.1)
    # About as long as its script implies (word count at the measured speaking rate).
    assert seconds == pytest.approx(detail["expected_seconds"], rel=0.3)
    assert 30 <= seconds <= 100  # asked for one minute

    samples, rate = read_wav(wav.content)
    pitch: dict[str, list[float]] = {"A": [], "B": []}
    for turn in script:
        assert 0 <= turn["start"] < turn["end"] <= seconds + 0.01
        segment = samples[int(turn["start"] * rate) : int(turn["end"] * rate)]
        pitch[turn["speaker"]].append(estimate_pitch_hz(segment, rate))
    a, b = float(np.median(pitch["A"])), float(np.median(pitch["B"]))
    print(
        f"\n[figures] podcast {seconds:.1f}s, expected {detail['expected_seconds']}s; pitch A {a:.0f} Hz, B {b:.0f} Hz"
    )
    assert abs(a - b) / max(a, b) > 0.1

    mp3 = http.get(f"/api/v1/podcasts/{podcast_id}/audio/?format=mp3")
    assert mp3.status_code == 200 and mp3.headers["content-type"] == "audio/mpeg"
    assert mp3.headers["accept-ranges"] == "bytes"
    part = http.get(f"/api/v1/podcasts/{podcast_id}/audio/?format=mp3", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{len(mp3.content)}"
    assert part.content == mp3.content[100:1100]
    tail = http.get(f"/api/v1/podcasts/{podcast_id}/audio/?format=wav", headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == wav.content[-500:]
    beyond = http.get(f"/api/v1/podcasts/{podcast_id}/audio/?format=mp3", headers={"Range": "bytes=99999999-"})
    assert beyond.status_code == 416


def test_cancelling_mid_synthesis_leaves_no_audio(workers: Any, http: httpx.Client) -> None:
    nb = notebook_with_sources(http)
    podcast_id = http.post(f"/api/v1/notebooks/{nb}/podcasts/", json={"minutes": 4}).json()["id"]
    podcast = Podcast.objects.get(id=podcast_id)
    wait_for(
        lambda: Job.objects.filter(id=podcast.job_id, message__startswith="Voicing turn 2/").exists(),
        timeout=120,
        message="synthesis to start",
    )
    assert Podcast.objects.get(id=podcast_id).script  # stored before synthesis
    assert http.post(f"/api/v1/jobs/{podcast.job_id}/cancel/").status_code == 200
    podcast = wait_for(
        lambda: Podcast.objects.filter(id=podcast_id, status="cancelled").first(), timeout=10, message="cancelled"
    )
    assert not podcast.audio_wav and not podcast.audio_mp3
    wait_for(lambda: not services.segment_dir(podcast_id).exists(), timeout=10, message="work folder removed")
    assert not default_storage.exists(f"podcasts/{nb}/{podcast_id}.wav")
    assert http.get(f"/api/v1/podcasts/{podcast_id}/audio/").status_code == 409


def test_a_podcast_needs_ready_sources_and_stays_private(http: httpx.Client, make_user: Any) -> None:
    nb = new_notebook(http)
    response = http.post(f"/api/v1/notebooks/{nb}/podcasts/", json={"minutes": 2})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "NO_READY_SOURCES"
    assert http.post(f"/api/v1/notebooks/{nb}/podcasts/", json={"minutes": 500}).status_code == 400
    notebook = Notebook.objects.get(id=nb)
    podcast = factories.podcast(notebook, title="x")
    other = Token.objects.create(user=make_user()).key
    client = httpx.Client(base_url=str(http.base_url), headers={"Authorization": f"Token {other}"})
    for path in (f"/api/v1/podcasts/{podcast.id}/", f"/api/v1/podcasts/{podcast.id}/audio/"):
        assert client.get(path).status_code == 404
    assert client.delete(f"/api/v1/podcasts/{podcast.id}/").status_code == 404
    assert client.get(f"/api/v1/notebooks/{nb}/podcasts/").status_code == 404


@pytest.mark.django_db
def test_cleanup_removes_exactly_what_the_retention_says(make_user: Any, settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.QUIRE_PODCAST_WORK_DIR = str(tmp_path / "work")
    settings.QUIRE_PODCAST_RETENTION_DAYS = 7
    settings.QUIRE_PODCAST_COMPLETED_RETENTION_DAYS = None
    user = make_user()
    notebook = factories.notebook(user, title="n")
    now = timezone.now()

    def make(status: str, age_days: float) -> Podcast:
        podcast = factories.podcast(notebook, title=status, status=status)
        name = default_storage.save(f"podcasts/{notebook.id}/{podcast.id}.mp3", ContentFile(b"ID3"))
        when = now - timedelta(days=age_days)
        Podcast.objects.filter(id=podcast.id).update(audio_mp3=name, updated_at=when, completed_at=when)
        return podcast

    old_failed, old_cancelled = make("failed", 10), make("cancelled", 8)
    new_failed, old_completed = make("failed", 1), make("completed", 100)
    orphan = default_storage.save(f"podcasts/{notebook.id}/{uuid.uuid4()}.wav", ContentFile(b"RIFF"))
    stale = Path(settings.QUIRE_PODCAST_WORK_DIR) / str(uuid.uuid4())
    stale.mkdir(parents=True)

    result = services.podcasts_cleanup()
    assert result == {"podcasts": 2, "orphan_files": 1, "work_dirs": 1}
    assert set(Podcast.objects.values_list("id", flat=True)) == {new_failed.id, old_completed.id}
    assert not default_storage.exists(orphan) and not stale.exists()
    assert default_storage.exists(f"podcasts/{notebook.id}/{old_completed.id}.mp3")

    settings.QUIRE_PODCAST_COMPLETED_RETENTION_DAYS = 30
    assert services.podcasts_cleanup()["podcasts"] == 1
    assert set(Podcast.objects.values_list("id", flat=True)) == {new_failed.id}
    assert {old_failed.id, old_cancelled.id}.isdisjoint(Podcast.objects.values_list("id", flat=True))


@pytest.mark.django_db
def test_files_written_after_a_cancel_are_removed_once_the_worker_stops(
    make_user: Any, settings: Any, tmp_path: Path
) -> None:
    """A cancel through the API cleans up at once, but the horse may write one more segment
    before it is killed; the second pass (job_settled) removes that too."""
    from backend.runtime import state as job_services

    settings.QUIRE_PODCAST_WORK_DIR = str(tmp_path / "work")
    user = make_user()
    podcast = factories.podcast(factories.notebook(user, title="n"), title="p", status="generating")
    job = factories.job(
        user, kind="podcast.generate_podcast", queue="podcast", func="podcast.jobs.generate_podcast", timeout=60,
        status="running", subject_type="podcast", subject_id=str(podcast.id),
    )  # fmt: skip
    Podcast.objects.filter(id=podcast.id).update(job_id=job.id)
    job_services.job_cancel(job=job)
    assert Podcast.objects.get(id=podcast.id).status == "cancelled"
    late = services.segment_dir(podcast.id) / "turn-0007.wav"
    late.parent.mkdir(parents=True)
    late.write_bytes(b"RIFF")  # written by the horse between the cancel and its death

    job_services.job_lost(job_id=job.id, stopped=True, will_retry=False, timed_out=False)
    assert not services.segment_dir(podcast.id).exists()
    assert Job.objects.get(id=job.id).status == "cancelled"

    # A newer run of the same podcast owns the folder: a late pass for the old job keeps it.
    late.parent.mkdir(parents=True)
    Podcast.objects.filter(id=podcast.id).update(job_id=str(uuid.uuid4()), status="generating")
    job_services.job_settled(job_id=job.id)
    assert services.segment_dir(podcast.id).exists()
