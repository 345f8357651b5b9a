"""Notebook sources end to end: upload over HTTP, real workers, real embeddings, search, overview."""

import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from backend.models import Job
from notebooks.ingest.chunking import chunk_text
from notebooks.ingest.extract import extract
from notebooks.models import Chunk, Notebook, Source
from tests import documents as docs
from tests.helpers import all_done, new_notebook, read_events, upload, wait_for


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice-" + uuid.uuid4().hex[:6])


@pytest.fixture
def http(live_server_url: str, alice: Any) -> httpx.Client:
    token = Token.objects.create(user=alice)
    return httpx.Client(base_url=live_server_url, headers={"Authorization": f"Token {token.key}"}, timeout=30)


def test_a_sources_job_reports_each_step_live_as_it_starts(workers: Any, http: httpx.Client, alice: Any) -> None:
    """The steps a user sees on the events stream, from a forking worker's work-horse: one
    report per step, the embedding announced with its chunk count, then indexing, then done."""
    nb = new_notebook(http)
    with http.stream("GET", f"/api/v1/notebooks/{nb}/events/") as stream:
        assert stream.status_code == 200
        source_id = upload(http, nb, [("volcanoes.pdf", docs.volcano_pdf())]).json()["sources"][0]["id"]
        received = [job for _, job in read_events(stream, {"succeeded", "failed"})]

    source = Source.objects.get(id=source_id)
    assert source.status == Source.Status.READY and source.chunk_count > 0
    events = [job for job in received if job["id"] == str(source.job_id)]  # not the overview's
    assert events[0]["status"] == "queued"
    assert [job["message"] for job in events if job["status"] == "running"] == [
        "Running",
        "Reading file",
        "Extracting text",
        f"Embedding chunk 0/{source.chunk_count}",
        "Indexing",
    ]
    assert events[-1]["status"] == "succeeded" and events[-1]["progress"] == 100
    progress = [job["progress"] for job in events]
    assert progress == sorted(progress)


def test_uploaded_files_become_searchable_chunks_and_an_overview(workers: Any, http: httpx.Client) -> None:
    nb = new_notebook(http)
    files = [
        ("volcanoes.pdf", docs.volcano_pdf()),
        ("photosynthesis.docx", docs.photosynthesis_docx()),
        ("roman-roads.md", docs.roman_roads_markdown()),
        ("jazz.html", docs.jazz_html()),
    ]
    started = time.monotonic()
    response = upload(http, nb, files)
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.text
    body = response.json()
    assert elapsed < 5
    assert len(body["sources"]) == 4
    assert all(s["job"]["id"] and s["status"] == "pending" for s in body["sources"])
    assert body["batch"]["totals"]["total"] == 4

    sources = all_done([s["id"] for s in body["sources"]])
    assert {s.status for s in sources} == {"ready"}, [(s.title, s.error) for s in sources]
    by_type = {s.content_type: s for s in sources}
    assert set(by_type) == {"pdf", "docx", "md", "html"}
    assert by_type["pdf"].page_count == 2
    assert by_type["html"].title == "A short history of jazz"
    for (_name, data), kind in zip(files, ["pdf", "docx", "md", "html"], strict=True):
        expected = chunk_text(extract(data, kind).text, extract(data, kind).pages)  # type: ignore[arg-type]
        source = by_type[kind]
        assert source.chunk_count == len(expected) == Chunk.objects.filter(source=source).count()
    assert "Mauna Loa" in http.get(f"/api/v1/notebooks/{nb}/sources/{by_type['pdf'].id}/content/").json()["text"]

    # Search: a sentence from one document finds that document first (real MiniLM embeddings).
    hits = http.get(f"/api/v1/notebooks/{nb}/search/", params={"q": "Which enzyme fixes carbon dioxide?"}).json()
    assert hits["method"] == "hybrid"  # the default since hybrid search (#22)
    assert hits["results"][0]["source_id"] == str(by_type["docx"].id)
    hits = http.get(f"/api/v1/notebooks/{nb}/search/", params={"q": "hot gas and rock racing down a mountain"}).json()
    top = hits["results"][0]
    assert top["source_id"] == str(by_type["pdf"].id)
    assert top["page"] == 2  # pyroclastic flows are on the second page
    assert top["score"] > hits["results"][-1]["score"]

    # The overview follows the batch: its last job to end asks for one.
    overview = wait_for(
        lambda: (r := http.get(f"/api/v1/notebooks/{nb}/overview/").json())["status"] == "ready" and r,
        timeout=60,
        message="overview",
    )
    assert overview["summary"]
    assert len(overview["key_topics"]) >= 4
    assert overview["suggested_questions"]
    batch = http.get(f"/api/v1/batches/{body['batch']['id']}/").json()
    assert batch["status"] == "succeeded" and batch["succeeded"] == 4 and batch["progress"] == 100


