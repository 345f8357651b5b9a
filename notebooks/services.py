"""Writes for notebooks and their sources, and the ingestion work the jobs run."""

from __future__ import annotations

import hashlib
import logging
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import status

from backend.errors import DomainError
from backend.models import Batch, Job
from backend.runtime import (
    Candidate,
    Companion,
    JobError,
    batch_create,
    current,
    jobs_cancel_active,
    progress,
    publish_event,
    take_along,
)
from notebooks import embeddings, jobs
from notebooks.ask import question_answerable
from notebooks.fetch import FetchError, FetchPolicy, fetch, validate_url
from notebooks.ingest.errors import IngestError
from notebooks.models import Chunk, Notebook, Source
from notebooks.overview import compute_overview

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

    from notebooks.ingest.filetypes import Kind

logger = logging.getLogger(__name__)

EMBED_BATCH = 32
TITLE_MAX = 300
SITE_MAX = 200


class SourceRejected(DomainError):
    code = "SOURCE_REJECTED"


class StorageUnavailable(DomainError):
    """The file storage (a disk, or S3 on another host) refused a write: the client may retry."""

    code = "STORAGE_UNAVAILABLE"
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


class SourcesQueueFull(DomainError):
    status_code = 429
    code = "QUEUE_FULL"

    def __init__(self, waiting: int, adding: int) -> None:
        limit = settings.QUIRE_MAX_WAITING_SOURCES
        super().__init__(
            f"You have {waiting} sources waiting to be processed; adding {adding} would pass the limit of "
            f"{limit}. Send them again once some have started.",
            details={"waiting": waiting, "adding": adding, "limit": limit},
        )
        self.retry_after = settings.QUIRE_QUEUE_FULL_RETRY_AFTER


def _check_queue_room(owner: Any, adding: int, *, lock: bool) -> None:
    """Refuse an upload that would leave the user more than QUIRE_MAX_WAITING_SOURCES sources
    waiting for a worker: bulk clients are limited by the work they have queued, not by their
    request rate. With ``lock`` (inside the upload's transaction) the user's row is locked
    first, so parallel uploads of one user cannot pass the limit together (PostgreSQL; SQLite
    has one writer at a time anyway)."""
    if owner is None or adding == 0:
        return
    if lock:
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    waiting = Job.objects.filter(
        owner=owner, kind="notebooks.process_source", status=Job.Status.QUEUED, attempts=0
    ).count()
    if waiting + adding > settings.QUIRE_MAX_WAITING_SOURCES:
        raise SourcesQueueFull(waiting, adding)


# --- notebooks


@transaction.atomic
def notebook_create(*, owner: Any, title: str, description: str = "") -> Notebook:
    return Notebook.objects.create(owner=owner, title=title, description=description)


@transaction.atomic
def notebook_update(*, notebook: Notebook, data: dict[str, Any]) -> Notebook:
    fields = [f for f in ("title", "description") if f in data]
    for name in fields:
        setattr(notebook, name, data[name])
    if fields:
        notebook.save(update_fields=[*fields, "updated_at"])
    return notebook


def notebook_delete(*, notebook: Notebook) -> None:
    """Stop the notebook's running work, then delete it with its sources, chunks and files."""
    jobs_cancel_active(job_ids=Job.objects.filter(notebook_id=notebook.id).values_list("id", flat=True))
    files = [s.file.name for s in notebook.sources.exclude(file="") if s.file.name]
    with transaction.atomic():
        notebook.delete()
        transaction.on_commit(lambda: _delete_files(files))


# --- adding sources


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


@dataclass
class SourcesAdded:
    batch: Batch
    sources: list[Source]
    jobs: dict[str, Job]
    duplicates: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _CheckedFile:
    upload: UploadedFile[Any]
    kind: Kind
    digest: str


