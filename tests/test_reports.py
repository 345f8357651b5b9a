"""Reports end to end: cited reports from real sources, downloads, the LLM path, cancel, cleanup."""

import re
from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from backend.models import Job
from notebooks.models import Chunk, Notebook, Source
from reports import services
from reports.models import Report
from tests import documents as docs
from tests.fake_llm import FakeChat, serve_fake_chat
from tests.helpers import all_done, new_notebook, upload, wait_for


@pytest.fixture
def http(live_server_url: str, make_user: Any) -> httpx.Client:
    token = Token.objects.create(user=make_user())
    return httpx.Client(base_url=live_server_url, headers={"Authorization": f"Token {token.key}"}, timeout=60)


def notebook_with_sources(http: httpx.Client) -> tuple[str, dict[str, Source]]:
    nb = new_notebook(http, "Three subjects")
    body = upload(
        http,
        nb,
        [
            ("volcanoes.pdf", docs.volcano_pdf()),
            ("plants.docx", docs.photosynthesis_docx()),
            ("roads.md", docs.roman_roads_markdown()),
        ],
    )
    sources = all_done([s["id"] for s in body.json()["sources"]])
    assert {s.status for s in sources} == {"ready"}
    return nb, {str(s.id): s for s in sources}


def finished_report(report_id: str, timeout: float = 60) -> Report:
    return wait_for(
        lambda: Report.objects.filter(id=report_id, status__in=["completed", "failed", "cancelled"]).first(),
        timeout=timeout,
        message="report",
    )


