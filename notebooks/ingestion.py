"""The ingestion pipeline a source's job runs (``notebooks.jobs.source_process``): read the
file, page or recording, extract and chunk its text, embed the chunks, store them, and end the
source ready, in one transaction per source. Small sources run in groups (below). Request-time
writes (adding, deleting sources) are in ``notebooks.services``; it imports from here, never the
reverse."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from backend.runtime import Candidate, Companion, JobError, progress, take_along
from notebooks import embeddings
from notebooks.fetch import FetchError, FetchPolicy, fetch
from notebooks.ingest.errors import IngestError
from notebooks.models import Chunk, Notebook, Source

if TYPE_CHECKING:
    from notebooks.ingest.filetypes import Kind

logger = logging.getLogger(__name__)

EMBED_BATCH = 32
TITLE_MAX = 300
SITE_MAX = 200


def ingestion_preload() -> None:
    """Called by the notebook_processing worker before it forks (settings.QUIRE_WORKER_PRELOAD):
    the embedder, and the modules its jobs import lazily (pypdf, python-docx, trafilatura…),
    which each work-horse would otherwise import again (about 0.2 s a job) and lose at exit."""
    from notebooks.ingest import chunking, extract  # noqa: F401
    from notebooks.ingest.embedding import preload_embedder

    chunking.default_token_counter()  # loads the chunker's tokenizer (18 ms)
    preload_embedder(settings.QUIRE_EMBEDDER)
    try:
        from pathlib import Path

        from notebooks.ingest import transcriber
        from notebooks.ingest.media import preload

        cache = Path(settings.QUIRE_MODEL_CACHE_DIR)
        preload(settings.QUIRE_WHISPER_MODEL, cache)
        # The model itself lives in a process of its own that the work-horses call: it cannot
        # be loaded here and inherited (notebooks/ingest/transcriber.py says why).
        transcriber.start(settings.QUIRE_WHISPER_MODEL, cache, settings.QUIRE_WHISPER_THREADS)
    except Exception:
        # Documents are still processed; a recording's job loads the model itself or fails
        # with the reason.
        logger.warning("The speech model could not be preloaded", exc_info=True)


def whisper() -> Any:
    """The speech model: the worker's model process when it started one, else loaded here."""
    from pathlib import Path

    from notebooks.ingest import transcriber
    from notebooks.ingest.media import get_model

    def here() -> Any:
        return get_model(
            settings.QUIRE_WHISPER_MODEL, Path(settings.QUIRE_MODEL_CACHE_DIR), settings.QUIRE_WHISPER_THREADS
        )

    path = transcriber.socket_path()
    return transcriber.RemoteModel(path, here) if path else here()


def fetch_policy() -> FetchPolicy:
    return FetchPolicy(
        allow_loopback=settings.QUIRE_FETCH_ALLOW_LOOPBACK,
        allowed_ports=frozenset(settings.QUIRE_FETCH_ALLOWED_PORTS),
        max_bytes=settings.QUIRE_FETCH_MAX_BYTES,
        timeout_seconds=settings.QUIRE_FETCH_TIMEOUT_SECONDS,
    )


# Small sources run in groups (backend/runtime/companions.py): a small source's job takes up to
# GROUP_SOURCES - 1 more of its owner's waiting small sources along, and all their chunks are
# embedded in one call. "Small": pasted text, or a text, Markdown or HTML file, of at most
# GROUP_SOURCE_BYTES; a group holds at most GROUP_BYTES, about a second and a half of embedding
# on two cores, which is also the longest another user's job waits behind one.
GROUP_SOURCES = 32
GROUP_SOURCE_BYTES = 16 * 1024
GROUP_BYTES = 64 * 1024
_GROUPED_TYPES = ("txt", "md", "html")


@dataclass
class _Prepared:
    """A source read, extracted and chunked, before its embedding."""

    source: Source
    extracted: Any
    chunks: list[Any]
    timed: _Timed | None = None


def source_process(*, source_id: str) -> None:
    """Read or fetch, extract, chunk, embed, then replace the source's chunks in one transaction.
    A small source does the same for the small sources it takes along (GROUP_SOURCES)."""
    source = Source.objects.filter(id=source_id).first()
    if source is None:
        logger.info("Source %s is gone; nothing to process", source_id)
        return
    prepared = _prepare(source)
    if _groupable(source):
        with take_along(limit=GROUP_SOURCES - 1, choose=lambda offered: _companions(source, offered)) as companions:
            if companions:
                _process_group(prepared, companions)
                return
    _store(prepared, _embed(prepared))


def _groupable(source: Source) -> bool:
    if source.kind in (Source.Kind.TEXT, Source.Kind.NOTE):
        return len(source.text) <= GROUP_SOURCE_BYTES
    return (
        source.kind == Source.Kind.FILE
        and source.content_type in _GROUPED_TYPES
        and 0 < source.size <= GROUP_SOURCE_BYTES
    )