def _check_files(files: Sequence[UploadedFile[Any]]) -> list[_CheckedFile]:
    """Everything knowable before queueing: count, size, emptiness, real type (a recording's
    container probed: a sound track, its length). Any bad file rejects the whole request, so
    nothing is half-added."""
    from notebooks.ingest.filetypes import detect_type
    from notebooks.ingest.media import probe

    if len(files) > settings.QUIRE_MAX_FILES_PER_REQUEST:
        raise SourceRejected(
            f"At most {settings.QUIRE_MAX_FILES_PER_REQUEST} files per request.", code="TOO_MANY_FILES"
        )
    checked, problems = [], []
    for index, upload in enumerate(files):
        name = upload.name or f"file {index + 1}"
        if upload.size is not None and upload.size > settings.QUIRE_MAX_UPLOAD_BYTES:
            raise SourceRejected(
                f"{name} is larger than the limit of {settings.QUIRE_MAX_UPLOAD_BYTES // (1024 * 1024)} MB.",
                code="TOO_LARGE",
                status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                details=[{"file": name, "code": "TOO_LARGE"}],
            )
        data = b"".join(upload.chunks())
        try:
            kind = detect_type(data, name)
            if kind == "audio":
                probe(data, max_seconds=settings.QUIRE_MEDIA_MAX_SECONDS)
        except IngestError as exc:
            problems.append({"file": name, "code": exc.code, "message": exc.message})
            continue
        checked.append(_CheckedFile(upload=upload, kind=kind, digest=hashlib.sha256(data).hexdigest()))
    if problems:
        unsupported = all(p["code"] in ("UNSUPPORTED_TYPE", "TYPE_MISMATCH", "NO_AUDIO") for p in problems)
        too_long = all(p["code"] == "TOO_LONG" for p in problems)
        raise SourceRejected(
            problems[0]["message"] if len(problems) == 1 else f"{len(problems)} files were refused.",
            code=problems[0]["code"] if len(problems) == 1 else "FILES_REFUSED",
            details=problems,
            status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
            if unsupported
            else status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
            if too_long
            else status.HTTP_400_BAD_REQUEST,
        )
    return checked


def _check_language(language: str) -> str:
    """A recording's language as Whisper names it ("en", "de"…); "" lets the model detect it."""
    language = (language or "").strip().lower()
    if not language:
        return ""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    if language not in _LANGUAGE_CODES:
        raise SourceRejected(
            f"Unknown language {language[:20]!r}: give a code such as en, de, fr or es, or leave it out.",
            code="UNKNOWN_LANGUAGE",
        )
    return language


def _check_urls(urls: Sequence[str]) -> None:
    problems = []
    for url in urls:
        try:
            validate_url(url, fetch_policy())
        except FetchError as exc:
            problems.append({"url": url, "code": exc.code, "message": exc.message})
    if problems:
        raise SourceRejected(
            problems[0]["message"] if len(problems) == 1 else f"{len(problems)} URLs were refused.",
            code=problems[0]["code"] if len(problems) == 1 else "URLS_REFUSED",
            details=problems,
        )


