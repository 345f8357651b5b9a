"""Jobs of the notebook_processing queue: thin wrappers over notebooks.services."""

from typing import Any

from backend.runtime import job
from notebooks import services


@job("notebooks.process_source", queue="notebook_processing", on_change=services.source_follow_job)
def process_source(*, source_id: str) -> None:
    """Read or fetch a source, extract, chunk and embed it, and index its chunks."""
    services.source_process(source_id=source_id)


@job("notebooks.build_overview", queue="notebook_processing", retries=2)
def build_overview(*, notebook_id: str) -> dict[str, Any] | None:
    """Summary, key topics and suggested questions of a notebook, after a batch of sources."""
    return services.overview_build(notebook_id=notebook_id)
