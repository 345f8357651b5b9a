import json
import time
from typing import Any

import httpx

from notebooks.models import Source


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.1, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def new_notebook(http: httpx.Client, title: str = "Research") -> str:
    response = http.post("/api/v1/notebooks/", json={"title": title})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def all_done(source_ids: list[str], timeout: float = 90) -> list[Source]:
    def done() -> list[Source] | None:
        sources = list(Source.objects.filter(id__in=source_ids))
        terminal = {Source.Status.READY, Source.Status.FAILED, Source.Status.CANCELLED}
        return sources if len(sources) == len(source_ids) and all(s.status in terminal for s in sources) else None

    return wait_for(done, timeout=timeout, interval=0.2, message="sources to finish")


def upload(http: httpx.Client, nb: str, files: list[tuple[str, bytes]]) -> httpx.Response:
    return http.post(f"/api/v1/notebooks/{nb}/sources/", files=[("files", (name, data)) for name, data in files])


def read_events(response: Any, until_status: set[str], limit: int = 200) -> list[tuple[str, dict[str, Any]]]:
    """The job events of an SSE response, as (event id, job), until a job reaches one of
    ``until_status`` or ``limit`` events have come."""
    events: list[tuple[str, dict[str, Any]]] = []
    event_id, event_type = "", ""
    for line in response.iter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            event_type = line[7:]
        elif line.startswith("data: ") and event_type == "job":
            data = json.loads(line[6:])
            events.append((event_id, data))
            if data["status"] in until_status or len(events) >= limit:
                return events
    return events


def work_horse(worker: Any) -> Any:
    """A forking worker's running work-horse (a psutil.Process), or None: its newest child
    other than the scheduler (started with the worker) and the speech model's process."""
    import psutil

    children = []
    for child in worker.children():
        try:
            if child.create_time() > worker.create_time() + 3 and "transcriber" not in " ".join(child.cmdline()):
                children.append(child)
        except psutil.Error:  # a zombie (a killed speech model's process) or ended meanwhile
            continue
    return max(children, key=lambda c: c.create_time()) if children else None
