"""Nobody sees another user's data: every URL that takes an object id, walked as another user."""

import re
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from backend import runtime as job_services
from backend.models import Job
from backend.runtime import get_kind
from notebooks.models import Notebook, Source
from tests import factories

ID_PARAMS = {"notebook_id", "source_id", "report_id", "podcast_id", "job_id", "batch_id", "question_id"}


def walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for p in patterns:
        if isinstance(p, URLResolver):
            found += walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            found.append((prefix + str(p.pattern), p.callback))
    return found


def methods_of(callback: Any) -> list[str]:
    view_class = getattr(callback, "view_class", None)
    if view_class is None:
        return ["GET"]
    return [m.upper() for m in ("get", "post", "patch", "put", "delete") if hasattr(view_class, m)]


@pytest.fixture
def alices_things(make_user: Any, redis_clean: Any) -> dict[str, str]:
    alice = make_user()
    notebook = factories.notebook(alice, title="private")
    name = default_storage.save(f"sources/{notebook.id}/secret.md", ContentFile(b"# secret"))
    source = factories.source(
        notebook, kind="file", title="secret", status="ready", text="# secret", file=name, content_type="md"
    )
    factories.chunk(source, "secret")
    report = factories.report(notebook, status="completed", markdown="# r", html="<p>r</p>")
    audio = default_storage.save(f"podcasts/{notebook.id}/p.mp3", ContentFile(b"ID3" + b"\x00" * 100))
    podcast = factories.podcast(notebook, title="p", status="completed", audio_mp3=audio, audio_wav=audio)
    question = factories.question(notebook, question="secret?", status="completed", answer="secret [1]", answered=True)
    batch = job_services.batch_create(owner=alice, notebook_id=notebook.id)
    kind = get_kind("tests.echo_default")
    assert kind is not None
    job = kind.enqueue({"value": "x"}, owner=alice, notebook_id=notebook.id, batch=batch)
    return {
        "alice": alice.username,
        "notebook_id": str(notebook.id),
        "source_id": str(source.id),
        "report_id": str(report.id),
        "podcast_id": str(podcast.id),
        "job_id": job.id,
        "batch_id": str(batch.id),
        "question_id": str(question.id),
    }


def test_every_object_url_is_404_for_another_user(alices_things: dict[str, str], make_user: Any) -> None:
    from django.contrib.auth import get_user_model

    bob, alice = Client(), Client()
    bob.force_login(make_user())
    alice.force_login(get_user_model().objects.get(username=alices_things["alice"]))
    checked = []
    for route, callback in walk(get_resolver().url_patterns):
        params = set(re.findall(r"<(?:\w+:)?(\w+)>", route))
        if not route.startswith("api/v1/") or not params:
            continue
        assert params <= ID_PARAMS, f"{route} takes an id this test does not know: {params - ID_PARAMS}"
        url = "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: alices_things[m.group(1)], route)
        for method in methods_of(callback):
            response = bob.generic(method, url, data="{}", content_type="application/json")
            assert response.status_code == 404, f"{method} {url} gave {response.status_code} to another user"
            checked.append(f"{method} {route}")
        if "events" not in route and "GET" in methods_of(callback):
            # The same URL works for its owner, so a 404 above is isolation, not a broken route.
            assert alice.get(url).status_code != 404, url
    print(f"\n[figures] {len(checked)} object URLs x methods refused to another user")
    assert len(checked) >= 20
    # Nothing was changed or deleted by those requests.
    assert Notebook.objects.filter(id=alices_things["notebook_id"]).exists()
    assert Source.objects.filter(id=alices_things["source_id"]).exists()
    assert Job.objects.get(id=alices_things["job_id"]).status != "cancelled"


def test_lists_never_show_another_users_rows(alices_things: dict[str, str], make_user: Any) -> None:
    bob = Client()
    bob.force_login(make_user())
    assert bob.get("/api/v1/notebooks/").json()["count"] == 0
    assert bob.get("/api/v1/jobs/").json()["count"] == 0
    assert bob.get(f"/api/v1/jobs/?notebook={alices_things['notebook_id']}").json()["count"] == 0


@pytest.mark.django_db
def test_the_api_needs_authentication() -> None:
    client = Client()
    for url in ("/api/v1/notebooks/", "/api/v1/jobs/"):
        response = client.get(url)
        assert response.status_code in (401, 403)
        assert "error" in response.json()


@pytest.mark.django_db
def test_admin_dashboard_and_metrics_are_protected(make_user: Any) -> None:
    client = Client()
    assert client.get("/admin/backend/job/").status_code == 302
    client.force_login(make_user(is_staff=True))  # staff without permissions
    assert client.get("/admin/backend/job/").status_code == 403
    assert client.get("/django-rq/").status_code == 403
    assert client.post("/django-rq/queues/0/empty/").status_code == 403  # destructive action
    client.force_login(make_user(is_staff=True, is_superuser=True))
    assert client.get("/metrics").status_code == 401  # metrics by token only, even for superusers
    assert client.get("/admin/backend/job/").status_code == 200
