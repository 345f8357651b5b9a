"""Quire's own pages. Views are thin: they check ownership, call the notebooks services and
selectors, and render. The notebook page's live parts (sources, progress, search, overview,
reports, podcasts) are driven from static/web/app.js through the REST API and the notebook's
server-sent events, so the browser sees exactly what an API client sees."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from notebooks import selectors, services
from notebooks.models import Notebook, Source
from podcast.models import Podcast
from reports.generation.render import render_markdown
from reports.generation.types import Citation
from reports.models import Report
from web.forms import NotebookForm, RenameForm

LOGIN = "web:login"
# Stands in for an object id in URL patterns handed to the page script.
_PLACEHOLDER = uuid.UUID(int=0)


def _notebook(request: HttpRequest, notebook_id: uuid.UUID) -> Notebook:
    """The signed-in user's notebook; anyone else's is a 404, as in the API."""
    try:
        return selectors.notebook_of(user=request.user, notebook_id=notebook_id)
    except Notebook.DoesNotExist:
        raise Http404("No such notebook.") from None


def _pattern(name: str, **kwargs: Any) -> str:
    """A URL with ``{id}`` where the one placeholder argument goes."""
    filled = {key: (_PLACEHOLDER if value is None else value) for key, value in kwargs.items()}
    return reverse(name, kwargs=filled).replace(str(_PLACEHOLDER), "{id}")


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return redirect("web:notebooks" if request.user.is_authenticated else LOGIN)


@login_required(login_url=LOGIN)
@require_http_methods(["GET", "POST"])
def notebook_list(request: HttpRequest) -> HttpResponse:
    form = NotebookForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        notebook = services.notebook_create(owner=request.user, **form.cleaned_data)
        return redirect("web:notebook", notebook_id=notebook.id)
    notebooks = selectors.notebooks_of(user=request.user).annotate(source_total=Count("sources"))
    return render(request, "web/notebook_list.html", {"notebooks": notebooks, "form": form})


@login_required(login_url=LOGIN)
@require_POST
def notebook_rename(request: HttpRequest, notebook_id: uuid.UUID) -> HttpResponse:
    notebook = _notebook(request, notebook_id)
    form = RenameForm(request.POST)
    if form.is_valid():
        services.notebook_update(notebook=notebook, data={"title": form.cleaned_data["title"]})
    else:
        messages.error(request, "A title needs 1 to 200 characters.")
    return redirect("web:notebook", notebook_id=notebook.id)


@login_required(login_url=LOGIN)
@require_POST
def notebook_delete(request: HttpRequest, notebook_id: uuid.UUID) -> HttpResponse:
    notebook = _notebook(request, notebook_id)
    title = notebook.title
    services.notebook_delete(notebook=notebook)
    messages.success(request, f"Deleted the notebook “{title}”.")
    return redirect("web:notebooks")


@login_required(login_url=LOGIN)
@require_GET
def notebook_detail(request: HttpRequest, notebook_id: uuid.UUID) -> HttpResponse:
    notebook = _notebook(request, notebook_id)
    nb = {"notebook_id": notebook.id}
    QUESTION_ID = "00000000-0000-0000-0000-000000000000"
    urls = {
        "events": reverse("notebook-events", kwargs=nb),
        "sources": reverse("source-list", kwargs=nb),
        "source": _pattern("source-detail", **nb, source_id=None),
        "search": reverse("notebook-search", kwargs=nb),
        "questions": reverse("question-list", kwargs=nb),
        "questionNote": reverse("question-note", kwargs={"question_id": QUESTION_ID}).replace(QUESTION_ID, "{id}"),
        "overview": reverse("notebook-overview", kwargs=nb),
        "reports": reverse("report-list", kwargs=nb),
        "report": _pattern("report-detail", report_id=None),
        "reportDownload": _pattern("report-download", report_id=None),
        "podcasts": reverse("podcast-list", kwargs=nb),
        "podcast": _pattern("podcast-detail", podcast_id=None),
        "jobCancel": reverse("job-cancel", kwargs={"job_id": "JOBID"}).replace("JOBID", "{id}"),
        "batchRetry": _pattern("batch-retry-failed", batch_id=None),
        "sourcePage": _pattern("web:source", **nb, source_id=None),
        "sourceFile": _pattern("source-file", **nb, source_id=None),
        "reportPage": _pattern("web:report", **nb, report_id=None),
        "podcastPage": _pattern("web:podcast", **nb, podcast_id=None),
    }
    return render(
        request,
        "web/notebook_detail.html",
        {
            "notebook": notebook,
            "urls": urls,
            "rename_form": RenameForm(initial={"title": notebook.title}),
            "max_minutes": settings.QUIRE_PODCAST_MAX_MINUTES,
        },
    )


@login_required(login_url=LOGIN)
@require_GET
def source_detail(request: HttpRequest, notebook_id: uuid.UUID, source_id: uuid.UUID) -> HttpResponse:
    """A source's extracted text; ``?chunk=<id>`` marks one passage (a search hit, a citation)."""
    notebook = _notebook(request, notebook_id)
    source = get_object_or_404(selectors.sources_of(notebook=notebook), id=source_id)
    chunk = None
    wanted = request.GET.get("chunk", "")
    if wanted.isdigit() and source.status == Source.Status.READY:
        chunk = selectors.notebook_chunks(notebook=notebook, source_ids=[str(source.id)]).filter(id=int(wanted)).first()
    text = source.text if source.status == Source.Status.READY else ""
    if chunk is not None:
        parts = (text[: chunk.char_start], text[chunk.char_start : chunk.char_end], text[chunk.char_end :])
    else:
        parts = (text, "", "")
    return render(
        request,
        "web/source_detail.html",
        {
            "notebook": notebook,
            "source": source,
            "chunk": chunk,
            "before": parts[0],
            "passage": parts[1],
            "after": parts[2],
            "file_url": reverse("source-file", kwargs={"notebook_id": notebook.id, "source_id": source.id})
            if source.file
            else "",
        },
    )


