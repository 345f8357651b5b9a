"""Bulk-add files and URLs to a notebook through the same services as the API, with a live
progress bar per source until all are done."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError, CommandParser

from backend.errors import DomainError
from backend.models import Job
from notebooks import services
from notebooks.models import Notebook, Source

BAR = 30


class Command(BaseCommand):
    help = "Add files or URLs to a notebook and show each source's progress until it is done."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--notebook", required=True, help="notebook id or exact title")
        parser.add_argument("--user", help="owner username (required when the title is ambiguous or new)")
        parser.add_argument("--create", action="store_true", help="create the notebook when no title matches")
        parser.add_argument("--no-wait", action="store_true", help="enqueue and return at once")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most")
        parser.add_argument("items", nargs="+", metavar="PATH_OR_URL")

    def handle(self, *args: Any, **options: Any) -> None:
        notebook = self._notebook(options["notebook"], options.get("user"), options["create"])
        urls = [i for i in options["items"] if i.startswith(("http://", "https://"))]
        paths = [Path(i) for i in options["items"] if i not in urls]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CommandError(f"Not a file: {', '.join(missing)}")
        files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in paths]
        try:
            # An import from the command line is bulk work, whatever its size: interactive
            # uploads from the page and the API go first (bulk still gets its share).
            added = services.sources_add(
                notebook=notebook, owner=notebook.owner, files=files, urls=urls, priority=Job.Priority.BULK
            )
        except DomainError as exc:
            details = "".join(f"\n  {d.get('file') or d.get('url')}: {d.get('message')}" for d in exc.details or [])
            raise CommandError(f"{exc.message}{details}") from exc
        for duplicate in added.duplicates:
            self.stdout.write(f"skipped {duplicate['name']}: already in the notebook")
        self.stdout.write(f"notebook {notebook.id}: {len(added.sources)} source(s) queued, batch {added.batch.id}")
        if options["no_wait"] or not added.sources:
            return
        failed = self._follow([s.id for s in added.sources], options["timeout"])
        if failed:
            raise CommandError(f"{failed} source(s) did not become ready")

    def _notebook(self, key: str, username: str | None, create: bool) -> Notebook:
        qs = Notebook.objects.all()
        if username:
            qs = qs.filter(owner__username=username)
        # An id first; anything else (or an unknown id) is looked up by title.
        with contextlib.suppress(Notebook.DoesNotExist, ValueError):
            return qs.get(id=uuid.UUID(key))
        matches = list(qs.filter(title=key)[:2])
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise CommandError(f"Several notebooks are titled {key!r}; pass --user or the id")
        if create and username:
            owner = get_user_model().objects.filter(username=username).first()
            if owner is None:
                raise CommandError(f"No user {username!r}")
            return services.notebook_create(owner=owner, title=key)
        raise CommandError(f"No notebook {key!r} (use --create --user NAME to create it)")

    def _follow(self, source_ids: list[Any], timeout: float) -> int:
        tty = sys.stdout.isatty()
        deadline = time.monotonic() + timeout
        last: dict[Any, str] = {}
        drawn = 0
        while True:
            sources = list(Source.objects.filter(id__in=source_ids).order_by("created_at"))
            jobs = Job.objects.in_bulk([s.job_id for s in sources])
            lines = [self._line(s, jobs.get(s.job_id)) for s in sources]
            if tty:
                if drawn:
                    self.stdout.write(f"\x1b[{drawn}F", ending="")
                for line in lines:
                    self.stdout.write(f"\x1b[2K{line}")
                drawn = len(lines)
            else:
                for source, line in zip(sources, lines, strict=True):
                    if last.get(source.id) != line:
                        self.stdout.write(line)
                        last[source.id] = line
            terminal = {Source.Status.READY, Source.Status.FAILED, Source.Status.CANCELLED}
            if all(s.status in terminal for s in sources):
                return sum(s.status != Source.Status.READY for s in sources)
            if time.monotonic() > deadline:
                self.stderr.write("timed out waiting; the jobs go on in the background")
                return sum(s.status != Source.Status.READY for s in sources)
            time.sleep(0.5)

    def _line(self, source: Source, job: Job | None) -> str:
        percent = 100 if source.status == Source.Status.READY else (job.progress if job else 0)
        filled = BAR * percent // 100
        if source.status == Source.Status.READY:
            detail = f"ready, {source.chunk_count} chunks"
        elif source.status in (Source.Status.FAILED, Source.Status.CANCELLED):
            detail = f"{source.status}: {source.error}"
        elif job is not None and job.status == Job.Status.QUEUED:
            position = job.queue
            detail = f"queued on {position}"
        else:
            detail = job.message if job else source.status
        return f"{source.title[:28]:<28} [{'#' * filled}{'-' * (BAR - filled)}] {percent:3d}% {detail}"
