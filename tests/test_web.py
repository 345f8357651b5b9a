"""Quire's web pages. The browser tests drive headless Chromium (Debian's `chromium` package) with
Playwright against uvicorn and real workers; they are skipped where /usr/bin/chromium is missing.
The page tests below them use Django's test client and run everywhere."""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from backend.models import Job
from notebooks import services as notebook_services
from notebooks.models import Notebook, Source
from podcast.models import Podcast
from tests import documents as docs
from tests import factories

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "var" / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "pw-Quire-123"  # conftest.make_user's
SECOND = 1000  # Playwright timeouts are in milliseconds
NO_CHROMIUM = "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"


def browser_test(func: Any) -> Any:
    """Marked `browser`, and skipped before any worker starts when Chromium is not installed."""
    return pytest.mark.browser(pytest.mark.skipif(not CHROMIUM.exists(), reason=NO_CHROMIUM)(func))


@pytest.fixture(scope="module")
def browser(process_env: dict[str, str]) -> Iterator[Any]:
    """One headless Chromium for the module. Requesting `process_env` first keeps the variable
    below out of the worker and server processes' environment."""
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
    # Playwright's sync API keeps an asyncio loop running in this thread, which makes Django
    # refuse ORM calls (fixtures, database flushes) while the browser is open.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        playwright = sync_api.sync_playwright().start()
        try:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
            yield chromium
            chromium.close()
        finally:
            playwright.stop()


class Console:
    """JavaScript errors and failed requests seen by a page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    ctx.set_default_timeout(20 * SECOND)
    yield ctx
    ctx.close()


def log_in(page: Any, base: str, user: Any) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/notebooks/")


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def row(page: Any, kind: str, title: str) -> Any:
    return page.locator(f"#{kind}s li.{kind}").filter(has=page.locator(".title", has_text=title))


def unnamed_controls(page: Any) -> list[str]:
    """Form controls a screen reader could not name."""
    return page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, audio')]
            .filter(el => !el.labels?.length && !el.getAttribute('aria-label') && !el.textContent.trim())
            .map(el => el.outerHTML)"""
    )