@login_required(login_url=LOGIN)
@require_GET
def report_detail(request: HttpRequest, notebook_id: uuid.UUID, report_id: uuid.UUID) -> HttpResponse:
    notebook = _notebook(request, notebook_id)
    report = get_object_or_404(Report, id=report_id, notebook=notebook, owner=request.user)
    citations = [_citation(c) for c in report.citations]
    body = render_markdown(report.markdown, citations=citations) if report.status == Report.Status.COMPLETED else ""
    passages = {
        str(c.number): {
            "number": c.number,
            "source_title": c.source_title,
            "page": c.page,
            "quote": c.quote,
            "url": (
                reverse("web:source", kwargs={"notebook_id": notebook.id, "source_id": c.source_id})
                + f"?chunk={c.chunk_id}#passage"
            ),
        }
        for c in citations
    }
    download = reverse("report-download", kwargs={"report_id": report.id})
    return render(
        request,
        "web/report_detail.html",
        {
            "notebook": notebook,
            "report": report,
            "body": body,
            "passages": passages,
            "markdown_url": f"{download}?format=md",
            "html_url": f"{download}?format=html",
        },
    )


def _citation(data: dict[str, Any]) -> Citation:
    page = data.get("page")
    return Citation(
        number=int(data["number"]),
        source_id=str(data["source_id"]),
        source_title=str(data.get("source_title", "")),
        chunk_id=str(data.get("chunk_id", "")),
        page=int(page) if page is not None else None,
        quote=str(data.get("quote", "")),
    )


@login_required(login_url=LOGIN)
@require_GET
def podcast_detail(request: HttpRequest, notebook_id: uuid.UUID, podcast_id: uuid.UUID) -> HttpResponse:
    notebook = _notebook(request, notebook_id)
    podcast = get_object_or_404(Podcast, id=podcast_id, notebook=notebook, owner=request.user)
    audio = reverse("podcast-audio", kwargs={"podcast_id": podcast.id})
    speakers = {"A": "Host A", "B": "Host B"}
    turns = [
        {
            "speaker": speakers.get(str(turn.get("speaker")), str(turn.get("speaker", ""))),
            "side": "a" if turn.get("speaker") == "A" else "b",
            "text": turn.get("text", ""),
            "start": turn.get("start"),
            "clock": _clock(turn["start"]) if turn.get("start") is not None else "",
        }
        for turn in podcast.script
    ]
    return render(
        request,
        "web/podcast_detail.html",
        {
            "notebook": notebook,
            "podcast": podcast,
            "turns": turns,
            "completed": podcast.status == Podcast.Status.COMPLETED,
            "mp3_url": f"{audio}?format=mp3",
            "duration": _clock(podcast.duration_seconds) if podcast.duration_seconds else "",
        },
    )


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"