def sources_add(
    *,
    notebook: Notebook,
    owner: Any,
    files: Sequence[UploadedFile[Any]] = (),
    urls: Sequence[str] = (),
    text: str | None = None,
    title: str = "",
    priority: str | None = None,
    language: str = "",
) -> SourcesAdded:
    """Check, store and enqueue new sources as one batch; when the batch ends, its last job
    asks for an overview rebuild (``overview_request``, coalesced per notebook).
    ``priority``: the jobs' class; by default bulk when the request adds more sources than
    QUIRE_FAIR_BULK_THRESHOLD (an import nobody watches file by file), else interactive."""
    if priority is None:
        many = len(files) + len(urls) + (text is not None) > settings.QUIRE_FAIR["BULK_THRESHOLD"]
        priority = Job.Priority.BULK if many else Job.Priority.INTERACTIVE
    checked = _check_files(files)
    language = _check_language(language)
    _check_urls(urls)
    if text is not None and not text.strip():
        raise SourceRejected("The text is empty.", code="EMPTY_TEXT")
    # Before storing anything: a full queue is refused cheaply (checked again, locked, below).
    _check_queue_room(owner, len(checked) + len(urls) + (text is not None), lock=False)

    # Files are stored before the transaction opens: storing up to 20 x 50 MB (to S3 perhaps)
    # inside it would hold the database's locks (SQLite's one writer lock, PostgreSQL's
    # idle-in-transaction limit) for as long as the storage takes.
    stored: dict[str, str] = {}
    committed: list[bool] = []
    try:
        for attempt in range(1, STORE_ATTEMPTS + 1):
            _store_files(notebook, checked, stored)
            try:
                with transaction.atomic():
                    # Commit hooks run in order: once this one has run, the rows exist and their
                    # files stay, whatever a later hook (the jobs' push) raises.
                    transaction.on_commit(lambda: committed.append(True))
                    result = _create_sources(
                        notebook,
                        owner,
                        checked,
                        stored,
                        urls,
                        text,
                        title,
                        store_missing=attempt == STORE_ATTEMPTS,
                        priority=priority,
                        language=language,
                    )
                break
            except _NotStoredYet:
                continue  # a file counted as a duplicate is not one any more: store it, then again
    except BaseException:
        if not committed:
            _delete_files(list(stored.values()))
        raise
    # A file stored above whose content another request added meanwhile: reported as a
    # duplicate, so its copy goes.
    used = {source.file.name for source in result.sources if source.file}
    _delete_files([name for name in stored.values() if name not in used])
    return result


STORE_ATTEMPTS = 3


class _NotStoredYet(Exception):
    """Inside the upload's transaction: a file skipped as a duplicate of a source that has
    failed, been cancelled or deleted since."""


def _known_hashes(notebook: Notebook) -> dict[str, Any]:
    """content hash -> id of the notebook's sources that count for duplicates."""
    return dict(
        Source.objects.filter(notebook=notebook)
        .exclude(content_hash="")
        .exclude(status__in=(Source.Status.FAILED, Source.Status.CANCELLED))
        .values_list("content_hash", "id")
    )


def _store_files(notebook: Notebook, checked: list[_CheckedFile], stored: dict[str, str]) -> None:
    """Store each file whose content the notebook does not have yet (once per content);
    ``stored`` maps content hash -> storage name as files land, for the caller to clean up."""
    known = _known_hashes(notebook)
    for item in checked:
        if item.digest not in known and item.digest not in stored:
            _store_file(notebook, item, stored)


def _store_file(notebook: Notebook, item: _CheckedFile, stored: dict[str, str]) -> None:
    item.upload.seek(0)
    try:
        name = default_storage.save(f"sources/{notebook.id}/{uuid.uuid4().hex}.{item.kind}", item.upload)
    except Exception as exc:  # OSError on a disk; botocore's connection and client errors on S3
        logger.warning("Could not store an upload for notebook %s", notebook.id, exc_info=True)
        # No row exists yet (files are stored before the transaction); the caller removes the
        # files this request stored before the failure.
        raise StorageUnavailable(
            "The file storage is unavailable; nothing was added. Try again shortly.",
            details={"reason": type(exc).__name__},
        ) from exc
    stored[item.digest] = name


