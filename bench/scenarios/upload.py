"""Upload API: latency of ``POST /api/v1/notebooks/{id}/sources/`` carrying 10 Markdown files of
1 MB each (multipart), from 8 concurrent clients, while the ingestion worker is busy with what they
upload; against ``GET /healthz`` polled by one more client under the same load. Then the same
requests from one client: the cost of an upload without the queue 8 clients build on 2 cores.

Every file is unique (a salted header), so none is refused as a duplicate; each request queues
10 ingestion jobs and an overview job. After each run the notebook is deleted through the service,
which cancels its queued and running jobs, and the next run starts on an idle worker.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Any

from bench.context import Context, say
from bench.corpus import markdown_file
from bench.report import Row, percentile
from bench.stack import cpu_seconds

NAME = "upload"
TITLE = "upload API"
CLIENTS = 8
FILES = 10
FILE_BYTES = 1024 * 1024
HEALTH_INTERVAL = 0.1
SINGLE_CLIENT_REQUESTS = 10


def one_run(ctx: Context, label: str, requests_per_client: int, base: str, clients: int = CLIENTS) -> dict[str, Any]:
    notebook = ctx.new_notebook(f"bench: upload {label}")
    url = f"/api/v1/notebooks/{notebook}/sources/"
    uploads: list[float] = []
    statuses: dict[int, int] = {}
    health: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    halt = threading.Event()

    def client(k: int) -> None:
        try:
            with ctx.http(timeout=300) as http:
                ready.wait()
                for j in range(requests_per_client):
                    files = [
                        ("files", (f"notes-{k}-{j}-{f}.md", markdown_file(FILE_BYTES, f"{label}-{k}-{j}-{f}", base)))
                        for f in range(FILES)
                    ]
                    start = time.perf_counter()
                    response = http.post(url, files=files)
                    elapsed = (time.perf_counter() - start) * 1000
                    with lock:
                        if response.status_code == 202:
                            uploads.append(elapsed)
                        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        except Exception as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")

    def poll_health() -> None:
        with ctx.http(timeout=60) as http:
            while not halt.is_set():
                start = time.perf_counter()
                try:
                    http.get("/healthz")
                except Exception as exc:
                    errors.append(f"healthz {type(exc).__name__}")
                    continue
                health.append((time.perf_counter() - start) * 1000)
                halt.wait(HEALTH_INTERVAL)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    prober = threading.Thread(target=poll_health, daemon=True)
    web, workers = ctx.stack.roles("web"), ctx.stack.roles("worker")
    ready.wait()
    cpu = {"web": cpu_seconds(web), "workers": cpu_seconds(workers), "clients": time.process_time()}
    began = time.perf_counter()
    prober.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    used = {
        "web": cpu_seconds(web) - cpu["web"],
        "workers": cpu_seconds(workers) - cpu["workers"],
        "clients": time.process_time() - cpu["clients"],
    }
    halt.set()
    prober.join(timeout=60)
    ctx.delete_notebook(notebook)
    return {
        "uploads_ms": uploads,
        "health_ms": health,
        "statuses": statuses,
        "errors": errors,
        "seconds": elapsed,
        "mb_per_s": len(uploads) * FILES * FILE_BYTES / 2**20 / elapsed,
        # CPU ms per upload in the web processes and in this process (the clients making and
        # sending the files); CPUs the workers used meanwhile.
        "web_cpu_ms": used["web"] * 1000 / max(len(uploads), 1),
        "clients_cpu_ms": used["clients"] * 1000 / max(len(uploads), 1),
        "workers_cpus": used["workers"] / elapsed,
    }


def run(ctx: Context) -> list[Row]:
    from notebooks.ingest.samples import prose

    per_client = ctx.size(5, 3)
    runs = ctx.runs(3)
    base = prose(20_000, seed=8)
    results, alone = [], []
    for i in range(runs):
        result = one_run(ctx, f"r{i + 1}", per_client, base)
        results.append(result)
        # The same request from one client (the worker busy with what it sends): the cost of
        # one upload without the queue that 8 clients on 2 cores build.
        alone.append(one_run(ctx, f"a{i + 1}", SINGLE_CLIENT_REQUESTS, base, clients=1))
        say(
            f"  run {i + 1}/{runs}: {len(result['uploads_ms'])} uploads, p50 "
            f"{percentile(result['uploads_ms'], 50):.0f} ms, p99 {percentile(result['uploads_ms'], 99):.0f} ms; "
            f"healthz p99 {percentile(result['health_ms'], 99):.0f} ms; statuses {result['statuses']}"
        )
    bad: dict[int, int] = {}
    for r in [*results, *alone]:
        for code, n in r["statuses"].items():
            if code != 202:
                bad[code] = bad.get(code, 0) + n
    errors = [e for r in [*results, *alone] for e in r["errors"]]
    if bad or errors:
        ctx.notes.append(f"upload API: answers other than 202 (left out of the latencies): {bad}; errors: {errors[:3]}")
    ctx.details[NAME] = {
        "clients": CLIENTS,
        "files_per_request": FILES,
        "file_bytes": FILE_BYTES,
        "requests_per_client": per_client,
        "runs": [{k: v for k, v in r.items()} for r in results],
        "one_client_runs": alone,
    }

    def median(key: str, runs: list[dict[str, Any]]) -> float:
        return statistics.median(r[key] for r in runs)

    ctx.notes.append(
        f"upload API: CPU per upload, {CLIENTS} clients: web {median('web_cpu_ms', results):.0f} ms, clients "
        f"{median('clients_cpu_ms', results):.0f} ms, while the workers used "
        f"{median('workers_cpus', results):.2f} of the {os.cpu_count()} CPUs; one client: web "
        f"{median('web_cpu_ms', alone):.0f} ms"
    )
    p99 = [percentile(r["uploads_ms"], 99) for r in results]
    p50 = [percentile(r["uploads_ms"], 50) for r in results]
    h99 = [percentile(r["health_ms"], 99) for r in results]
    h50 = [percentile(r["health_ms"], 50) for r in results]
    what = f"POST sources, {FILES} x 1 MB, {CLIENTS} clients"
    return [
        # Information, not judged: the 150 ms target was retired as infeasible on 2 CPUs (the
        # README's Benchmarks section has the arithmetic).
        Row(TITLE, f"{what}, p99", "ms", p99, h99, "GET /healthz", "(retired; information)"),
        Row(TITLE, f"{what}, p50", "ms", p50, h50, "GET /healthz"),
        Row(TITLE, "upload throughput", "MB/s", [r["mb_per_s"] for r in results]),
        Row(
            TITLE,
            f"POST sources, {FILES} x 1 MB, 1 client, p50",
            "ms",
            [percentile(r["uploads_ms"], 50) for r in alone],
            [percentile(r["health_ms"], 50) for r in alone],
            "GET /healthz",
        ),
    ]