def _companions(lead: Source, offered: Sequence[Candidate]) -> list[str]:
    """Of the lead's owner's waiting source jobs, the small ones that fit the group's budget."""
    sources = {
        str(s.id): s
        for s in Source.objects.filter(id__in=[c.subject_id for c in offered], status=Source.Status.PENDING)
    }
    room = GROUP_BYTES - max(lead.size, len(lead.text))
    chosen = []
    for candidate in offered:
        source = sources.get(candidate.subject_id)
        if source is None or candidate.kwargs.get("source_id") != candidate.subject_id or not _groupable(source):
            continue
        size = max(source.size, len(source.text))
        if size <= room:
            chosen.append(candidate.job_id)
            room -= size
    return chosen


def _process_group(lead: _Prepared, companions: list[Companion]) -> None:
    """Each companion's source is prepared as its own job (a failure is its own), every
    chunk of the group is embedded in one call, and each source is stored and its job ended."""
    members: list[tuple[Companion, _Prepared]] = []
    for companion in companions:
        prepared = companion.step(_prepare_by_id, companion.subject_id)
        if prepared is None:
            companion.succeed()  # the source is gone (its job ends, as a lone job would); no-op if it failed
        else:
            members.append((companion, prepared))
    texts = [c.text for prepared in [lead, *(p for _, p in members)] for c in prepared.chunks]
    progress(25, f"Embedding {len(texts)} chunks of {len(members) + 1} sources")
    matrix = embeddings.embedder().embed(texts).astype(np.float32)
    progress(97, "Indexing")
    at = len(lead.chunks)
    for companion, prepared in members:
        companion.step(_store, prepared, matrix[at : at + len(prepared.chunks)])
        companion.succeed()  # a no-op when its step failed; settles it when it was cancelled
        at += len(prepared.chunks)
    _store(lead, matrix[: len(lead.chunks)])


def _prepare_by_id(source_id: str) -> _Prepared | None:
    source = Source.objects.filter(id=source_id).first()
    if source is None:
        logger.info("Source %s is gone; nothing to process", source_id)
        return None
    return _prepare(source)


def _prepare(source: Source) -> _Prepared:
    from notebooks.ingest.chunking import chunk_text
    from notebooks.ingest.extract import extract, extracted_from_text

    timed: _Timed | None = None
    try:
        if source.kind in (Source.Kind.TEXT, Source.Kind.NOTE):
            progress(5, "Reading text")
            extracted = extracted_from_text(source.text, title=source.title)
        else:
            data, kind = _read_source(source)
            if kind == "audio":
                extracted, timed = _transcribe(source, data)
            else:
                progress(15, "Extracting text")
                extracted = extract(data, kind, max_pages=settings.QUIRE_MAX_PDF_PAGES)
        chunks = chunk_text(extracted.text, extracted.pages)
    except IngestError as exc:
        raise JobError(exc.code, exc.message) from exc
    return _Prepared(source, extracted, chunks, timed)


def _embed(prepared: _Prepared) -> Any:
    # A step is reported as it starts, once per step that takes a user-visible time: chunking
    # (a few ms) goes with the embedding it leads to, and the last batch with the indexing
    # that follows at once. Each report is a database update and a live event, about 2 ms in a
    # work-horse; a typical document has one batch, so four reports instead of five.
    chunks, timed = prepared.chunks, prepared.timed
    vectors = []
    model = embeddings.embedder()
    for start in range(0, len(chunks), EMBED_BATCH):
        low, span = (76, 20) if timed else (25, 70)  # a recording's first three quarters were its transcription
        progress(low + int(span * start / len(chunks)), f"Embedding chunk {start}/{len(chunks)}")
        batch = chunks[start : start + EMBED_BATCH]
        vectors.append(model.embed([c.text for c in batch]))
    progress(97, "Indexing")
    return np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, model.dim), np.float32)


def _store(prepared: _Prepared, matrix: Any) -> bool:
    """Write the source's text and chunks in one transaction; False when the source was
    deleted or cancelled meanwhile (it keeps nothing)."""
    source, extracted, chunks, timed = prepared.source, prepared.extracted, prepared.chunks, prepared.timed
    times = [timed.time_range(c.char_start, c.char_end) if timed else (None, None) for c in chunks]
    title = source.title
    if source.kind not in (Source.Kind.TEXT, Source.Kind.NOTE) and extracted.title:
        title = extracted.title[:TITLE_MAX]
    with transaction.atomic():
        # Claim the source for the result; a source deleted or cancelled meanwhile keeps nothing.
        updated = (
            Source.objects.filter(id=source.id)
            .exclude(status=Source.Status.CANCELLED)
            .update(
                status=Source.Status.READY,
                title=title,
                site=extracted.site[:SITE_MAX],
                extractor=extracted.extractor,
                text=extracted.text,
                page_count=extracted.page_count,
                word_count=extracted.word_count,
                chunk_count=len(chunks),
                language=timed.language if timed else source.language,
                duration=timed.duration if timed else None,
                transcript=timed.segments if timed else [],
                error="",
                error_code="",
                updated_at=timezone.now(),
            )
        )
        if not updated:
            logger.info("Source %s was deleted or cancelled while processing; dropping its chunks", source.id)
            return False
        # Replace, never append: running the job twice leaves the same chunks.
        Chunk.objects.filter(source_id=source.id).delete()
        Chunk.objects.bulk_create(
            Chunk(
                source_id=source.id,
                notebook_id=source.notebook_id,
                position=c.position,
                text=c.text,
                token_count=c.token_count,
                char_start=c.char_start,
                char_end=c.char_end,
                page=c.page,
                time_start=times[i][0],
                time_end=times[i][1],
                embedding=matrix[i].tobytes(),
            )
            for i, c in enumerate(chunks)
        )
        Notebook.objects.filter(id=source.notebook_id).update(chunks_version=F("chunks_version") + 1)
    return True


