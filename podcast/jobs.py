"""Jobs of the podcast app beside the hook that moves a podcast's status (a job's whole effect
is in this file). A service imports the job it enqueues; a job imports its service in its body."""

from __future__ import annotations

from typing import Any

from backend.models import Job
from backend.runtime import job, subject_follow_job
from podcast.models import Podcast


def podcast_follow_job(run: Job) -> None:
    """Status hook of podcast.generate_podcast: the podcast's status follows its job's, and a
    failed or cancelled run leaves no partial audio."""
    subject_follow_job(run, Podcast.objects.filter(id=run.subject_id, job_id=run.id), **Podcast.STATUS_OF_JOB)
    if run.status in (Job.Status.FAILED, Job.Status.CANCELLED):
        from podcast.services import podcast_discard_partial

        podcast_discard_partial(run=run)


@job("podcast.generate_podcast", queue="podcast", on_change=podcast_follow_job)
def podcast_generate(*, podcast_id: str) -> dict[str, Any] | None:
    """Write a two-host script from the notebook and voice it into WAV and MP3."""
    from podcast import services

    return services.podcast_generate(podcast_id=podcast_id)


@job("maintenance.cleanup_old_podcast_jobs", queue="maintenance", retries=1)
def podcasts_cleanup() -> dict[str, int]:
    """Remove old failed/cancelled podcasts, orphaned audio files and stale work folders."""
    from podcast import services

    return services.podcasts_cleanup()


# The dotted paths these jobs had until 2026-12 (RQ payloads and Job.func rows already queued
# hold them): kept importable for one release.
generate_podcast = podcast_generate
cleanup_old_podcast_jobs = podcasts_cleanup
