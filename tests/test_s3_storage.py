"""Files on S3-compatible storage: moto's standalone server (a dev requirement) on a loopback
port, behind a TCP proxy the test can cut to simulate a storage outage. The web and worker
processes use production's S3 settings (QUIRE_S3_*) and share no folder with the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from notebooks.ingest.chunking import chunk_text
from notebooks.ingest.extract import extract
from notebooks.ingest.samples import prose
from tests.helpers import wait_for
from tests.processes import LOG_DIR, free_port

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "quire-test"
pytestmark = [pytest.mark.slow]


class Proxy:
    """Forwards loopback TCP connections to the S3 server; `down()` refuses new ones and cuts
    open ones, as an unreachable storage endpoint would."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.up = True
        self.conns: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def down(self) -> None:
        self.up = False
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns = []

    def close(self) -> None:
        self.down()
        self.server.close()


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[tuple[Proxy, Any]]:
    if shutil.which("moto_server", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("moto[server] is not installed (requirements-dev.txt)")
    port = free_port()
    log = open(tmp_path / "moto.log", "ab")
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="test", aws_secret_access_key="test",
        region_name="us-east-1",
    )  # fmt: skip

    def ready() -> bool:
        try:
            client.list_buckets()
            return True
        except Exception:
            return False

    wait_for(ready, timeout=30, message="moto_server")
    client.create_bucket(Bucket=BUCKET)
    proxy = Proxy(port)
    try:
        yield proxy, client
    finally:
        proxy.close()
        moto.terminate()
        moto.wait(timeout=10)


def test_sources_go_through_s3_and_a_storage_outage_mid_job_is_retried(
    s3: tuple[Proxy, Any], process_env: dict[str, str], _workers: Any, transactional_db: Any, redis_clean: Any,
    make_user: Any, tmp_path: Path,
) -> None:  # fmt: skip
    proxy, client = s3
    _workers.stop_all()  # only the S3-configured worker below may take the jobs
    media = tmp_path / "media"
    env = {
        **process_env,
        "QUIRE_S3_BUCKET": BUCKET,
        "QUIRE_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        "QUIRE_S3_REGION": "us-east-1",
        "QUIRE_S3_ACCESS_KEY": "test",
        "QUIRE_S3_SECRET_KEY": "test",
        "QUIRE_MEDIA_ROOT": str(media),
        # botocore retries a refused connection itself; one try shows the job runtime's retry.
        "AWS_MAX_ATTEMPTS": "1",
    }
    web_port = free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.asgi:application", "--host", "127.0.0.1", "--port",
             str(web_port)],
            cwd=ROOT, env=env, stdout=open(LOG_DIR / "s3-web.log", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        ))  # fmt: skip
        base = f"http://127.0.0.1:{web_port}"
        wait_for(lambda: _answers(base), timeout=60, message="the web process")
        user = make_user()
        from rest_framework.authtoken.models import Token

        token = Token.objects.create(user=user).key
        api = httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30)
        notebook = api.post("/api/v1/notebooks/", json={"title": "S3"}).json()["id"]
        corpus = {f"doc-{i}.md": f"# Doc {i}\n\n{prose(1500, seed=500 + i)}\n".encode() for i in range(3)}
        expected = {}
        for name, data in corpus.items():
            text = extract(data, "md")
            expected[name] = len(chunk_text(text.text, text.pages))
        files = [("files", (n, d, "text/markdown")) for n, d in corpus.items()]
        response = api.post(f"/api/v1/notebooks/{notebook}/sources/", files=files)
        assert response.status_code == 202, response.text
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        assert len(keys) == 3 and all(k.startswith(f"sources/{notebook}/") for k in keys), keys

        # Storage goes away before any worker reads the files; the worker starts now.
        proxy.down()
        procs.append(subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "notebook_processing", "--worker-class",
             "backend.runtime.workers.ForkingWorker", "--serializer", "rq.serializers.JSONSerializer",
             "--with-scheduler"],
            cwd=ROOT, env=env, stdout=open(LOG_DIR / "s3-worker.log", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        ))  # fmt: skip
        from backend.models import Job

        wait_for(lambda: Job.objects.filter(kind="notebooks.process_source", attempts__gte=1).exists(), timeout=90,
                 message="a first attempt against the missing storage")  # fmt: skip
        first_failure = Job.objects.filter(kind="notebooks.process_source", attempts__gte=1).first()
        time.sleep(0.5)
        proxy.up = True
        restored_at = time.monotonic()

        def all_ready() -> list[dict[str, Any]] | None:
            found = api.get(f"/api/v1/notebooks/{notebook}/sources/").json()["results"]
            return found if all(s["status"] in ("ready", "failed") for s in found) else None

        found = wait_for(all_ready, timeout=120, interval=0.5, message="every source")
        done_in = time.monotonic() - restored_at
        assert [s["status"] for s in found] == ["ready"] * 3, [(s["original_filename"], s["error"]) for s in found]
        assert {s["original_filename"]: s["chunk_count"] for s in found} == expected
        jobs = list(Job.objects.filter(kind="notebooks.process_source"))
        assert all(j.status == Job.Status.SUCCEEDED for j in jobs)
        retried = [j for j in jobs if j.attempts > 1]
        assert retried, [(j.id, j.attempts, j.error) for j in jobs]  # the outage was met and retried
        assert first_failure is not None
        assert not media.exists() or not any(media.rglob("*"))  # nothing on the local disk
        print(f"\n[figures] S3 outage before ingestion: {len(retried)} of 3 jobs retried, all ready {done_in:.1f}s "
              f"after storage returned")  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)


