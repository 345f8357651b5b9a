"""Jobs of the notebook_processing queue: thin wrappers over notebooks.services."""

from typing import Any

from backend.runtime import job
from notebooks import ask, services


@job("notebooks.process_source", queue="notebook_processing", on_change=services.source_follow_job)
def process_source(*, source_id: str) -> None:
    """Read or fetch a source, extract, chunk and embed it, and index its chunks."""
    services.source_process(source_id=source_id)


@job("notebooks.build_overview", queue="notebook_processing", retries=2)
def build_overview(*, notebook_id: str) -> dict[str, Any] | None:
    """Summary, key topics and suggested questions of a notebook, after a batch of sources."""
    return services.overview_build(notebook_id=notebook_id)


# Questions run on `default`, an in-process queue: a person is waiting for the answer, so it
# must not queue behind the forking ingestion of an import. Only the LLM path fails in ways a
# retry mends (a timeout, a 5xx), and soon or not at all: a second, then five.
@job("notebooks.answer_question", queue="default", retries=2, retry_intervals=(1, 5), on_change=ask.question_follow_job)
def answer_question(*, question_id: str) -> dict[str, Any] | None:
    """Answer a question from the notebook's passages, streaming the answer as events."""
    return ask.question_answer(question_id=question_id)