def _create_sources(
    notebook: Notebook,
    owner: Any,
    checked: list[_CheckedFile],
    stored: dict[str, str],
    urls: Sequence[str],
    text: str | None,
    title: str,
    *,
    store_missing: bool,
    priority: str,
    language: str = "",
) -> SourcesAdded:
    existing = _known_hashes(notebook)  # again, inside the transaction: another upload may have won
    batch = batch_create(owner=owner, notebook_id=notebook.id, label="sources")
    sources: list[Source] = []
    duplicates: list[dict[str, str]] = []

    def duplicate(digest: str, label: str) -> bool:
        if digest in existing:
            duplicates.append({"name": label, "existing_source": str(existing[digest])})
            return True
        return False

    for item in checked:
        name = _clean_filename(item.upload.name or "upload")
        if duplicate(item.digest, name):
            continue
        source = Source(
            notebook=notebook,
            kind=Source.Kind.FILE,
            title=_title_from_filename(name),
            original_filename=name[:TITLE_MAX],
            content_type=item.kind,
            size=item.upload.size or 0,
            content_hash=item.digest,
            language=language if item.kind == "audio" else "",
        )
        if item.digest not in stored:  # counted as a duplicate until that source went away
            if not store_missing:
                raise _NotStoredYet()
            _store_file(notebook, item, stored)  # the last attempt: inside the transaction after all
        source.file.name = stored[item.digest]
        sources.append(source)
        existing[item.digest] = source.id
    for url in urls:
        sources.append(Source(notebook=notebook, kind=Source.Kind.URL, title=url[:TITLE_MAX], url=url))
    if text is not None:
        data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        if not duplicate(digest, title or "pasted text"):
            sources.append(
                Source(
                    notebook=notebook,
                    kind=Source.Kind.TEXT,
                    title=(title or _title_from_text(text))[:TITLE_MAX],
                    content_type="txt",
                    size=len(data),
                    content_hash=digest,
                    text=text,
                )
            )
    _check_queue_room(owner, len(sources), lock=True)
    Source.objects.bulk_create(sources)

    queued: dict[str, Job] = {}
    for source in sources:
        job = jobs.source_process.enqueue(
            {"source_id": str(source.id)},
            owner=owner,
            subject=source,
            notebook_id=notebook.id,
            batch=batch,
            priority=priority,
        )
        queued[str(source.id)] = job
        Source.objects.filter(id=source.id).update(job_id=job.id)
        source.job_id = job.id
    return SourcesAdded(batch=batch, sources=sources, jobs=queued, duplicates=duplicates)


def _clean_filename(name: str) -> str:
    """The client's filename as metadata: no control or format characters (NUL cannot even be
    stored in PostgreSQL), at most TITLE_MAX characters. It is never used as a path."""
    cleaned = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf"))
    return cleaned[:TITLE_MAX] or "upload"


def _title_from_filename(name: str) -> str:
    stem = name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    return "".join(ch for ch in stem if ch.isprintable())[:TITLE_MAX] or "Untitled"