def test_running_the_job_twice_leaves_the_same_chunks(workers: Any, http: httpx.Client) -> None:
    from notebooks.jobs import source_process

    nb = new_notebook(http)
    body = upload(http, nb, [("roads.md", docs.roman_roads_markdown())]).json()
    (source,) = all_done([body["sources"][0]["id"]])
    before = list(Chunk.objects.filter(source=source).values_list("position", "text", "page"))
    again = source_process.enqueue({"source_id": str(source.id)}, subject=source, notebook_id=source.notebook_id)
    Source.objects.filter(id=source.id).update(job_id=again.id)
    wait_for(lambda: Job.objects.filter(id=again.id, status="succeeded").exists(), message="second run")
    after = list(Chunk.objects.filter(source=source).values_list("position", "text", "page"))
    assert after == before
    assert Source.objects.get(id=source.id).chunk_count == len(before)


def test_a_job_queued_under_its_old_dotted_path_still_runs(workers: Any, http: httpx.Client) -> None:
    """Job rows and RQ payloads queued before the jobs took their services' names hold the old
    dotted path (notebooks.jobs.process_source, until 2026-12): after the upgrade they still run."""
    from django.db import transaction

    from backend.runtime import rq as rq_adapter
    from notebooks.jobs import source_process

    nb = new_notebook(http)
    body = upload(http, nb, [("roads.md", docs.roman_roads_markdown())]).json()
    (source,) = all_done([body["sources"][0]["id"]])
    before = list(Chunk.objects.filter(source=source).values_list("position", "text", "page"))
    Chunk.objects.filter(source=source).delete()
    with transaction.atomic():  # the row as an older release wrote it, before anything is pushed
        old = source_process.enqueue({"source_id": str(source.id)}, subject=source, notebook_id=source.notebook_id)
        Job.objects.filter(id=old.id).update(func="notebooks.jobs.process_source")
        Source.objects.filter(id=source.id).update(job_id=old.id)
    wait_for(lambda: Job.objects.filter(id=old.id, status="succeeded").exists(), message="the old path's run")
    assert Job.objects.get(id=old.id).func == "notebooks.jobs.process_source"
    assert rq_adapter.fetch(old.id).func_name == "notebooks.jobs.process_source"  # what RQ imported
    assert list(Chunk.objects.filter(source=source).values_list("position", "text", "page")) == before
    assert source_process.path == "notebooks.jobs.source_process"  # what new rows get


def test_pasted_text_and_a_web_page_are_ingested(workers: Any, http: httpx.Client) -> None:
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = docs.jazz_html()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        nb = new_notebook(http)
        url = f"http://127.0.0.1:{server.server_address[1]}/jazz"
        from_url = http.post(f"/api/v1/notebooks/{nb}/sources/", json={"urls": [url]})
        assert from_url.status_code == 202, from_url.text
        pasted = http.post(
            f"/api/v1/notebooks/{nb}/sources/", json={"text": "\n".join(docs.VOLCANOES), "title": "Notes"}
        )
        assert pasted.status_code == 202
        ids = [from_url.json()["sources"][0]["id"], pasted.json()["sources"][0]["id"]]
        text, page = sorted(all_done(ids), key=lambda s: s.kind)
        assert (text.kind, text.status, text.title) == ("text", "ready", "Notes")
        assert (page.kind, page.status, page.content_type) == ("url", "ready", "html")
        assert "Miles Davis" in page.text and "Copyright nobody" not in page.text
    finally:
        server.shutdown()