class Tags(HTMLParser):
    """Checks that every opened tag is closed in order (void elements aside)."""

    VOID = {"meta", "link", "br", "hr", "img", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.anchors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs).get("href") or "")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_a_report_cites_only_its_notebooks_passages(workers: Any, http: httpx.Client) -> None:
    nb, sources = notebook_with_sources(http)
    response = http.post(f"/api/v1/notebooks/{nb}/reports/", json={"length": "medium"})
    assert response.status_code == 202, response.text
    report_id = response.json()["id"]
    assert response.json()["job"]["queue"] == "reports"
    report = finished_report(report_id)
    assert report.status == "completed", report.error

    detail = http.get(f"/api/v1/reports/{report_id}/").json()
    assert detail["generator"] == "extractive" and detail["progress"] == 100
    assert len(detail["sections"]) >= 2
    citations = {c["number"]: c for c in detail["citations"]}
    assert citations
    body = detail["markdown"].split("## References")[0]
    used = {int(n) for group in re.findall(r"\[(\d+(?:,\s*\d+)*)\]", body) for n in group.split(",")}
    assert used == set(citations)
    for citation in citations.values():
        # Every citation resolves to a real chunk of this notebook, and its quote is in it.
        assert citation["source_id"] in sources
        chunk = Chunk.objects.get(id=int(citation["chunk_id"]))
        assert str(chunk.source_id) == citation["source_id"] and str(chunk.notebook_id) == nb
        assert citation["quote"] in chunk.text
        assert citation["quote"] in sources[citation["source_id"]].text  # findable in the source
        assert citation["page"] == chunk.page
    assert any(c["page"] == 2 for c in citations.values()) or any(c["page"] == 1 for c in citations.values())

    html = http.get(f"/api/v1/reports/{report_id}/download/?format=html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    page = html.text
    assert page.lstrip().lower().startswith("<!doctype html>")
    parser = Tags()
    parser.feed(page)
    assert parser.errors == [] and parser.stack == []
    assert {f"#ref-{n}" for n in citations} <= set(parser.anchors)
    for citation in citations.values():
        assert citation["source_title"] in page
    md = http.get(f"/api/v1/reports/{report_id}/download/?format=md")
    assert md.status_code == 200 and md.text == detail["markdown"]
    assert http.get(f"/api/v1/reports/{report_id}/download/?format=pdf").status_code == 400


def test_a_topic_report_draws_on_the_matching_source(workers: Any, http: httpx.Client) -> None:
    nb, sources = notebook_with_sources(http)
    report_id = http.post(
        f"/api/v1/notebooks/{nb}/reports/", json={"topic": "Roman road building", "length": "short"}
    ).json()["id"]
    report = finished_report(report_id)
    assert report.status == "completed", report.error
    roads = next(s for s in sources.values() if s.content_type == "md")
    cited = [c["source_id"] for c in report.citations]
    assert cited.count(str(roads.id)) > len(cited) / 2


@pytest.fixture
def llm_worker(workers: Any) -> Iterator[FakeChat]:
    """The reports worker, restarted with an OpenAI-compatible endpoint on loopback configured."""
    with serve_fake_chat() as fake:
        workers.stop("reports")
        env = {"LLM_BASE_URL": fake.url, "LLM_MODEL": "fake-model", "LLM_TIMEOUT": "3"}
        workers.start("reports", extra_env=env)
        yield fake
        workers.stop("reports")  # the next test gets a plain one back


def test_the_llm_path_writes_a_cited_report_and_maps_its_errors(llm_worker: FakeChat, http: httpx.Client) -> None:
    nb, sources = notebook_with_sources(http)
    report = finished_report(http.post(f"/api/v1/notebooks/{nb}/reports/", json={"length": "short"}).json()["id"])
    assert report.status == "completed", report.error
    assert report.generator == "llm" and report.citations
    assert all(c["source_id"] in sources for c in report.citations)

    llm_worker.mode = "400"
    report = finished_report(http.post(f"/api/v1/notebooks/{nb}/reports/", json={}).json()["id"])
    assert (report.status, report.error_code) == ("failed", "LLM_REJECTED")
    assert Job.objects.get(id=report.job_id).attempts == 1  # a rejected request is not retried
    assert "127.0.0.1" not in report.error

    llm_worker.mode = "500"
    report = finished_report(http.post(f"/api/v1/notebooks/{nb}/reports/", json={}).json()["id"], timeout=120)
    assert (report.status, report.error_code) == ("failed", "LLM_UNAVAILABLE")
    assert Job.objects.get(id=report.job_id).attempts == 4  # retried: Retry(max=3)

    llm_worker.mode = "slow"
    report_id = http.post(f"/api/v1/notebooks/{nb}/reports/", json={"length": "short"}).json()["id"]
    job_id = Report.objects.get(id=report_id).job_id
    wait_for(lambda: Job.objects.filter(id=job_id, status="retrying", error_code="LLM_TIMEOUT").exists(), timeout=30,
             message="timeout to be retried")  # fmt: skip
    # Cancelling the running (retrying) report ends it cancelled.
    assert http.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 200
    report = finished_report(report_id)
    assert report.status == "cancelled"


def test_deleting_a_running_report_cancels_it_first(llm_worker: FakeChat, http: httpx.Client) -> None:
    nb, _sources = notebook_with_sources(http)
    llm_worker.mode = "slow"
    report_id = http.post(f"/api/v1/notebooks/{nb}/reports/", json={}).json()["id"]
    job_id = Report.objects.get(id=report_id).job_id
    wait_for(lambda: Job.objects.filter(id=job_id, status="running").exists(), message="running")
    assert http.delete(f"/api/v1/reports/{report_id}/").status_code == 204
    assert Job.objects.get(id=job_id).status == "cancelled"
    assert not Report.objects.filter(id=report_id).exists()


def test_reports_need_ready_sources_and_stay_private(http: httpx.Client, make_user: Any) -> None:
    nb = new_notebook(http)
    response = http.post(f"/api/v1/notebooks/{nb}/reports/", json={})
    assert response.status_code == 409 and response.json()["error"]["code"] == "NO_READY_SOURCES"
    notebook = Notebook.objects.get(id=nb)
    report = Report.objects.create(notebook=notebook, owner=notebook.owner, status="completed", markdown="# x")
    other = Token.objects.create(user=make_user()).key
    client = httpx.Client(base_url=str(http.base_url), headers={"Authorization": f"Token {other}"})
    for path in (f"/api/v1/reports/{report.id}/", f"/api/v1/reports/{report.id}/download/?format=md"):
        assert client.get(path).status_code == 404
    assert client.delete(f"/api/v1/reports/{report.id}/").status_code == 404
    assert client.get(f"/api/v1/notebooks/{nb}/reports/").status_code == 404
    assert Report.objects.filter(id=report.id).exists()


@pytest.mark.django_db
def test_cleanup_removes_exactly_what_the_retention_says(make_user: Any, settings: Any) -> None:
    settings.QUIRE_REPORT_RETENTION_DAYS = 7
    settings.QUIRE_REPORT_COMPLETED_RETENTION_DAYS = None
    user = make_user()
    notebook = Notebook.objects.create(owner=user, title="n")
    now = timezone.now()

    def make(status: str, age_days: float) -> Report:
        report = Report.objects.create(notebook=notebook, owner=user, status=status)
        when = now - timedelta(days=age_days)
        Report.objects.filter(id=report.id).update(updated_at=when, completed_at=when)
        return report

    make("failed", 8)
    make("cancelled", 30)
    recent = make("failed", 2)
    done = make("completed", 400)
    assert services.reports_cleanup() == {"reports": 2}
    assert set(Report.objects.values_list("id", flat=True)) == {recent.id, done.id}
    settings.QUIRE_REPORT_COMPLETED_RETENTION_DAYS = 365
    assert services.reports_cleanup() == {"reports": 1}
    assert set(Report.objects.values_list("id", flat=True)) == {recent.id}