def file_payload(name: str, mime: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


@browser_test
def test_it_takes_a_notebook_from_upload_to_report_and_podcast_with_live_progress(
    workers: Any, live_server_url: str, make_user: Any, context: Any
) -> None:
    from playwright.sync_api import expect

    base = live_server_url
    started = time.monotonic()
    alice = make_user("alice-" + uuid.uuid4().hex[:6])
    page = context.new_page()
    console = Console(page)
    event_streams: list[str] = []
    page.on("request", lambda r: r.resource_type == "eventsource" and event_streams.append(r.url))

    # Log in, create a notebook, rename it.
    log_in(page, base, alice)
    page.get_by_label("Title").fill("Earth scienc")
    page.get_by_role("button", name="Create notebook").click()
    page.wait_for_url(re.compile(r".*/notebooks/[0-9a-f-]{36}/$"))
    notebook_url = page.url
    page.get_by_text("Rename", exact=True).click()
    page.get_by_label("New title").fill("Earth science")
    page.get_by_role("button", name="Save title").click()
    expect(page.locator("#notebook-title")).to_have_text("Earth science")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("body")).to_have_attribute("data-loaded", "")
    assert event_streams and event_streams[-1].endswith("/events/")
    page.evaluate("window.__samePage = true")

    # Two files at once: both bars follow their jobs to ready, pushed by the event stream.
    page.set_input_files(
        "#files",
        [
            file_payload("volcanoes.pdf", "application/pdf", docs.volcano_pdf()),
            file_payload(
                "photosynthesis.docx",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                docs.photosynthesis_docx(),
            ),
        ],
    )
    sources = page.locator("#sources li.source")
    expect(sources).to_have_count(2)
    for i in range(2):
        expect(sources.nth(i).locator(".status")).to_have_text("ready", timeout=60 * SECOND)
    expect(page.locator("#sources li.source progress")).to_have_count(0)
    assert page.evaluate("window.__samePage") is True  # no reload
    expect(row(page, "source", "Volcanoes").locator(".meta")).to_contain_text("passages")

    # A report and a podcast start while a long PDF is being ingested.
    page.get_by_label("Topic (empty: the whole notebook)").fill("volcanic eruptions")
    page.get_by_label("Length").select_option("short")
    page.get_by_role("button", name="Write report").click()
    page.locator("#podcast-title").fill("Earth and life")
    page.get_by_label("Minutes").fill("0.5")
    page.get_by_role("button", name="Make podcast").click()
    expect(page.locator("#reports li.report")).to_have_count(1)
    expect(page.locator("#podcasts li.podcast")).to_have_count(1)

    page.set_input_files("#files", [file_payload("long.pdf", "application/pdf", docs.long_pdf(60))])
    long_row = page.locator("#sources li.source").nth(2)
    expect(long_row.locator(".message")).to_contain_text(re.compile(r"Embedding chunk \d+/\d+"), timeout=60 * SECOND)
    expect(long_row.locator(".status")).to_have_text("processing")
    bar = long_row.locator("progress")
    assert 0 < float(bar.get_attribute("value") or 0) < 100
    shot(page, "notebook-progress.png")
    long_row.get_by_role("button", name="Cancel").click()
    expect(long_row.locator(".status")).to_have_text("cancelled")
    expect(long_row.locator(".reason")).to_have_text("Processing was cancelled.")
    long_id = long_row.get_attribute("data-id")
    assert Source.objects.get(id=long_id).status == Source.Status.CANCELLED
    long_row.get_by_role("button", name="Delete").click()
    expect(page.locator("#sources li.source")).to_have_count(2)
    assert not Source.objects.filter(id=long_id).exists()

    # Overview: a suggested question is asked, and its answer (or a decline) streams in.
    question = page.locator("#overview-questions button").first
    expect(question).to_be_visible(timeout=60 * SECOND)
    expect(page.locator("#overview-summary")).not_to_be_empty()
    question.click()
    expect(page.locator("#question")).to_have_value(question.inner_text())
    expect(page.locator("#history li")).to_have_count(1, timeout=30 * SECOND)
    expect(page.locator("#answer-text")).not_to_have_text("Thinking…")

    # Search: highlighted passages that link to the passage in the source's text.
    page.get_by_label("Search this notebook").fill("hot gas and rock racing down a mountain")
    page.get_by_role("button", name="Search", exact=True).click()
    top = page.locator("#results li.hit").first
    expect(top.locator(".passage")).to_contain_text("Pyroclastic flows")
    expect(top.locator("mark").first).to_be_visible()
    assert {m.lower() for m in top.locator("mark").all_inner_texts()} >= {"hot", "gas", "rock"}
    expect(top).to_contain_text("page 2")
    top.locator("a.hit-link").click()
    expect(page.locator("mark#passage")).to_contain_text("Pyroclastic flows")
    expect(page.locator("mark#passage")).to_be_in_viewport()
    page.go_back()

    # The report: rendered, with citations that open their passage; both downloads.
    expect(page.locator("body")).to_have_attribute("data-loaded", "")
    report = page.locator("#reports li.report").first
    expect(report.locator(".status")).to_have_text("completed", timeout=60 * SECOND)
    report.get_by_role("link", name="Read").click()
    expect(page.locator("#report h1")).to_be_visible()
    cite = page.locator("#report sup.cite a").first
    cite.click()
    dialog = page.locator("dialog#citation")
    expect(dialog).to_be_visible()
    shot(page, "report-citation.png")
    assert unnamed_controls(page) == []
    quote = page.locator("#citation-quote").inner_text()
    assert quote.strip()
    dialog.get_by_role("link", name="Open the passage in its source").click()
    passage = page.locator("mark#passage")
    expect(passage).to_be_visible()
    assert " ".join(quote.split()) in " ".join(passage.inner_text().split())
    page.go_back()
    markdown = page.request.get(base + page.get_by_role("link", name="Download Markdown").get_attribute("href"))
    assert markdown.status == 200 and markdown.headers["content-type"].startswith("text/markdown")
    assert "[1]" in markdown.text()
    html = page.request.get(base + page.get_by_role("link", name="Download HTML").get_attribute("href"))
    assert html.status == 200 and html.headers["content-type"].startswith("text/html")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download Markdown").click()
    assert download.value.suggested_filename.endswith(".md")

    # The podcast: the script, an audio player that loads and seeks, the MP3 download.
    page.goto(notebook_url)
    podcast = page.locator("#podcasts li.podcast").first
    expect(podcast.locator(".status")).to_have_text("completed", timeout=90 * SECOND)
    podcast.get_by_role("link", name="Listen").click()
    expect(page.locator("#script li.turn").first).to_be_visible()
    page.wait_for_function(
        "() => { const a = document.getElementById('player'); return a.readyState >= 1 && a.duration > 0 }"
    )
    duration = page.evaluate("document.getElementById('player').duration")
    stored = Podcast.objects.get(notebook__owner=alice)
    assert duration == pytest.approx(stored.duration_seconds, abs=1.0)
    seek = page.locator("#script button.seek").last
    target = float(seek.get_attribute("data-start") or 0)
    assert target > 0
    seek.click()
    page.wait_for_function(
        "t => (a => Math.abs(a.currentTime - t) < 2 && !a.seeking)(document.getElementById('player'))",
        arg=target,
    )
    shot(page, "podcast.png")
    assert unnamed_controls(page) == []
    mp3_url = page.get_by_role("link", name="Download MP3").get_attribute("href")
    ranged = page.request.get(base + mp3_url, headers={"Range": "bytes=100-199"})
    assert ranged.status == 206 and len(ranged.body()) == 100
    assert ranged.headers["content-type"] == "audio/mpeg"

    # Back on the notebook page, everything has finished: the screenshot for the README.
    page.goto(notebook_url)
    expect(page.locator("body")).to_have_attribute("data-loaded", "")
    page.get_by_label("Search this notebook").fill("How do volcanologists forecast eruptions?")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#results li.hit").first).to_be_visible()
    expect(page.locator("#overview-summary")).not_to_be_empty()
    shot(page, "notebook-complete.png")

    assert console.errors == []
    print(f"\n[figures] browser scenario {time.monotonic() - started:.1f}s")


