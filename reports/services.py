"""Reports: retrieve passages for a topic (or the whole notebook), outline, write cited sections."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backend.errors import Conflict
from backend.runtime import JobError, jobs_cancel_active, progress
from notebooks import selectors as notebook_selectors
from notebooks.llm import LLMError
from reports import jobs
from reports.models import Report

if TYPE_CHECKING:  # for annotations only: the app reads notebooks through notebooks.selectors
    from notebooks.models import Notebook

logger = logging.getLogger(__name__)

PASSAGES_FOR_LENGTH = {"short": 16, "medium": 32, "long": 64}


@transaction.atomic
def report_create(
    *,
    notebook: Notebook,
    owner: Any,
    topic: str = "",
    title: str = "",
    length: str = "medium",
    style: str = "summary",
    source_ids: list[str] | None = None,
) -> Report:
    if not notebook_selectors.ready_source_count(notebook=notebook, source_ids=source_ids):
        raise Conflict("The notebook has no ready sources to write from yet.", code="NO_READY_SOURCES")
    report = Report.objects.create(
        notebook=notebook,
        owner=owner,
        topic=topic,
        title=title,
        options={"length": length, "style": style, "source_ids": source_ids or []},
    )
    job = jobs.report_generate.enqueue(
        {"report_id": str(report.id)}, owner=owner, subject=report, notebook_id=notebook.id
    )
    Report.objects.filter(id=report.id).update(job_id=job.id)
    report.job_id = job.id
    return report


def report_generate(*, report_id: str) -> dict[str, Any] | None:
    from reports.generation import GenerationError, Passage, ReportOptions, get_generator_for

    report = Report.objects.select_related("notebook").filter(id=report_id).first()
    if report is None:
        logger.info("Report %s is gone; nothing to write", report_id)
        return None
    length = report.options.get("length", "medium")
    source_ids = report.options.get("source_ids") or None
    limit = PASSAGES_FOR_LENGTH.get(length, 32)
    progress(3, "Retrieving passages")
    if report.topic.strip():
        # Both generators write from the passages about the topic, never from the rest.
        found = notebook_selectors.topic_passages(
            notebook=report.notebook, topic=report.topic, source_ids=source_ids, limit=limit
        )
        if not found and notebook_selectors.ready_source_count(notebook=report.notebook, source_ids=source_ids):
            raise JobError(
                "TOPIC_NOT_COVERED",
                f"No passage of the sources is about \u201c{report.topic.strip()}\u201d; "
                "try other words for the topic, or add sources about it.",
            )
    else:
        found = notebook_selectors.passages(notebook=report.notebook, source_ids=source_ids, limit=limit)
    if not found:
        raise JobError("NO_READY_SOURCES", "The notebook has no ready sources to write from.")
    passages = [
        Passage(
            source_id=p.source_id,
            source_title=p.source_title,
            chunk_id=str(p.chunk_id),
            position=p.position,
            page=p.page,
            time=p.time,
            text=p.text,
            score=p.score,
            embedding=p.embedding,
        )
        for p in found
    ]
    options = ReportOptions(
        length=length,
        style=report.options.get("style", "summary"),
        topic=report.topic or None,
        title=report.title or None,
    )

    def step(percent: int, message: str) -> None:
        progress(10 + int(percent * 0.85), message)

    try:
        draft = get_generator_for(settings).generate(passages, options, step)
    except (GenerationError, LLMError) as exc:
        raise JobError(exc.code, exc.message, retryable=exc.retryable) from exc
    progress(97, "Saving")
    updated = (
        Report.objects.filter(id=report.id)
        .exclude(status=Report.Status.CANCELLED)
        .update(
            status=Report.Status.COMPLETED,
            title=draft.title[:300],
            markdown=draft.markdown,
            html=draft.html,
            citations=[c.to_dict() for c in draft.citations],
            sections=list(draft.sections),
            word_count=draft.word_count,
            generator=draft.generator,
            warnings=list(draft.warnings),
            error="",
            error_code="",
            completed_at=timezone.now(),
            updated_at=timezone.now(),
        )
    )
    if not updated:
        return None
    return {"citations": len(draft.citations), "words": draft.word_count, "generator": draft.generator}


def generation_preload() -> None:
    """Called by the reports worker before it forks (settings.QUIRE_WORKER_PRELOAD): the
    generators, which the job imports lazily and each horse would import again."""
    from reports import generation  # noqa: F401


def report_delete(*, report: Report) -> None:
    jobs_cancel_active(job_ids=[report.job_id])
    report.delete()


def reports_cleanup(*, now: Any = None) -> dict[str, int]:
    """Retention: failed and cancelled reports after QUIRE_REPORT_RETENTION_DAYS; completed ones
    only when QUIRE_REPORT_COMPLETED_RETENTION_DAYS is set. Reports keep no files: their
    Markdown and HTML live in the row."""
    now = now or timezone.now()
    progress(message="Removing old reports")  # step boundaries: where crash tests strike
    doomed = Report.objects.filter(
        status__in=(Report.Status.FAILED, Report.Status.CANCELLED),
        updated_at__lt=now - timedelta(days=settings.QUIRE_REPORT_RETENTION_DAYS),
    )
    deleted, _ = doomed.delete()
    if settings.QUIRE_REPORT_COMPLETED_RETENTION_DAYS is not None:
        progress(message="Removing old completed reports")
        old, _ = Report.objects.filter(
            status=Report.Status.COMPLETED,
            completed_at__lt=now - timedelta(days=settings.QUIRE_REPORT_COMPLETED_RETENTION_DAYS),
        ).delete()
        deleted += old
    return {"reports": deleted}