def _title_from_text(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "Pasted text"
    return first[:80]


# --- the ingestion job's work


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


def source_delete(*, source: Source) -> None:
    """Cancel the source's processing if it runs, then delete it with its chunks and file."""
    jobs_cancel_active(job_ids=[source.job_id])
    name = source.file.name if source.file else ""
    with transaction.atomic():
        had_chunks = source.chunks.exists()
        source.delete()
        if had_chunks:
            Notebook.objects.filter(id=source.notebook_id).update(chunks_version=F("chunks_version") + 1)
        transaction.on_commit(lambda: _delete_files([name] if name else []))


def _delete_files(names: Sequence[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # OSError locally, botocore's ClientError on S3: log, go on with the rest
            logger.warning("Could not delete stored file %s", name, exc_info=True)


# --- overview

# The overview reads a sample of the notebook, never all of it: at most OVERVIEW_SOURCES ready
# sources (evenly spread over the notebook's history when it has more) and OVERVIEW_CHUNKS chunks
# among them (evenly spread inside a long source), so a rebuild costs the same at 500 sources and
# at 50,000.
OVERVIEW_SOURCES = 500
OVERVIEW_CHUNKS = 2000


def overview_request(*, notebook_id: str, owner: Any = None, priority: str = "interactive") -> Job | None:
    """Ask for an overview rebuild, coalesced per notebook: at most one waits at any time.

    1. A rebuild is queued and has not started: it will read the notebook as it is then, this
       request included; nothing to do.
    2. Otherwise claim the waiting slot with one conditional UPDATE from the value just read;
       nothing updated: another request got there first and queued the rebuild.
    3. A rebuild that is running (or retrying) read the notebook before this request: the new one
       depends on it, so it runs after it instead of beside it.
    Returns the rebuild queued here, or None."""
    build = jobs.overview_build
    waiting = Notebook.objects.filter(id=notebook_id).values_list("overview_waiting_job_id", flat=True).first()
    if waiting is None:
        return None  # the notebook is gone
    if waiting and Job.objects.filter(id=waiting, status=Job.Status.QUEUED, attempts=0).exists():
        return None
    job_id = str(uuid.uuid4())
    with transaction.atomic():
        claimed = Notebook.objects.filter(id=notebook_id, overview_waiting_job_id=waiting).update(
            overview_waiting_job_id=job_id
        )
        if not claimed:
            return None
        running = Job.objects.filter(
            notebook_id=notebook_id, kind=build.kind, status__in=(Job.Status.RUNNING, Job.Status.RETRYING)
        ).values_list("id", flat=True)
        notebook = Notebook(id=notebook_id)  # the subject: only its id is read
        return build.enqueue(
            {"notebook_id": str(notebook_id)},
            owner=owner,
            subject=notebook,
            notebook_id=notebook_id,
            depends_on=list(running),
            job_id=job_id,
            priority=priority,  # the class of the batch that asked for it
        )


def overview_build(*, notebook_id: str) -> dict[str, Any] | None:
    notebook = Notebook.objects.filter(id=notebook_id).first()
    if notebook is None:
        return None
    context = current()
    if context is not None:
        # Started: no longer waiting. A batch ending from now on queues the next rebuild (after
        # this one), since this one may read the notebook before that batch's sources are ready.
        Notebook.objects.filter(id=notebook.id, overview_waiting_job_id=context.job_id).update(
            overview_waiting_job_id=""
        )
    progress(10, "Reading the notebook")
    chunks, source_count = _overview_sample(notebook)
    progress(40, "Summarising")
    overview = compute_overview(
        [(c.text, np.frombuffer(c.embedding, dtype=np.float32), c.source.title) for c in chunks],
        # A suggestion is shown only when the notebook answers it.
        answers=lambda question: question_answerable(notebook=notebook, question=question),
    )
    overview["source_count"] = source_count
    Notebook.objects.filter(id=notebook.id).update(overview=overview, overview_updated_at=timezone.now())
    publish_event(notebook.id, "overview", overview)
    return {"sources": source_count, "sampled_sources": len({c.source_id for c in chunks}), "chunks": len(chunks)}


def _overview_sample(notebook: Notebook) -> tuple[list[Chunk], int]:
    """The chunks an overview reads (see OVERVIEW_SOURCES), in reading order, and the number of
    ready sources. Deterministic, so a re-run after a crash gives the same overview."""
    ready = list(
        Source.objects.filter(notebook=notebook, status=Source.Status.READY)
        .order_by("created_at", "id")
        .values_list("id", "chunk_count")
    )
    picked = (
        [ready[i * len(ready) // OVERVIEW_SOURCES] for i in range(OVERVIEW_SOURCES)]
        if len(ready) > OVERVIEW_SOURCES
        else ready
    )
    per_source = max(1, OVERVIEW_CHUNKS // max(len(picked), 1))
    whole = [source_id for source_id, count in picked if count <= per_source]
    query = Chunk.objects.filter(notebook_id=notebook.id).select_related("source")
    chunks = list(query.filter(source_id__in=whole)) if whole else []
    for source_id, count in picked:
        if count > per_source:  # a long source: evenly spaced chunks, its beginning included
            positions = sorted({i * count // per_source for i in range(per_source)})
            chunks.extend(query.filter(source_id=source_id, position__in=positions))
    order = {source_id: index for index, (source_id, _count) in enumerate(picked)}
    chunks.sort(key=lambda c: (order[c.source_id], c.position))
    return chunks, len(ready)
