"""Ingestion: a generated corpus uploaded through the API, timed from the first upload to the last
source ``ready``, against the embedder alone encoding the same chunks in this process.

The corpus is 100 documents (PDF, DOCX and HTML in turn) of 10 pages of about 300 words, about
1,000 pages (quick: 10 documents, 100 pages). It is posted to ``POST /api/v1/notebooks/{id}/sources/``
with a token, 20 files per request (the API's limit), into a fresh notebook each run, and
processed by the Procfile's one ``notebook_processing`` worker (a forking worker that preloads
the model). The baseline extracts and chunks the same documents (untimed), then times
``get_embedder("minilm-onnx").embed`` over their chunks in the job's calls of 32 chunks.
"""

from __future__ import annotations

import os
import time
from typing import Any

from django.conf import settings

from bench.context import Context, say, wait_for
from bench.corpus import MIME, Document, corpus
from bench.report import Row
from bench.scenarios.memory import Sampler

NAME = "ingestion"
TITLE = "ingestion"
EMBED_CALL = 32  # notebooks.ingestion.EMBED_BATCH
DIAGNOSTIC_CHUNKS = 160


def documents(ctx: Context) -> list[Document]:
    if "corpus" not in ctx.shared:
        count = ctx.size(100, 10)
        say(f"  generating {count} documents")
        ctx.shared["corpus"] = corpus(count)
    docs: list[Document] = ctx.shared["corpus"]
    return docs


def ingest_once(ctx: Context, docs: list[Document], label: str) -> dict[str, Any]:
    """Upload the corpus into a new notebook and wait until every source is ready (or failed)."""
    from notebooks.models import Source

    notebook = ctx.new_notebook(f"bench: ingestion {label}")
    per_request = settings.QUIRE_MAX_FILES_PER_REQUEST
    ids: list[str] = []
    t0 = time.time()
    with ctx.http(timeout=600) as client:
        for start in range(0, len(docs), per_request):
            group = docs[start : start + per_request]
            files = [("files", (d.name, d.data, MIME[d.kind])) for d in group]
            response = client.post(f"/api/v1/notebooks/{notebook}/sources/", files=files)
            if response.status_code != 202:
                raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
            ids += [s["id"] for s in response.json()["sources"]]
    uploaded = time.time()
    terminal = (Source.Status.READY, Source.Status.FAILED, Source.Status.CANCELLED)

    # A cheap poll (one COUNT) while the worker runs; the rows, with their extracted text, are
    # read once at the end: loading them every poll took CPU from the jobs being measured.
    def done() -> bool:
        return Source.objects.filter(id__in=ids, status__in=terminal).count() == len(ids)

    wait_for(done, timeout=3600, interval=0.25, what="the corpus to be ready")
    sources = list(Source.objects.filter(id__in=ids))
    ready = [s for s in sources if s.status == Source.Status.READY]
    end = max(s.updated_at.timestamp() for s in ready) if ready else time.time()
    failed = [f"{s.original_filename}: {s.error_code}" for s in sources if s.status != Source.Status.READY]
    result = {
        "notebook": notebook,
        "seconds": end - t0,
        "upload_seconds": uploaded - t0,
        "sources": len(sources),
        "ready": len(ready),
        "failed": failed,
        "chunks": sum(s.chunk_count for s in ready),
        "pages": sum(d.pages for d in docs),
        "pdf_pages_reported": sum(s.page_count for s in ready),
        "words_reported": sum(s.word_count for s in ready),
    }
    result["chunks_per_s"] = result["chunks"] / result["seconds"]
    result["pages_per_s"] = result["pages"] / result["seconds"]
    result["jobs"] = job_times(notebook, t0)
    return result


def job_times(notebook: str, t0: float) -> dict[str, Any]:
    """Where the time went, from the notebook's Job rows: seconds spent running each kind, and
    the wait before the first job started."""
    from backend.models import Job

    jobs = list(Job.objects.filter(notebook_id=notebook).exclude(started_at=None))
    by_kind: dict[str, float] = {}
    for job in jobs:
        if job.finished_at is not None:
            by_kind[job.kind] = by_kind.get(job.kind, 0.0) + (job.finished_at - job.started_at).total_seconds()
    first = min((j.started_at.timestamp() for j in jobs), default=t0)
    return {"running_seconds_by_kind": by_kind, "first_start_after_upload_s": first - t0, "count": len(jobs)}