DROP_FILES = """([zone, files]) => {
    const data = new DataTransfer();
    for (const f of files) {
        const bytes = Uint8Array.from(atob(f.base64), c => c.charCodeAt(0));
        data.items.add(new File([bytes], f.name, {type: f.type}));
    }
    zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
}"""


@browser_test
def test_it_follows_dropped_and_pasted_sources_to_ready_or_failed_without_polling(
    workers: Any, live_server_url: str, make_user: Any, context: Any
) -> None:
    from playwright.sync_api import expect

    user = make_user()
    page = context.new_page()
    console = Console(page)
    api_gets: list[str] = []
    page.on("request", lambda r: r.method == "GET" and "/api/v1/" in r.url and api_gets.append(r.url))
    log_in(page, live_server_url, user)
    notebook = notebook_services.notebook_create(owner=user, title="Dropped and pasted")
    page.goto(f"{live_server_url}/notebooks/{notebook.id}/")
    expect(page.locator("body")).to_have_attribute("data-loaded", "")
    page.evaluate("window.__samePage = true")

    # Two files dropped at once (one of them a password-protected PDF), and pasted text.
    locked = docs.encrypt_pdf(docs.volcano_pdf(), user_password="secret", owner_password="owner")
    dropped = [
        {"name": "jazz.html", "type": "text/html", "base64": base64.b64encode(docs.jazz_html()).decode()},
        {"name": "locked.pdf", "type": "application/pdf", "base64": base64.b64encode(locked).decode()},
    ]
    page.evaluate(DROP_FILES, [page.locator("#upload-form").element_handle(), dropped])
    # The upload's coverage, kept from the job events, then a retry of its failed source.
    coverage = page.locator("#batch-line")
    expect(coverage).to_have_text("Last upload: 1 of 2 ready, 1 failed: 1 ENCRYPTED_PDF", timeout=60 * SECOND)
    locked_job = Job.objects.get(id=Source.objects.get(notebook=notebook, original_filename="locked.pdf").job_id)
    page.get_by_role("button", name="Retry failed").click()
    expect(page.locator("#notice")).to_have_text("Retrying 1 failed source.")
    deadline = time.monotonic() + 60
    while not Job.objects.filter(id=locked_job.id, status="failed", attempts__gt=locked_job.attempts).exists():
        assert time.monotonic() < deadline, "the retried job did not run again"
        time.sleep(0.2)
    expect(coverage).to_have_text("Last upload: 1 of 2 ready, 1 failed: 1 ENCRYPTED_PDF")
    expect(page.get_by_role("button", name="Retry failed")).to_be_visible()
    page.get_by_text("Paste text", exact=True).click()
    page.locator("#text-title").fill("Roman roads")
    page.get_by_label("Text", exact=True).fill("\n\n".join(docs.ROMAN_ROADS))
    page.get_by_role("button", name="Add text").click()

    expect(row(page, "source", "jazz").locator(".status")).to_have_text("ready", timeout=60 * SECOND)
    expect(row(page, "source", "Roman roads").locator(".status")).to_have_text("ready", timeout=60 * SECOND)
    failed = row(page, "source", "locked")
    expect(failed.locator(".status")).to_have_text("failed", timeout=60 * SECOND)
    expect(failed.locator(".reason")).to_have_text(
        "The PDF is password-protected; remove the password and upload it again."
    )
    expect(page.locator("#overview-questions button").first).to_be_visible(timeout=60 * SECOND)
    expect(page.locator("#overview-status")).to_be_hidden(timeout=60 * SECOND)

    # Everything above was pushed: a page that polled would ask the API again within two seconds.
    before = len(api_gets)
    page.wait_for_timeout(2 * SECOND)
    assert len(api_gets) == before, api_gets[before:]
    assert page.evaluate("window.__samePage") is True

    # Bad input is refused at once with the API's readable message.
    page.get_by_text("Paste web page URLs", exact=True).click()
    page.get_by_label("URLs, one per line").fill("ftp://example.org/file")
    page.get_by_role("button", name="Add URLs").click()
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#notice")).not_to_be_empty()
    assert all("status of 400" in e for e in console.errors), console.errors


