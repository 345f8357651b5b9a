"""Reports and podcasts: a request through the API timed to the report or podcast ``completed``,
against the same service called in this process (no queue, no work-horse, no events).

The notebook holds the first 10 documents of the ingestion corpus (about 220 chunks), uploaded
through the API once, with its overview computed (a podcast takes its topics from it). A report
is ``POST /api/v1/notebooks/{id}/reports/`` (medium length, the whole notebook); a podcast is
``POST /api/v1/notebooks/{id}/podcasts/`` of half a minute, voiced by the installed speech
backend. The baseline makes the same report or podcast with ``reports.services.report_generate``
or ``podcast.services.podcast_generate`` on a row of its own, after one untimed call that loads
what the worker preloads (the generator, the voice). The ratio is the price of running the work
as a job; the audio row says how much faster than real time a podcast is made.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.context import Context, say, wait_for
from bench.report import Row

NAME = "generation"
TITLE = "generation"
DOCUMENTS = 10
REPORT_LENGTH = "medium"
PODCAST_MINUTES = 0.5


def sources_notebook(ctx: Context) -> str:
    """A notebook with DOCUMENTS ready sources and its overview, made once per bench run."""
    from bench.scenarios.ingestion import documents, ingest_once
    from notebooks.models import Notebook

    if "generation_notebook" not in ctx.shared:
        result = ingest_once(ctx, documents(ctx)[:DOCUMENTS], "for reports and podcasts")
        if result["ready"] != DOCUMENTS:
            raise RuntimeError(f"only {result['ready']} of {DOCUMENTS} sources became ready: {result['failed']}")
        notebook = result["notebook"]
        wait_for(
            lambda: Notebook.objects.filter(id=notebook).exclude(overview_updated_at=None).exists(),
            timeout=120,
            interval=0.2,
            what="the notebook's overview",
        )
        ctx.shared["generation_notebook"] = notebook
    notebook_id: str = ctx.shared["generation_notebook"]
    return notebook_id


def through_the_api(ctx: Context, path: str, body: dict[str, Any], model: Any) -> tuple[float, Any]:
    """Seconds from the request to the row ``completed``, and the row."""
    terminal = (model.Status.COMPLETED, model.Status.FAILED, model.Status.CANCELLED)
    start = time.perf_counter()
    with ctx.http() as client:
        response = client.post(path, json=body)
    if response.status_code != 202:
        raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:300]}")
    row_id = response.json()["id"]
    wait_for(
        lambda: model.objects.filter(id=row_id, status__in=terminal).exists(),
        timeout=600,
        interval=0.02,
        what=f"{model.__name__} {row_id}",
    )
    seconds = time.perf_counter() - start
    row = model.objects.get(id=row_id)
    if row.status != model.Status.COMPLETED:
        raise RuntimeError(f"{model.__name__} {row_id} ended {row.status}: {row.error_code} {row.error}")
    return seconds, row


def in_process(row: Any, generate: Callable[..., Any], key: str) -> float:
    """Seconds for the service alone on a new row asking for what ``row`` asked for (progress
    reports are no-ops outside a job)."""
    fields = {"notebook_id": row.notebook_id, "owner_id": row.owner_id, "title": row.title, "options": row.options}
    if hasattr(row, "topic"):
        fields["topic"] = row.topic
    twin = type(row).objects.create(**fields)
    start = time.perf_counter()
    generate(**{key: str(twin.id)})
    seconds = time.perf_counter() - start
    twin.refresh_from_db()
    if twin.status != "completed":
        raise RuntimeError(f"the in-process baseline ended {twin.status}: {twin.error_code} {twin.error}")
    return seconds


def run(ctx: Context) -> list[Row]:
    from notebooks.models import Notebook
    from podcast import speech
    from podcast.models import Podcast
    from podcast.services import podcast_generate
    from reports.models import Report
    from reports.services import report_generate

    runs = ctx.runs(3)
    notebook_id = sources_notebook(ctx)
    notebook = Notebook.objects.get(id=notebook_id)
    user = ctx.user()

    # Warm-up calls, untimed: what a worker preloads (the generator; the voice and its rate).
    report_options = {"length": REPORT_LENGTH, "style": "summary", "source_ids": []}
    in_process(Report(notebook=notebook, owner=user, options=report_options), report_generate, "report_id")

    report_api: list[float] = []
    report_alone: list[float] = []
    for i in range(runs):
        seconds, report = through_the_api(
            ctx, f"/api/v1/notebooks/{notebook_id}/reports/", {"length": REPORT_LENGTH}, Report
        )
        report_api.append(seconds)
        report_alone.append(in_process(report, report_generate, "report_id"))
        say(
            f"  report {i + 1}/{runs}: {report.word_count} words, {len(report.citations)} citations in "
            f"{seconds:.2f} s through the API, {report_alone[-1]:.2f} s in this process"
        )
    rows = [
        Row("reports", f"{REPORT_LENGTH} report, whole notebook: request→completed", "s", report_api,
            report_alone, "the service in-process"),
    ]  # fmt: skip

    if not speech.available_backends():
        ctx.notes.append("generation: no speech backend is installed; podcasts were not measured")
        return rows
    podcast_api: list[float] = []
    podcast_alone: list[float] = []
    realtime: list[float] = []
    podcast_options = {"minutes": PODCAST_MINUTES, "focus": "", "source_ids": []}
    in_process(Podcast(notebook=notebook, owner=user, title="warm-up", options=podcast_options), podcast_generate,
               "podcast_id")  # fmt: skip
    for i in range(runs):
        seconds, podcast = through_the_api(
            ctx, f"/api/v1/notebooks/{notebook_id}/podcasts/", {"minutes": PODCAST_MINUTES}, Podcast
        )
        podcast_api.append(seconds)
        realtime.append(podcast.duration_seconds / seconds)
        podcast_alone.append(in_process(podcast, podcast_generate, "podcast_id"))
        say(
            f"  podcast {i + 1}/{runs}: {podcast.duration_seconds:.1f} s of audio, {len(podcast.script)} turns in "
            f"{seconds:.2f} s through the API, {podcast_alone[-1]:.2f} s in this process"
        )
    ctx.details[NAME] = {"documents": DOCUMENTS, "report_length": REPORT_LENGTH, "podcast_minutes": PODCAST_MINUTES}
    return [
        *rows,
        Row("podcasts", f"{PODCAST_MINUTES:g}-minute podcast: request→completed", "s", podcast_api, podcast_alone,
            "the service in-process"),
        Row("podcasts", "audio made per second of work", "s/s", realtime),
    ]  # fmt: skip