@dataclass
class _Timed:
    """A recording's transcript: its segments and where each sits in the source's text."""

    segments: list[dict[str, Any]]
    spans: list[tuple[int, int]]
    language: str
    duration: float

    def time_range(self, char_start: int, char_end: int) -> tuple[float | None, float | None]:
        import bisect

        first = bisect.bisect_right([end for _, end in self.spans], char_start)
        last = bisect.bisect_left([start for start, _ in self.spans], char_end) - 1
        if first >= len(self.segments) or last < first:
            return None, None
        return self.segments[first]["start"], self.segments[last]["end"]


def _transcribe(source: Source, data: bytes) -> tuple[Any, _Timed]:
    """The recording's speech as the source's text, reporting progress in media time; the
    cancel flag is checked after every segment (each report checks it)."""
    from notebooks.ingest.extract import Extracted
    from notebooks.ingest.media import ModelUnavailable, clock, probe, transcribe, transcript_text
    from notebooks.ingest.transcriber import TranscriberGone

    limit = settings.QUIRE_MEDIA_MAX_SECONDS
    info = probe(data, max_seconds=limit)
    total = max(info.duration, 1.0)
    progress(8, f"Transcribing 0:00 of {clock(info.duration)}")
    try:
        model = whisper()
    except ModelUnavailable as exc:
        raise JobError("SPEECH_MODEL_UNAVAILABLE", str(exc)) from exc

    def report(at: float) -> None:
        shown = min(at, info.duration) if info.duration else at
        progress(10 + int(65 * min(at / total, 1.0)), f"Transcribing {clock(shown)} of {clock(info.duration)}")

    try:
        result = transcribe(model, data, max_seconds=limit, language=source.language or None, on_segment=report)
    except TranscriberGone as exc:
        raise JobError("SPEECH_MODEL_GONE", str(exc), retryable=True) from exc
    text, spans = transcript_text(result)
    segments = [{"start": s.start, "end": s.end, "text": s.text} for s in result.segments]
    extracted = Extracted(
        text=text,
        pages=[],
        title=None,
        word_count=len(text.split()),
        page_count=0,
        extractor=f"whisper-{settings.QUIRE_WHISPER_MODEL}",
    )
    return extracted, _Timed(segments=segments, spans=spans, language=result.language, duration=result.duration)


def _read_source(source: Source) -> tuple[bytes, Kind]:
    from notebooks.ingest.filetypes import detect_type

    if source.kind == Source.Kind.FILE:
        progress(5, "Reading file")
        with source.file.open("rb") as handle:
            return handle.read(), source.content_type  # type: ignore[return-value]

    progress(5, "Fetching URL")
    try:
        fetched = fetch(source.url, fetch_policy())
    except FetchError as exc:
        raise JobError(exc.code, exc.message, retryable=exc.code in ("FETCH_FAILED", "TIMEOUT")) from exc
    digest = hashlib.sha256(fetched.data).hexdigest()
    twin = (
        Source.objects.filter(notebook_id=source.notebook_id, content_hash=digest)
        .exclude(id=source.id)
        .exclude(status__in=(Source.Status.FAILED, Source.Status.CANCELLED))
        .first()
    )
    if twin is not None:
        raise JobError("DUPLICATE", f"This page has the same content as the source “{twin.title}”.")
    kind = detect_type(fetched.data, _url_filename(fetched.url, fetched.content_type))
    Source.objects.filter(id=source.id).update(content_hash=digest, content_type=kind, size=len(fetched.data))
    return fetched.data, kind


def _url_filename(url: str, content_type: str) -> str:
    """A name whose extension agrees with what the server said it sent, for type detection."""
    mime = content_type.split(";")[0].strip().lower()
    by_mime = {
        "application/pdf": "page.pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "page.docx",
        "text/plain": "page.txt",
        "text/markdown": "page.md",
    }
    return by_mime.get(mime, "page.html")