@browser_test
def test_a_dropped_recording_is_transcribed_and_a_search_hit_plays_it_from_its_moment(
    workers: Any, live_server_url: str, make_user: Any, context: Any
) -> None:
    from playwright.sync_api import expect

    from notebooks.ingest import speech_samples

    sentences = [s.strip() + "." for s in speech_samples.SCRIPT.split(".") if s.strip()]
    audio, rate, times = speech_samples.speak(sentences)
    user = make_user()
    page = context.new_page()
    console = Console(page)
    log_in(page, live_server_url, user)
    notebook = notebook_services.notebook_create(owner=user, title="Recorded")
    page.goto(f"{live_server_url}/notebooks/{notebook.id}/")
    expect(page.locator("body")).to_have_attribute("data-loaded", "")
    assert "audio/*" in (page.locator("#files").get_attribute("accept") or "")
    # Every message the source's row shows, as it changes.
    page.evaluate(
        """() => { window.__messages = [];
            new MutationObserver(() => document.querySelectorAll('#sources .message').forEach(
                m => window.__messages.push(m.textContent)))
            .observe(document.body, {subtree: true, childList: true}); }"""
    )
    wav = speech_samples.wav_bytes(audio, rate)
    dropped = [{"name": "talk.wav", "type": "audio/wav", "base64": base64.b64encode(wav).decode()}]
    page.evaluate(DROP_FILES, [page.locator("#upload-form").element_handle(), dropped])
    expect(row(page, "source", "talk").locator(".status")).to_have_text("ready", timeout=90 * SECOND)
    assert any(re.match(r"Transcribing \d+:\d\d of 0:15", m) for m in page.evaluate("window.__messages"))

    page.locator("#q").fill("ash clouds ground aircraft")
    page.locator("#q").press("Enter")
    play = page.locator("#results li.hit button.play").first
    expect(play).to_be_visible()
    label = play.text_content() or ""
    assert re.fullmatch(r"▶ 0:\d\d", label), label
    play.click()
    player = page.locator("#player")
    expect(player).to_be_visible()
    assert "#t=" in (player.get_attribute("src") or "")
    start = int(label[-2:])
    page.wait_for_function(
        "(at) => document.getElementById('player').currentTime >= at", arg=start, timeout=15 * SECOND
    )
    assert start <= times[3][0] + 1

    # An answer's citation of the recording plays it from the cited moment too.
    page.get_by_label("Ask this notebook a question").fill("How do scientists predict an eruption?")
    page.get_by_role("button", name="Ask", exact=True).click()
    cited = page.locator("#answer-citations button.play").first
    expect(cited).to_be_visible(timeout=60 * SECOND)
    cited_at = int((cited.text_content() or "")[-2:])
    cited.click()
    page.wait_for_function(
        "(at) => document.getElementById('player').currentTime >= at", arg=cited_at, timeout=15 * SECOND
    )
    assert not unnamed_controls(page)
    assert not console.errors, console.errors


