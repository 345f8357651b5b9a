"""Jobs of the notebooks app, each beside the hook that moves its subject's status, so a job's
whole effect is in this file.

Imports run one way: a service imports the job it enqueues at module level, and a job (or its
hook) imports its service inside its body. A job takes ids and calls one service, which
re-fetches the rows and returns with a log line when they are gone.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from backend.models import Job
from backend.runtime import job, subject_follow_job
from notebooks.models import Question, Source


def source_follow_job(run: Job) -> None:
    """Status hook of notebooks.process_source: the source's status follows its job's, and the
    last job of a batch that made a source ready asks for the notebook's overview."""
    sources = Source.objects.filter(id=run.subject_id, job_id=run.id)
    now = timezone.now()
    if run.status in (Job.Status.RUNNING, Job.Status.RETRYING):
        sources.filter(status=Source.Status.PENDING).update(status=Source.Status.PROCESSING, updated_at=now)
    elif run.status == Job.Status.QUEUED:
        sources.exclude(status=Source.Status.READY).update(status=Source.Status.PENDING, updated_at=now)
    elif run.status in (Job.Status.FAILED, Job.Status.CANCELLED):
        # A source that reached ready keeps its chunks: a late failure does not unmake them.
        sources.exclude(status=Source.Status.READY).update(
            status=Source.Status.FAILED if run.status == Job.Status.FAILED else Source.Status.CANCELLED,
            error=run.error if run.status == Job.Status.FAILED else "Processing was cancelled.",
            error_code=run.error_code if run.status == Job.Status.FAILED else "CANCELLED",
            updated_at=now,
        )
    if run.status in Job.TERMINAL and run.batch_id is not None and run.notebook_id is not None:
        batch = Job.objects.filter(batch_id=run.batch_id)
        # Two last jobs ending together may both ask: overview_request coalesces them.
        if not batch.filter(status__in=Job.ACTIVE).exists() and batch.filter(status=Job.Status.SUCCEEDED).exists():
            from notebooks.services import overview_request

            overview_request(notebook_id=str(run.notebook_id), owner=run.owner, priority=run.priority)


@job("notebooks.process_source", queue="notebook_processing", on_change=source_follow_job)
def source_process(*, source_id: str) -> None:
    """Read or fetch a source, extract, chunk and embed it, and index its chunks."""
    from notebooks import ingestion

    ingestion.source_process(source_id=source_id)


@job("notebooks.build_overview", queue="notebook_processing", retries=2)
def overview_build(*, notebook_id: str) -> dict[str, Any] | None:
    """Summary, key topics and suggested questions of a notebook, after a batch of sources."""
    from notebooks import services

    return services.overview_build(notebook_id=notebook_id)


def question_follow_job(run: Job) -> None:
    """Status hook of notebooks.answer_question."""
    S = Question.Status
    subject_follow_job(
        run,
        Question.objects.filter(id=run.subject_id, job_id=run.id),
        pending=S.PENDING, working=S.ANSWERING, done=S.COMPLETED, failed=S.FAILED, cancelled=S.CANCELLED,
    )  # fmt: skip


# Questions run on `default`, an in-process queue: a person is waiting for the answer, so it
# must not queue behind the forking ingestion of an import. Only the LLM path fails in ways a
# retry mends (a timeout, a 5xx), and soon or not at all: a second, then five.
@job("notebooks.answer_question", queue="default", retries=2, retry_intervals=(1, 5), on_change=question_follow_job)
def question_answer(*, question_id: str) -> dict[str, Any] | None:
    """Answer a question from the notebook's passages, streaming the answer as events."""
    from notebooks import ask

    return ask.question_answer(question_id=question_id)


# The dotted paths these jobs had until 2026-12 (RQ payloads and Job.func rows already queued
# hold them): kept importable for one release.
process_source = source_process
build_overview = overview_build
answer_question = question_answer
