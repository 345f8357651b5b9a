"""Writes for notebooks and their sources at request time (create, add, delete), and the
notebook overview. The pipeline a source's job runs is ``notebooks.ingestion``."""

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

from backend.errors import DomainError, Overloaded, TooLarge, Unavailable, Unsupported
from backend.models import Batch, Job
from backend.runtime import (
    batch_create,
    current,
    jobs_cancel_active,
    progress,
    publish_event,
)
from notebooks import jobs
from notebooks.ask import question_answerable
from notebooks.fetch import FetchError, validate_url
from notebooks.ingest.errors import IngestError
from notebooks.ingestion import TITLE_MAX, fetch_policy
from notebooks.models import Chunk, Notebook, Source
from notebooks.overview import compute_overview

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

    from notebooks.ingest.filetypes import Kind

logger = logging.getLogger(__name__)


class SourceRejected(DomainError):
    code = "SOURCE_REJECTED"


class StorageUnavailable(Unavailable):
    """The file storage (a disk, or S3 on another host) refused a write: the client may retry."""

    code = "STORAGE_UNAVAILABLE"


class SourcesQueueFull(Overloaded):
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
            raise TooLarge(
                f"{name} is larger than the limit of {settings.QUIRE_MAX_UPLOAD_BYTES // (1024 * 1024)} MB.",
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
        refusal = Unsupported if unsupported else TooLarge if too_long else SourceRejected
        raise refusal(
            problems[0]["message"] if len(problems) == 1 else f"{len(problems)} files were refused.",
            code=problems[0]["code"] if len(problems) == 1 else "FILES_REFUSED",
            details=problems,
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


# --- deleting sources


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