# Before the page's scripts: remember the page's event stream, and hold the answer to a POST
# of sources until that stream has delivered a job's end (to the page's own listener first).
HOLD_UPLOAD_UNTIL_A_JOB_ENDS = """(() => {
    const Native = window.EventSource;
    window.EventSource = function (...args) {
        const stream = new Native(...args);
        window.__stream = stream;
        return stream;
    };
    window.EventSource.CLOSED = Native.CLOSED;
    const nativeFetch = window.fetch.bind(window);
    window.fetch = async (url, init = {}) => {
        const response = await nativeFetch(url, init);
        if (init.method === "POST" && String(url).endsWith("/sources/")) {
            await new Promise((resolve) => window.__stream.addEventListener("job", (event) => {
                if (JSON.parse(event.data).status === "succeeded") resolve();
            }));
            window.__held = true;
        }
        return response;
    };
})();"""


@browser_test
def test_a_source_whose_job_ends_before_the_upload_answers_shows_its_end(
    workers: Any, live_server_url: str, make_user: Any, context: Any
) -> None:
    """Seen in CI: the job's events reached the page before its own upload's answer, and the row
    stayed "pending" for good (no refresh of the row once it existed, and its reload cancelled)."""
    from playwright.sync_api import expect

    user = make_user()
    page = context.new_page()
    page.add_init_script(HOLD_UPLOAD_UNTIL_A_JOB_ENDS)
    log_in(page, live_server_url, user)
    notebook = notebook_services.notebook_create(owner=user, title="Fast jobs")
    page.goto(f"{live_server_url}/notebooks/{notebook.id}/")
    expect(page.locator("body")).to_have_attribute("data-loaded", "")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")

    page.get_by_text("Paste text", exact=True).click()
    page.locator("#text-title").fill("Roman roads")
    page.get_by_label("Text", exact=True).fill("\n\n".join(docs.ROMAN_ROADS))
    page.get_by_role("button", name="Add text").click()

    page.wait_for_function("window.__held === true", timeout=60 * SECOND)
    expect(row(page, "source", "Roman roads").locator(".status")).to_have_text("ready", timeout=10 * SECOND)