def test_deleting_a_source_or_notebook_removes_chunks_and_files(workers: Any, http: httpx.Client) -> None:
    nb = new_notebook(http)
    body = upload(http, nb, [("v.pdf", docs.volcano_pdf()), ("p.docx", docs.photosynthesis_docx())]).json()
    first, second = all_done([s["id"] for s in body["sources"]])
    stored = [Path(settings.MEDIA_ROOT) / s.file.name for s in (first, second)]
    assert all(p.exists() for p in stored)
    assert http.delete(f"/api/v1/notebooks/{nb}/sources/{first.id}/").status_code == 204
    assert not Chunk.objects.filter(source_id=first.id).exists()
    assert not stored[0].exists() and stored[1].exists()
    hits = http.get(f"/api/v1/notebooks/{nb}/search/", params={"q": "volcano eruption"}).json()["results"]
    assert {h["source_id"] for h in hits} == {str(second.id)}
    assert http.delete(f"/api/v1/notebooks/{nb}/").status_code == 204
    assert not stored[1].exists()
    assert not Chunk.objects.filter(notebook_id=nb).exists()


def test_the_original_file_downloads_under_a_safe_name(workers: Any, http: httpx.Client) -> None:
    nb = new_notebook(http)
    name = '../../etc/\u202eevil"name;.md'
    body = upload(http, nb, [(name, docs.roman_roads_markdown())]).json()
    source = Source.objects.get(id=body["sources"][0]["id"])
    assert ".." not in source.file.name and "evil" not in source.file.name
    assert source.file.name.startswith(f"sources/{nb}/")
    response = http.get(f"/api/v1/notebooks/{nb}/sources/{source.id}/file/")
    assert response.status_code == 200
    assert response.content == docs.roman_roads_markdown()
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "/" not in disposition and "\u202e" not in disposition and '"name' not in disposition


def test_bad_uploads_are_refused_at_once(workers: Any, http: httpx.Client) -> None:
    nb = new_notebook(http)
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    response = upload(http, nb, [("paper.pdf", png)])
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "TYPE_MISMATCH"
    response = upload(http, nb, [("empty.txt", b"")])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "EMPTY_FILE"
    response = upload(http, nb, [("image.png", png)])
    assert response.status_code == 415
    # One bad file refuses the whole request: nothing is half-added.
    response = upload(http, nb, [("ok.md", docs.roman_roads_markdown()), ("bad.pdf", png)])
    assert response.status_code == 415
    assert [d["file"] for d in response.json()["error"]["details"]] == ["bad.pdf"]
    response = http.post(f"/api/v1/notebooks/{nb}/sources/", json={"urls": ["ftp://example.com/x", "http://10.0.0.1/"]})
    assert response.status_code == 400
    assert {d["code"] for d in response.json()["error"]["details"]} == {"FETCH_BLOCKED"}
    response = http.post(f"/api/v1/notebooks/{nb}/sources/", json={"text": "   "})
    assert response.status_code == 400
    assert Source.objects.filter(notebook_id=nb).count() == 0
    assert not (Path(settings.MEDIA_ROOT) / "sources" / nb).exists() or not any(
        (Path(settings.MEDIA_ROOT) / "sources" / nb).iterdir()
    )


def test_an_oversized_body_is_refused_before_it_is_read(live_server_url: str, http: httpx.Client, alice: Any) -> None:
    import socket
    from urllib.parse import urlsplit

    nb = new_notebook(http)
    token = Token.objects.get(user=alice).key
    host, port = urlsplit(live_server_url).hostname, urlsplit(live_server_url).port
    declared = settings.QUIRE_MAX_REQUEST_BYTES + 50 * 1024 * 1024
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/v1/notebooks/{nb}/sources/ HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Token {token}\r\nContent-Type: multipart/form-data; boundary=zzz\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode()
        )
        sock.sendall(b"x" * 1024 * 1024)  # 1 MB of the declared 250 MB, then wait for the answer
        answer = ""
        while "TOO_LARGE" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data.decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413")
    assert '"code": "TOO_LARGE"' in answer or '"code":"TOO_LARGE"' in answer


def test_bad_files_fail_with_a_readable_reason(workers: Any, http: httpx.Client) -> None:
    nb = new_notebook(http)
    encrypted = docs.encrypt_pdf(docs.volcano_pdf(), user_password="secret", owner_password="owner")
    body = upload(
        http,
        nb,
        [
            ("locked.pdf", encrypted),
            ("bomb.docx", docs.make_docx_bomb(inflated_mb=300)),
            ("broken.pdf", docs.volcano_pdf()[:400]),
        ],
    ).json()
    sources = {s.original_filename: s for s in all_done([s["id"] for s in body["sources"]])}
    assert (sources["locked.pdf"].status, sources["locked.pdf"].error_code) == ("failed", "ENCRYPTED_PDF")
    assert (sources["bomb.docx"].status, sources["bomb.docx"].error_code) == ("failed", "TOO_LARGE")
    assert (sources["broken.pdf"].status, sources["broken.pdf"].error_code) == ("failed", "EXTRACTION_FAILED")
    for source in sources.values():
        assert source.error and "/" not in source.error and "Traceback" not in source.error
        job = Job.objects.get(id=source.job_id)
        assert job.status == "failed" and job.attempts == 1  # bad input is not retried


