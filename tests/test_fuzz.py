"""Fuzzing the API from its own schema: schemathesis, as an authenticated user, finds no 5xx."""

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token


@pytest.mark.django_db
def test_the_schema_and_the_docs_load() -> None:
    from django.test import Client

    client = Client()
    schema = client.get("/api/schema/?format=openapi")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/notebooks/{notebook_id}/sources/" in paths and "/jobs/{job_id}/cancel/" in paths
    assert client.get("/api/docs/").status_code == 200


def test_schemathesis_finds_no_server_error(live_server_url: str, make_user: Any) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli, "schemathesis is in requirements-dev.txt"
    token = Token.objects.create(user=make_user()).key
    # Something to find: a notebook with a text source, so id-taking operations are reached.
    client = httpx.Client(base_url=live_server_url, headers={"Authorization": f"Token {token}"})
    notebook = client.post("/api/v1/notebooks/", json={"title": "fuzz"}).json()["id"]
    client.post(f"/api/v1/notebooks/{notebook}/sources/", json={"text": "Fuzzing finds crashes.", "title": "t"})
    result = subprocess.run(
        [
            cli, "run", f"{live_server_url}/api/schema/?format=openapi",
            "--url", f"{live_server_url}/api/v1",
            "-H", f"Authorization: Token {token}",
            "--checks", "not_a_server_error",
            "--max-examples", "25",
            "--seed", "1",
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    summary = result.stdout[-1500:]
    cases = [line.strip() for line in summary.splitlines() if "generated" in line]
    print(f"\n[figures] schemathesis on every operation of /api/schema/: {cases[-1] if cases else summary[-300:]}")
    assert result.returncode == 0, summary
    assert "passed" in summary


@pytest.mark.django_db
def test_each_list_is_documented_as_the_body_it_answers(make_user: Any) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(make_user())
    schema = client.get("/api/schema/?format=openapi").json()
    notebook = client.post("/api/v1/notebooks/", {"title": "docs"}, format="json").json()["id"]
    lists = [
        "/jobs/", "/notebooks/", f"/notebooks/{notebook}/sources/", f"/notebooks/{notebook}/questions/",
        f"/notebooks/{notebook}/reports/", f"/notebooks/{notebook}/podcasts/", f"/notebooks/{notebook}/search/?q=x",
    ]  # fmt: skip
    for url in lists:
        answered = client.get("/api/v1" + url)
        assert answered.status_code == 200, url
        documented = schema["paths"][url.split("?")[0].replace(notebook, "{notebook_id}")]["get"]["responses"]["200"]
        body = schema["definitions"][documented["schema"]["$ref"].rsplit("/", 1)[-1]]
        assert body["type"] == "object" and set(answered.json()) <= set(body["properties"]), url
        assert set(body.get("required", [])) <= set(answered.json()), url
        assert body["properties"]["results"]["type"] == "array", url