@browser_test
def test_another_users_notebook_is_a_404_and_the_page_fits_a_phone(
    live_server_url: str, make_user: Any, browser: Any
) -> None:
    from playwright.sync_api import expect

    alice, bob = make_user(), make_user()
    notebook = notebook_services.notebook_create(owner=alice, title="Alice's private notes")
    source = factories.source(notebook, title="secret", text="secret")

    phone = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = phone.new_page()
        console = Console(page)
        log_in(page, live_server_url, bob)
        expect(page.get_by_text("Alice's private notes")).to_have_count(0)
        for path in (f"/notebooks/{notebook.id}/", f"/notebooks/{notebook.id}/sources/{source.id}/"):
            response = page.goto(f"{live_server_url}{path}")
            assert response is not None and response.status == 404, path
            assert "secret" not in page.content()
        console.errors.clear()  # the 404s above

        # Bob's own notebook on a narrow screen: nothing wider than the screen, every control named.
        own = notebook_services.notebook_create(owner=bob, title="Bob's notebook with a rather long title")
        page.goto(f"{live_server_url}/notebooks/{own.id}/")
        expect(page.locator("body")).to_have_attribute("data-loaded", "")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert page.evaluate("[...document.querySelectorAll('header a')].every(a => a.getClientRects().length === 1)")
        shot(page, "notebook-phone.png")
        assert unnamed_controls(page) == []
        # Superusers get the job dashboard link; Bob does not, everyone gets the API docs.
        expect(page.get_by_role("link", name="API docs")).to_have_attribute("href", "/api/docs/")
        expect(page.get_by_role("link", name="Job dashboard")).to_have_count(0)
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(f"{live_server_url}/login/")
        assert console.errors == []
    finally:
        phone.close()


# --- the pages through Django's test client (no browser needed)


@pytest.fixture
def signed_in(client: Client, make_user: Any) -> tuple[Client, Any]:
    user = make_user()
    client.force_login(user)
    return client, user