def forked_rate(texts: list[str]) -> float:
    """Chunks/s of the embedder in a child forked after this process loaded it: how a work-horse runs."""
    from notebooks.ingest.embedding import get_embedder

    embedder = get_embedder("minilm-onnx")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, leave without any cleanup (as RQ's horse does)
        try:
            start = time.perf_counter()
            for begin in range(0, len(texts), EMBED_CALL):
                embedder.embed(texts[begin : begin + EMBED_CALL])
            os.write(write, f"{len(texts) / (time.perf_counter() - start):.3f}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        return float(pipe.read() or "nan")


def diagnose(texts: list[str]) -> dict[str, float]:
    """The embedder's speed on a sample: in this process (default threads), with one thread, and
    in a forked child, to explain a gap between the pipeline and the embedder alone."""
    from notebooks.ingest.embedding import OnnxMiniLMEmbedder, get_embedder

    def rate(embedder: Any) -> float:
        embedder.embed(texts[:EMBED_CALL])
        start = time.perf_counter()
        for begin in range(0, len(texts), EMBED_CALL):
            embedder.embed(texts[begin : begin + EMBED_CALL])
        return len(texts) / (time.perf_counter() - start)

    return {
        "in_process_default_threads": rate(get_embedder("minilm-onnx")),
        "in_process_1_thread": rate(OnnxMiniLMEmbedder(intra_op_threads=1)),
        "forked_child": forked_rate(texts),
    }


def chunk_texts(docs: list[Document]) -> list[list[str]]:
    from notebooks.ingest.chunking import chunk_text
    from notebooks.ingest.extract import extract

    texts = []
    for doc in docs:
        extracted = extract(doc.data, doc.kind)  # type: ignore[arg-type]
        texts.append([c.text for c in chunk_text(extracted.text, extracted.pages)])
    return texts


def embed_alone(per_doc: list[list[str]]) -> float:
    """Chunks per second of the embedder alone, in the job's calls of EMBED_CALL chunks."""
    from notebooks.ingest.embedding import get_embedder

    embedder = get_embedder("minilm-onnx")
    embedder.embed(per_doc[0][:EMBED_CALL])  # warm-up: the arena grows to a full batch's size
    count = 0
    start = time.perf_counter()
    for texts in per_doc:
        for begin in range(0, len(texts), EMBED_CALL):
            embedder.embed(texts[begin : begin + EMBED_CALL])
        count += len(texts)
    return count / (time.perf_counter() - start)


def run(ctx: Context) -> list[Row]:
    docs = documents(ctx)
    runs = ctx.runs(3, 2)
    per_doc = chunk_texts(docs)
    ctx.shared["chunk_texts"] = per_doc
    total_chunks = sum(len(t) for t in per_doc)
    pages = sum(d.pages for d in docs)
    say(f"  corpus: {len(docs)} documents, {pages} pages, {total_chunks} chunks")

    results: list[dict[str, Any]] = []
    baseline: list[float] = []
    samples: list[dict[str, Any]] = []
    for i in range(runs):
        cpu = time.process_time()
        with Sampler(ctx.stack) as sampler:
            result = ingest_once(ctx, docs, f"run {i + 1}")
        samples.append(sampler.summary())
        result["bench_cpu_seconds"] = time.process_time() - cpu
        result["sampler_cpu_seconds"] = samples[-1]["cpu_seconds"]
        results.append(result)
        # Deleting the notebook cancels its overview jobs: the next run starts on an idle worker.
        ctx.delete_notebook(result["notebook"])
        baseline.append(embed_alone(per_doc))
        say(
            f"  run {i + 1}/{runs}: {result['chunks']} chunks in {result['seconds']:.1f} s = "
            f"{result['chunks_per_s']:.1f} chunks/s (embedder alone {baseline[-1]:.1f} chunks/s); "
            f"peak RSS {samples[-1]['peak_rss'] / 2**20:.0f} MB; this process's CPU meanwhile "
            f"{result['bench_cpu_seconds']:.1f} s, of which memory sampling {result['sampler_cpu_seconds']:.1f} s"
        )
    ctx.shared["memory_samples"] = samples

    mismatched = [r for r in results if r["chunks"] != total_chunks]
    if mismatched:
        ctx.notes.append(f"ingestion: the workers made {mismatched[0]['chunks']} chunks, the baseline {total_chunks}")
    failed = [f for r in results for f in r["failed"]]
    if failed:
        ctx.notes.append(f"ingestion: {len(failed)} sources did not become ready ({failed[0]}…)")
    sample = [t for doc in per_doc for t in doc][:DIAGNOSTIC_CHUNKS]
    diagnostic = diagnose(sample)
    jobs = results[-1]["jobs"]["running_seconds_by_kind"]
    ctx.notes.append(
        f"ingestion: embedder speed on {len(sample)} chunks: in one process "
        f"{diagnostic['in_process_default_threads']:.1f} chunks/s (default threads), "
        f"{diagnostic['in_process_1_thread']:.1f} with 1 thread, {diagnostic['forked_child']:.1f} in a child forked "
        f"after loading (as a work-horse runs); last run: {results[-1]['seconds']:.0f} s wall, jobs running "
        + ", ".join(f"{kind} {seconds:.0f} s" for kind, seconds in sorted(jobs.items()))
    )
    ctx.details[NAME] = {
        "diagnostic_chunks_per_s": diagnostic,
        "documents": len(docs),
        "pages": pages,
        "chunks": total_chunks,
        "bytes": sum(len(d.data) for d in docs),
        "runs": results,
        "embedder_alone_chunks_per_s": baseline,
    }
    pages_per_chunk = pages / total_chunks
    return [
        Row(
            TITLE,
            f"upload→ready, {len(docs)} docs, {total_chunks} chunks",
            "chunks/s",
            [r["chunks_per_s"] for r in results],
            baseline,
            "embedder alone",
            "≥ 0.85x embedder alone",
            lambda v, b: b is not None and v >= 0.85 * b,
        ),
        Row(
            TITLE,
            f"upload→ready, {pages} pages",
            "pages/s",
            [r["pages_per_s"] for r in results],
            [b * pages_per_chunk for b in baseline],
            "embedder alone",
        ),
    ]