def _answers(base: str) -> bool:
    try:
        httpx.get(f"{base}/healthz", timeout=5)
        return True
    except httpx.HTTPError:
        return False


def test_an_upload_while_storage_is_down_leaves_no_row_and_says_why(
    s3: tuple[Proxy, Any], process_env: dict[str, str], transactional_db: Any, make_user: Any, tmp_path: Path
) -> None:
    proxy, client = s3
    env = {
        **process_env,
        "QUIRE_S3_BUCKET": BUCKET,
        "QUIRE_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        "QUIRE_S3_REGION": "us-east-1",
        "QUIRE_S3_ACCESS_KEY": "test",
        "QUIRE_S3_SECRET_KEY": "test",
        "QUIRE_MEDIA_ROOT": str(tmp_path / "media"),
        "AWS_MAX_ATTEMPTS": "1",
    }
    web_port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.asgi:application", "--host", "127.0.0.1", "--port", str(web_port)],
        cwd=ROOT, env=env, stdout=open(LOG_DIR / "s3-web.log", "ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{web_port}"
        wait_for(lambda: _answers(base), timeout=60, message="the web process")
        from rest_framework.authtoken.models import Token

        from notebooks.models import Source

        token = Token.objects.create(user=make_user()).key
        api = httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=60)
        notebook = api.post("/api/v1/notebooks/", json={"title": "S3 down"}).json()["id"]
        proxy.down()
        files = [("files", ("a.md", b"# A\n\nSome text about storage.\n", "text/markdown"))]
        response = api.post(f"/api/v1/notebooks/{notebook}/sources/", files=files)
        print(f"\n[figures] upload with storage down: {response.status_code} {response.text[:300]}")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
        assert Source.objects.filter(notebook_id=notebook).count() == 0
        proxy.up = True
        assert client.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
        again = api.post(f"/api/v1/notebooks/{notebook}/sources/", files=files)
        assert again.status_code == 202, again.text
        assert Source.objects.filter(notebook_id=notebook).count() == 1
    finally:
        web.terminate()
        web.wait(timeout=20)


def test_podcast_audio_is_served_from_s3_with_range_requests(
    s3: tuple[Proxy, Any], process_env: dict[str, str], transactional_db: Any, make_user: Any, tmp_path: Path
) -> None:
    proxy, client = s3
    env = {
        **process_env,
        "QUIRE_S3_BUCKET": BUCKET,
        "QUIRE_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        "QUIRE_S3_REGION": "us-east-1",
        "QUIRE_S3_ACCESS_KEY": "test",
        "QUIRE_S3_SECRET_KEY": "test",
        "QUIRE_MEDIA_ROOT": str(tmp_path / "media"),
    }
    # The audio as a podcast job leaves it: an object in the bucket, a completed row naming it.
    audio = bytes(range(256)) * 4000  # 1 MB, every byte's position recognisable
    client.put_object(Bucket=BUCKET, Key="podcasts/episode.mp3", Body=audio)
    from notebooks.models import Notebook
    from podcast.models import Podcast

    user = make_user()
    notebook = Notebook.objects.create(owner=user, title="Audio")
    podcast = Podcast.objects.create(
        notebook=notebook, owner=user, title="Episode", status=Podcast.Status.COMPLETED,
        audio_mp3="podcasts/episode.mp3",
    )  # fmt: skip
    web_port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.asgi:application", "--host", "127.0.0.1", "--port", str(web_port)],
        cwd=ROOT, env=env, stdout=open(LOG_DIR / "s3-web.log", "ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{web_port}"
        wait_for(lambda: _answers(base), timeout=60, message="the web process")
        from rest_framework.authtoken.models import Token

        token = Token.objects.create(user=user).key
        api = httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=60)
        url = f"/api/v1/podcasts/{podcast.id}/audio/"

        whole = api.get(url)
        assert whole.status_code == 200 and whole.content == audio
        assert whole.headers["accept-ranges"] == "bytes"
        middle = api.get(url, headers={"Range": "bytes=500000-500999"})
        assert middle.status_code == 206
        assert middle.headers["content-range"] == f"bytes 500000-500999/{len(audio)}"
        assert middle.content == audio[500000:501000]
        tail = api.get(url, headers={"Range": "bytes=-100"})
        assert tail.status_code == 206 and tail.content == audio[-100:]
        outside = api.get(url, headers={"Range": f"bytes={len(audio)}-"})
        assert outside.status_code == 416
        assert outside.headers["content-range"] == f"bytes */{len(audio)}"
    finally:
        web.terminate()
        web.wait(timeout=20)