def test_a_duplicate_is_reported_instead_of_indexed_twice(workers: Any, http: httpx.Client) -> None:
    nb = new_notebook(http)
    first = upload(http, nb, [("roads.md", docs.roman_roads_markdown())]).json()
    second = upload(http, nb, [("copy.md", docs.roman_roads_markdown()), ("jazz.html", docs.jazz_html())]).json()
    assert [d["name"] for d in second["duplicates"]] == ["copy.md"]
    assert second["duplicates"][0]["existing_source"] == first["sources"][0]["id"]
    assert [s["original_filename"] for s in second["sources"]] == ["jazz.html"]


def test_cancelling_a_source_job_cancels_the_source(workers: Any, http: httpx.Client) -> None:
    nb = new_notebook(http)
    body = upload(http, nb, [("long.pdf", docs.long_pdf(60))]).json()
    source_id, job_id = body["sources"][0]["id"], body["sources"][0]["job"]["id"]
    wait_for(
        lambda: Job.objects.filter(id=job_id, message__startswith="Embedding").exists(), timeout=60, message="embed"
    )
    response = http.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 200
    source = wait_for(
        lambda: Source.objects.filter(id=source_id, status="cancelled").first(), timeout=10, message="cancelled"
    )
    assert source.error_code == "CANCELLED"
    time.sleep(1)
    assert not Chunk.objects.filter(source_id=source_id).exists()


def test_another_users_sources_are_404(workers: Any, http: httpx.Client, make_user: Any) -> None:
    nb = new_notebook(http)
    body = upload(http, nb, [("roads.md", docs.roman_roads_markdown())]).json()
    sid = body["sources"][0]["id"]
    all_done([sid])
    mallory = Token.objects.create(user=make_user()).key
    other = httpx.Client(base_url=str(http.base_url), headers={"Authorization": f"Token {mallory}"})
    for method, path in [
        ("GET", f"/api/v1/notebooks/{nb}/"),
        ("PATCH", f"/api/v1/notebooks/{nb}/"),
        ("GET", f"/api/v1/notebooks/{nb}/sources/"),
        ("POST", f"/api/v1/notebooks/{nb}/sources/"),
        ("GET", f"/api/v1/notebooks/{nb}/sources/{sid}/"),
        ("GET", f"/api/v1/notebooks/{nb}/sources/{sid}/content/"),
        ("GET", f"/api/v1/notebooks/{nb}/sources/{sid}/file/"),
        ("DELETE", f"/api/v1/notebooks/{nb}/sources/{sid}/"),
        ("GET", f"/api/v1/notebooks/{nb}/search/?q=roads"),
        ("GET", f"/api/v1/notebooks/{nb}/overview/"),
        ("DELETE", f"/api/v1/notebooks/{nb}/"),
    ]:
        assert other.request(method, path, json={} if method in ("POST", "PATCH") else None).status_code == 404, path
    assert other.get("/api/v1/notebooks/").json()["count"] == 0
    assert Source.objects.filter(id=sid).exists() and Notebook.objects.filter(id=nb).exists()


def test_add_sources_command_shows_progress_until_done(workers: Any, alice: Any, tmp_path: Path) -> None:
    import io

    from django.core.management import call_command

    paper = tmp_path / "roads.md"
    paper.write_bytes(docs.roman_roads_markdown())
    jazz = tmp_path / "jazz.html"
    jazz.write_bytes(docs.jazz_html())
    out = io.StringIO()
    call_command("add_sources", "--notebook", "CLI notebook", "--user", alice.username, "--create",
                 str(paper), str(jazz), stdout=out)  # fmt: skip
    text = out.getvalue()
    notebook = Notebook.objects.get(title="CLI notebook", owner=alice)
    assert set(notebook.sources.values_list("status", flat=True)) == {"ready"}
    assert "2 source(s) queued" in text
    assert "100% ready" in text and "[" in text
