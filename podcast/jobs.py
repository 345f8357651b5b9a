from typing import Any

from backend.runtime import job
from podcast import services


@job("podcast.generate_podcast", queue="podcast", on_change=services.podcast_follow_job)
def generate_podcast(*, podcast_id: str) -> dict[str, Any] | None:
    """Write a two-host script from the notebook and voice it into WAV and MP3."""
    return services.podcast_generate(podcast_id=podcast_id)


@job("maintenance.cleanup_old_podcast_jobs", queue="maintenance", retries=1)
def cleanup_old_podcast_jobs() -> dict[str, int]:
    """Remove old failed/cancelled podcasts, orphaned audio files and stale work folders."""
    return services.podcasts_cleanup()
