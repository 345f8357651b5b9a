"""Bulk import: many small documents (SciFact abstracts), uploaded through the API in requests of
20 into one notebook, timed from the first request to the last source ``ready`` and to the
notebook's overview done, against the embedder alone on the same chunks in this process, in
calls of 32 chunks across documents (the embedder's best speed, as the issue measured it: 43.5
chunks/s then; calls of one document's chunks, 1-2 for an abstract, are slower and reported too).

The abstracts come from ``../shared/eval/scifact/corpus.jsonl`` (relative to the repository;
``QUIRE_BENCH_SCIFACT`` overrides it), one ``.txt`` file each ("title", blank line, abstract):
2,000 of them (quick: 200; ``QUIRE_BENCH_BULK_COUNT`` overrides both). The client behaves as a
bulk client should: on a 429 it waits for ``Retry-After`` and sends the same request again (the
count of such waits is reported). One run: the full import takes minutes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from bench.context import Context, say, wait_for
from bench.report import Row
from bench.scenarios.ingestion import EMBED_CALL, embed_alone

NAME = "bulk"
TITLE = "bulk import"
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "eval" / "scifact" / "corpus.jsonl"


def abstracts(count: int) -> list[tuple[str, bytes]]:
    path = Path(os.environ.get("QUIRE_BENCH_SCIFACT", CORPUS))
    docs: list[tuple[str, bytes]] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if row["text"].strip():
                docs.append((f"scifact-{row['_id']}.txt", f"{row['title']}\n\n{row['text']}\n".encode()))
            if len(docs) == count:
                break
    return docs


def chunk_texts(docs: list[tuple[str, bytes]]) -> list[list[str]]:
    from notebooks.ingest.chunking import chunk_text
    from notebooks.ingest.extract import extract

    texts = []
    for _name, data in docs:
        extracted = extract(data, "txt")
        texts.append([c.text for c in chunk_text(extracted.text, extracted.pages)])
    return texts


def import_once(ctx: Context, docs: list[tuple[str, bytes]]) -> dict[str, Any]:
    from backend.models import Job
    from notebooks.models import Notebook, Source

    notebook = ctx.new_notebook("bench: bulk import")
    per_request = settings.QUIRE_MAX_FILES_PER_REQUEST
    ids: list[str] = []
    waits = 0
    t0 = time.time()
    with ctx.http(timeout=600) as client:
        for start in range(0, len(docs), per_request):
            files = [("files", (name, data, "text/plain")) for name, data in docs[start : start + per_request]]
            while True:
                response = client.post(f"/api/v1/notebooks/{notebook}/sources/", files=files)
                if response.status_code != 429:
                    break
                waits += 1
                time.sleep(float(response.headers.get("Retry-After", "5")))
            if response.status_code != 202:
                raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
            ids += [s["id"] for s in response.json()["sources"]]
    uploaded = time.time()
    terminal = (Source.Status.READY, Source.Status.FAILED, Source.Status.CANCELLED)
    wait_for(
        lambda: Source.objects.filter(id__in=ids, status__in=terminal).count() == len(ids),
        timeout=7200,
        interval=0.5,
        what="the abstracts to be ready",
    )
    overviews = Job.objects.filter(notebook_id=notebook, kind="notebooks.build_overview")
    wait_for(
        lambda: overviews.exists() and not overviews.exclude(status__in=Job.TERMINAL).exists(),
        timeout=600,
        interval=0.5,
        what="the overview",
    )
    ready = Source.objects.filter(id__in=ids, status=Source.Status.READY)
    last_ready = max(s.updated_at.timestamp() for s in ready)
    runs = list(overviews.order_by("created_at"))
    overview_done = max(j.finished_at.timestamp() for j in runs if j.finished_at)
    overview = Notebook.objects.get(id=notebook).overview or {}
    chunks = sum(s.chunk_count for s in ready)
    return {
        "notebook": notebook,
        "seconds": last_ready - t0,
        "overview_seconds": overview_done - t0,
        "upload_seconds": uploaded - t0,
        "retry_after_waits": waits,
        "sources": len(ids),
        "ready": ready.count(),
        "chunks": chunks,
        "chunks_per_s": chunks / (last_ready - t0),
        "overview_runs": len(runs),
        "overview_run_seconds": [
            (j.finished_at - j.started_at).total_seconds() for j in runs if j.finished_at and j.started_at
        ],
        "overview_statuses": [j.status for j in runs],
        "overview_source_count": overview.get("source_count"),
    }


def run(ctx: Context) -> list[Row]:
    count = int(os.environ.get("QUIRE_BENCH_BULK_COUNT") or ctx.size(2000, 200))
    docs = abstracts(count)
    per_doc = chunk_texts(docs)
    total_chunks = sum(len(t) for t in per_doc)
    say(f"  corpus: {len(docs)} SciFact abstracts, {total_chunks} chunks")
    runs = ctx.runs(1, 1)
    results: list[dict[str, Any]] = []
    baseline: list[float] = []
    per_document: list[float] = []
    for i in range(runs):
        result = import_once(ctx, docs)
        results.append(result)
        ctx.delete_notebook(result["notebook"])
        flat = [text for texts in per_doc for text in texts]
        baseline.append(embed_alone([flat[at : at + EMBED_CALL] for at in range(0, len(flat), EMBED_CALL)]))
        per_document.append(embed_alone(per_doc))
        say(
            f"  run {i + 1}/{runs}: {result['chunks']} chunks of {result['ready']} sources ready in "
            f"{result['seconds']:.1f} s = {result['chunks_per_s']:.1f} chunks/s (embedder alone "
            f"{baseline[-1]:.1f} in calls of {EMBED_CALL}, {per_document[-1]:.1f} per document); "
            f"overview done at {result['overview_seconds']:.1f} s after "
            f"{result['overview_runs']} run(s); uploads took {result['upload_seconds']:.1f} s "
            f"with {result['retry_after_waits']} Retry-After wait(s)"
        )
    if any(r["ready"] != r["sources"] for r in results):
        ctx.notes.append(f"bulk: {results[0]['sources'] - results[0]['ready']} abstracts did not become ready")
    if any(r["chunks"] != total_chunks for r in results):
        ctx.notes.append(f"bulk: the workers made {results[0]['chunks']} chunks, the baseline {total_chunks}")
    ctx.details[NAME] = {
        "abstracts": len(docs),
        "chunks": total_chunks,
        "runs": results,
        "embedder_alone_chunks_per_s": baseline,
        "embedder_per_document_chunks_per_s": per_document,
    }
    what = f"{len(docs)} abstracts in requests of {settings.QUIRE_MAX_FILES_PER_REQUEST}"
    return [
        Row(
            TITLE,
            f"upload→last ready, {what}, {total_chunks} chunks",
            "chunks/s",
            [r["chunks_per_s"] for r in results],
            baseline,
            f"embedder alone, calls of {EMBED_CALL}",
            "≥ 0.8x embedder alone",
            lambda v, b: b is not None and v >= 0.8 * b,
        ),
        Row(TITLE, "first request→overview done", "s", [r["overview_seconds"] for r in results]),
        Row(
            TITLE,
            "overview job runs for the whole import",
            "runs",
            [float(r["overview_runs"]) for r in results],
            target="≤ 3",
            check=lambda v, b: v <= 3,
        ),
    ]
