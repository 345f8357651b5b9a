"""Hostile uploads: each is refused at the door (4xx with a code) or fails as a job with a
readable reason; nothing is written outside the storage root; the worker's memory stays bounded."""

import io
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.models import Job
from notebooks.models import Notebook, Source
from tests import documents as docs
from tests.helpers import wait_for

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
GIF = b"GIF89a" + b"\x00" * 64
HTML = b"<!doctype html><html><body><p>Looks like a page.</p></body></html>"
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 64
EXE = b"MZ\x90\x00" + b"\x00" * 64


def zip_with(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def nested_pdf(depth: int) -> bytes:
    body = b"[" * depth + b"]" * depth
    return b"%PDF-1.4\n1 0 obj\n" + body + b"\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


REFUSED = [
    ("empty.txt", b"", 400, "EMPTY_FILE"),
    ("picture.pdf", PNG, 415, "TYPE_MISMATCH"),
    ("picture.docx", PNG, 415, "TYPE_MISMATCH"),
    ("photo.png", PNG, 415, "UNSUPPORTED_TYPE"),
    ("anim.gif", GIF, 415, "UNSUPPORTED_TYPE"),
    ("page.png", HTML, 415, "UNSUPPORTED_TYPE"),
    ("page.jpg", HTML, 415, "UNSUPPORTED_TYPE"),
    ("notes.txt", ELF, 415, None),
    ("readme.md", EXE, 415, None),
    ("program.exe", EXE, 415, "UNSUPPORTED_TYPE"),
    ("archive.docx", zip_with({"hello.txt": b"hi"}), 415, None),
    ("paper.txt", docs.volcano_pdf(), 415, "TYPE_MISMATCH"),
    ("drawing.svg", b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", 415, "UNSUPPORTED_TYPE"),
    ("nul.txt", b"text\x00with\x00nul\x00bytes" * 10, 415, None),
    ("binary", os.urandom(256), 415, None),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "data", "status", "code"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_hostile_upload_is_refused_at_once(
    make_user: Any, api_client_for: Any, redis_clean: Any, name: str, data: bytes, status: int, code: str | None
) -> None:
    user = make_user()
    notebook = Notebook.objects.create(owner=user, title="hostile")
    response = api_client_for(user).post(
        f"/api/v1/notebooks/{notebook.id}/sources/", {"files": [SimpleUploadedFile(name, data)]}
    )
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["message"] and "/" not in error["message"].replace(" / ", "")
    if code:
        assert error["code"] == code
    assert not Source.objects.filter(notebook=notebook).exists()


@pytest.mark.django_db
def test_an_oversized_file_and_too_many_files_are_refused(
    make_user: Any, api_client_for: Any, redis_clean: Any, settings: Any
) -> None:
    settings.QUIRE_MAX_UPLOAD_BYTES = 1000
    user = make_user()
    notebook = Notebook.objects.create(owner=user, title="big")
    client = api_client_for(user)
    response = client.post(
        f"/api/v1/notebooks/{notebook.id}/sources/", {"files": [SimpleUploadedFile("a.txt", b"x" * 1001)]}
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "TOO_LARGE"
    files = [
        SimpleUploadedFile(f"f{i}.txt", f"file {i}".encode()) for i in range(settings.QUIRE_MAX_FILES_PER_REQUEST + 1)
    ]
    response = client.post(f"/api/v1/notebooks/{notebook.id}/sources/", {"files": files})
    assert response.status_code == 400 and response.json()["error"]["code"] == "TOO_MANY_FILES"


HOSTILE_NAMES = [
    "../../../../etc/passwd.md",
    "/etc/shadow.md",
    "C:\\Windows\\System32\\evil.md",
    "a" * 300 + ".md",
    "\u202etxt.exe.md",
    "semi;colon\"quote'.md",
    "..md",
    "nul\x00byte.md",
]


@pytest.mark.django_db
@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_a_hostile_filename_is_never_used_as_a_path(
    make_user: Any, api_client_for: Any, redis_clean: Any, name: str
) -> None:
    user = make_user()
    notebook = Notebook.objects.create(owner=user, title="names")
    client = api_client_for(user)
    before = set(Path(settings.MEDIA_ROOT).rglob("*")) if Path(settings.MEDIA_ROOT).exists() else set()
    response = client.post(
        f"/api/v1/notebooks/{notebook.id}/sources/", {"files": [SimpleUploadedFile(name, docs.roman_roads_markdown())]}
    )
    assert response.status_code in (202, 400), response.content
    after = set(Path(settings.MEDIA_ROOT).rglob("*"))
    new_files = [p for p in after - before if p.is_file()]
    root = Path(settings.MEDIA_ROOT).resolve()
    for path in new_files:
        assert path.resolve().is_relative_to(root / "sources" / str(notebook.id))
        assert len(path.stem) == 32 and path.suffix == ".md"  # a generated name, never the client's
    if response.status_code == 202:
        source = Source.objects.get(notebook=notebook)
        assert len(new_files) == 1
        download = client.get(f"/api/v1/notebooks/{notebook.id}/sources/{source.id}/file/")
        disposition = download["Content-Disposition"]
        assert "/" not in disposition and "\\" not in disposition and "\u202e" not in disposition
        assert "\x00" not in disposition and len(disposition) < 400


FAILING = [
    (
        "locked.pdf",
        lambda: docs.encrypt_pdf(docs.volcano_pdf(), user_password="pw", owner_password="o"),
        "ENCRYPTED_PDF",
    ),
    ("bomb.docx", lambda: docs.make_docx_bomb(inflated_mb=300), "TOO_LARGE"),
    ("truncated.pdf", lambda: docs.volcano_pdf()[:300], "EXTRACTION_FAILED"),
    ("nested.pdf", lambda: nested_pdf(50_000), "EXTRACTION_FAILED"),
    ("ten-thousand-pages.pdf", lambda: docs.make_pdf([["p"]] * 10_000), "TOO_LARGE"),
    ("blank.pdf", lambda: docs.make_pdf([[]] * 3), "NO_TEXT"),
    (
        "scripts.html",
        lambda: b"<html><head><script>var a=1;</script></head><body><script>x()</script></body></html>",
        "NO_TEXT",
    ),
    (
        "hollow.docx",
        lambda: zip_with({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<not-xml"}),
        "EXTRACTION_FAILED",
    ),
]


def test_hostile_files_fail_as_jobs_with_a_reason_and_bounded_memory(
    workers: Any, make_user: Any, api_client_for: Any
) -> None:
    user = make_user()
    notebook = Notebook.objects.create(owner=user, title="hostile files")
    client = api_client_for(user)
    files = [SimpleUploadedFile(name, make()) for name, make, _code in FAILING]
    response = client.post(f"/api/v1/notebooks/{notebook.id}/sources/", {"files": files})
    if response.status_code != 202:
        # Some of these can already be recognised at the door; that is a refusal with a reason too.
        pytest.fail(f"refused up front: {response.json()}")
    worker = psutil.Process(workers.procs["notebook_processing"].pid)
    peak, started = 0, time.monotonic()

    def done() -> bool:
        nonlocal peak
        tree = [worker, *worker.children(recursive=True)]
        peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        return not Source.objects.filter(notebook=notebook, status__in=["pending", "processing"]).exists()

    wait_for(done, timeout=180, interval=0.2, message="every hostile file to end")
    outcomes = {
        s.original_filename: (s.status, s.error_code, s.error) for s in Source.objects.filter(notebook=notebook)
    }
    print(f"\n[figures] {len(FAILING)} hostile files ended in {time.monotonic() - started:.0f}s; "
          f"worker peak RSS {peak / 2**20:.0f} MB")  # fmt: skip
    for name, _make, code in FAILING:
        status, error_code, error = outcomes[name]
        assert (status, error_code) == ("failed", code), (name, outcomes[name])
        assert error and "Traceback" not in error and "/tmp" not in error
    assert peak < 1500 * 2**20
    assert all(j.attempts == 1 for j in Job.objects.filter(notebook_id=notebook.id, kind="notebooks.process_source"))


def _stored_files(notebook: Notebook) -> list[Path]:
    folder = Path(settings.MEDIA_ROOT) / "sources" / str(notebook.id)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.django_db
def test_a_file_another_upload_added_while_it_was_stored_is_a_duplicate_and_leaves_no_copy(
    make_user: Any, api_client_for: Any, redis_clean: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are stored before the upload's transaction opens; a concurrent upload of the same
    content that commits in between wins, and the late copy is reported and removed."""
    from notebooks import services

    user = make_user()
    notebook = Notebook.objects.create(owner=user, title="race")
    data = docs.roman_roads_markdown()
    store = services._store_files

    def store_then_lose_the_race(nb: Notebook, checked: Any, stored: dict[str, str]) -> None:
        store(nb, checked, stored)
        assert len(stored) == 1  # this request's copy is on disk now
        Source.objects.create(
            notebook=nb, kind=Source.Kind.TEXT, title="first", content_type="md", content_hash=checked[0].digest
        )

    monkeypatch.setattr(services, "_store_files", store_then_lose_the_race)
    response = api_client_for(user).post(
        f"/api/v1/notebooks/{notebook.id}/sources/", {"files": [SimpleUploadedFile("roads.md", data)]}
    )
    assert response.status_code == 202, response.content
    body = response.json()
    first = Source.objects.get(notebook=notebook, title="first")
    assert body["sources"] == [] and body["duplicates"] == [{"name": "roads.md", "existing_source": str(first.id)}]
    assert _stored_files(notebook) == []
    assert Source.objects.filter(notebook=notebook).count() == 1
    assert not Job.objects.filter(notebook_id=notebook.id).exists()


@pytest.mark.django_db
def test_an_upload_whose_transaction_fails_leaves_no_stored_file(
    make_user: Any, redis_clean: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notebooks import services

    user = make_user()
    notebook = Notebook.objects.create(owner=user, title="rollback")

    def refuse(*args: Any, **kwargs: Any) -> None:
        assert len(_stored_files(notebook)) == 2  # stored before the transaction
        raise RuntimeError("database refused the insert")

    monkeypatch.setattr(Source.objects, "bulk_create", refuse)
    files = [
        SimpleUploadedFile("roads.md", docs.roman_roads_markdown()),
        SimpleUploadedFile("jazz.html", docs.jazz_html()),
    ]
    with pytest.raises(RuntimeError, match="refused"):
        services.sources_add(notebook=notebook, owner=user, files=files)
    assert _stored_files(notebook) == []
    assert not Source.objects.filter(notebook=notebook).exists()
    assert not Job.objects.filter(notebook_id=notebook.id).exists()


@pytest.mark.django_db(transaction=True)
def test_a_file_whose_earlier_copy_failed_meanwhile_is_stored_outside_the_transaction(
    make_user: Any, redis_clean: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Skipped as a duplicate before the transaction, not one inside it (the other source
    failed in between): the transaction is rolled back, the file stored, and it runs again."""
    from django.db import transaction

    from notebooks import services

    user = make_user()
    notebook = Notebook.objects.create(owner=user, title="flip")
    data = docs.roman_roads_markdown()
    import hashlib

    earlier = Source.objects.create(
        notebook=notebook, kind=Source.Kind.TEXT, title="earlier", content_hash=hashlib.sha256(data).hexdigest()
    )
    store, store_one = services._store_files, services._store_file
    inside: list[bool] = []

    def store_then_fail_the_earlier(nb: Notebook, checked: Any, stored: dict[str, str]) -> None:
        store(nb, checked, stored)
        Source.objects.filter(id=earlier.id).update(status=Source.Status.FAILED)

    def record(nb: Notebook, item: Any, stored: dict[str, str]) -> None:
        inside.append(transaction.get_connection().in_atomic_block)
        store_one(nb, item, stored)

    monkeypatch.setattr(services, "_store_files", store_then_fail_the_earlier)
    monkeypatch.setattr(services, "_store_file", record)
    added = services.sources_add(notebook=notebook, owner=user, files=[SimpleUploadedFile("roads.md", data)])

    assert inside == [False]  # stored once, on the second attempt, outside any transaction
    assert [s.original_filename for s in added.sources] == ["roads.md"] and added.duplicates == []
    source = Source.objects.get(id=added.sources[0].id)
    assert (Path(settings.MEDIA_ROOT) / source.file.name).read_bytes() == data
    assert _stored_files(notebook) == [Path(settings.MEDIA_ROOT) / source.file.name]


@pytest.mark.django_db(transaction=True)
def test_files_of_committed_sources_stay_when_handing_their_jobs_over_fails(
    make_user: Any, redis_clean: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    from backend.runtime import state as job_state
    from notebooks import services

    # The push at commit is plain FIFO's path; with fair scheduling the dispatcher hands jobs
    # over later (and the reconciler heals a failed hand-over: tests/test_fair.py).
    settings.QUIRE_FAIR = {**settings.QUIRE_FAIR, "ENABLED": False}
    user = make_user()
    notebook = Notebook.objects.create(owner=user, title="after commit")

    def broken_push(**kwargs: Any) -> bool:
        raise RuntimeError("push failed after the commit")

    monkeypatch.setattr(job_state, "job_push", broken_push)
    with pytest.raises(RuntimeError, match="after the commit"):
        services.sources_add(
            notebook=notebook, owner=user, files=[SimpleUploadedFile("roads.md", docs.roman_roads_markdown())]
        )
    source = Source.objects.get(notebook=notebook)  # committed
    assert _stored_files(notebook) == [Path(settings.MEDIA_ROOT) / source.file.name]
    assert Job.objects.filter(id=source.job_id, status=Job.Status.QUEUED).exists()  # the reconciler pushes it