def test_it_sends_anonymous_visitors_to_the_login_page(client: Client, db: Any) -> None:
    response = client.get("/notebooks/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/notebooks/"
    assert client.get("/")["Location"] == "/login/"
    # The job dashboard still sends them to the admin's login page.
    assert client.get("/django-rq/")["Location"].startswith("/admin/login/")


def test_it_logs_in_and_out(client: Client, make_user: Any) -> None:
    user = make_user()
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/notebooks/"
    assert client.get("/notebooks/").status_code == 200
    assert client.post("/logout/")["Location"] == "/login/"
    assert client.get("/notebooks/").status_code == 302


def test_it_creates_renames_and_deletes_a_notebook(signed_in: tuple[Client, Any]) -> None:
    client, user = signed_in
    response = client.post("/notebooks/", {"title": "Volcanoes", "description": ""})
    notebook = Notebook.objects.get(owner=user)
    assert response["Location"] == f"/notebooks/{notebook.id}/"
    page = client.get(f"/notebooks/{notebook.id}/").content.decode()
    assert "Volcanoes" in page and f"/api/v1/notebooks/{notebook.id}/events/" in page
    assert "/api/docs/" in page and "/django-rq/" not in page

    client.post(f"/notebooks/{notebook.id}/rename/", {"title": "Volcanoes of Iceland"})
    notebook.refresh_from_db()
    assert notebook.title == "Volcanoes of Iceland"
    client.post(f"/notebooks/{notebook.id}/rename/", {"title": ""})
    notebook.refresh_from_db()
    assert notebook.title == "Volcanoes of Iceland"
    assert "Volcanoes of Iceland" in client.get("/notebooks/").content.decode()

    assert client.get(f"/notebooks/{notebook.id}/delete/").status_code == 405
    assert client.post(f"/notebooks/{notebook.id}/delete/")["Location"] == "/notebooks/"
    assert not Notebook.objects.filter(id=notebook.id).exists()


def test_it_answers_404_for_everything_of_another_user(signed_in: tuple[Client, Any], make_user: Any) -> None:
    client, _me = signed_in
    other = make_user()
    notebook = factories.notebook(other, title="Not yours")
    source = factories.source(notebook, title="t", text="hidden words")
    report = factories.report(notebook, topic="x")
    podcast = factories.podcast(notebook, title="p")
    nb = f"/notebooks/{notebook.id}"
    for path in (f"{nb}/", f"{nb}/sources/{source.id}/", f"{nb}/reports/{report.id}/", f"{nb}/podcasts/{podcast.id}/"):
        assert client.get(path).status_code == 404, path
    for path in (f"{nb}/rename/", f"{nb}/delete/"):
        assert client.post(path, {"title": "mine now"}).status_code == 404, path
    notebook.refresh_from_db()
    assert notebook.title == "Not yours"


def test_it_shows_superusers_the_job_dashboard_link(client: Client, make_user: Any) -> None:
    client.force_login(make_user(is_superuser=True, is_staff=True))
    assert 'href="/django-rq/"' in client.get("/notebooks/").content.decode()


def test_it_marks_the_cited_passage_in_the_source_text(signed_in: tuple[Client, Any]) -> None:
    client, user = signed_in
    notebook = factories.notebook(user, title="n")
    text = "First <b>part</b>. The passage itself. The end."
    source = factories.source(notebook, title="t", text=text, status=Source.Status.READY)
    chunk = factories.chunk(source, "The passage itself.", char_start=text.index("The passage"))
    page = client.get(f"/notebooks/{notebook.id}/sources/{source.id}/?chunk={chunk.id}").content.decode()
    assert '<mark id="passage" tabindex="-1">The passage itself.</mark>' in page
    assert "&lt;b&gt;part&lt;/b&gt;" in page  # source text is never markup


@browser_test
def test_it_asks_a_question_streams_the_answer_shows_quotes_and_saves_a_note(
    workers: Any, live_server_url: str, make_user: Any, context: Any
) -> None:
    from playwright.sync_api import expect

    user = make_user()
    page = context.new_page()
    console = Console(page)
    log_in(page, live_server_url, user)
    notebook = notebook_services.notebook_create(owner=user, title="Ask me")
    page.goto(f"{live_server_url}/notebooks/{notebook.id}/")
    expect(page.locator("body")).to_have_attribute("data-loaded", "")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.get_by_text("Paste text", exact=True).click()
    page.locator("#text-title").fill("Volcanoes")
    page.get_by_label("Text", exact=True).fill(" ".join(docs.VOLCANOES))
    page.get_by_role("button", name="Add text").click()
    expect(row(page, "source", "Volcanoes").locator(".status")).to_have_text("ready", timeout=60 * SECOND)

    page.get_by_label("Ask this notebook a question").fill("How do volcanologists forecast eruptions?")
    page.get_by_role("button", name="Ask", exact=True).click()
    chip = page.locator("#answer-text a.citation").first
    expect(chip).to_have_text("[1]", timeout=30 * SECOND)
    expect(page.locator("#answer-text")).to_contain_text("ground swelling")
    assert "ground swelling" in (chip.get_attribute("title") or "")  # the quote on hover
    assert "#passage" in (chip.get_attribute("href") or "")  # opens the source at the passage
    expect(page.locator("#history li")).to_have_count(1)

    page.get_by_role("button", name="Save as note").click()
    expect(page.get_by_role("button", name="Saved as a note")).to_be_visible()
    expect(row(page, "source", "Note: How do volcanologists").locator(".status")).to_have_text(
        "ready", timeout=60 * SECOND
    )
    assert Source.objects.filter(notebook=notebook, kind="note").count() == 1

    chip.click()
    expect(page.locator("mark#passage")).to_contain_text("ground swelling")
    shot(page, "ask-passage.png")
    assert console.errors == []
