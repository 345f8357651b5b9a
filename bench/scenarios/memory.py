"""Memory: peak RSS of web + all workers (summed over their process trees) during ingestion,
against the embedder loaded alone in a fresh process.

Sampled while the ingestion scenario runs (RSS every half second, PSS every two seconds; the
scenario runs once here if it was not selected). RSS counts a page shared by two processes
(gunicorn's workers and their master, a work-horse and the worker that forked it) twice, so the
sum is an upper bound; PSS divides shared pages among their sharers and is reported beside it.
"The model's memory not multiplied per job" is checked on the ingestion worker's tree (worker +
its work-horse + its scheduler): with the model preloaded and shared copy-on-write it holds one
model copy plus the horse's own arena; a horse that loaded the model again would hold two.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

from bench.context import Context, say
from bench.report import Row
from bench.stack import ROOT, Stack, stack_memory

NAME = "memory"
TITLE = "memory"
MB = 2**20
LIMIT_MB = 2048
INGEST_WORKER = "worker_notebook_processing"


class Sampler(threading.Thread):
    """Samples the memory of the web and worker process trees until stopped: RSS every
    ``interval``, PSS and USS every ``full_every`` samples. Reading PSS walks each process's page
    tables; doing it twice a second took 8% of a core from the jobs being measured (7.2 s of
    CPU during a 90 s ingestion run, against 0.1 s for RSS alone)."""

    def __init__(self, stack: Stack, interval: float = 0.5, full_every: int = 4) -> None:
        super().__init__(daemon=True, name="memory-sampler")
        self.stack = stack
        self.interval = interval
        self.full_every = full_every
        self.halt = threading.Event()
        self.peak: dict[str, Any] = {"rss": 0, "processes": []}
        self.peak_pss = 0
        self.peak_ingest_tree_pss = 0
        self.peak_horse: dict[str, Any] = {}
        self.last: dict[str, Any] = {}
        self.count = 0
        self.cpu = 0.0  # seconds of CPU the sampling took

    def sample(self, *, full: bool = True) -> None:
        start = time.thread_time()
        snapshot = stack_memory(self.stack.roles("web", "worker"), full=full)
        self.cpu += time.thread_time() - start
        self.count += 1
        if snapshot["rss"] > self.peak["rss"]:
            self.peak = snapshot
        if not full:
            return
        self.last = snapshot
        self.peak_pss = max(self.peak_pss, snapshot["pss"])
        tree = [p for p in snapshot["processes"] if p["proc"] == INGEST_WORKER]
        self.peak_ingest_tree_pss = max(self.peak_ingest_tree_pss, sum(p["pss"] for p in tree))
        for p in tree:
            if p["role"] == "child" and "rqscheduler" not in p["cmd"] and p["uss"] > self.peak_horse.get("uss", 0):
                self.peak_horse = p

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            try:
                self.sample(full=self.count % self.full_every == 0)
            except Exception as exc:  # a process ending mid-sample; keep sampling
                say(f"  memory sample skipped: {exc}")

    def __enter__(self) -> Sampler:
        self.sample()
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.halt.set()
        self.join(timeout=10)
        self.sample()

    def summary(self) -> dict[str, Any]:
        return {
            "samples": self.count,
            "cpu_seconds": self.cpu,
            "peak_rss": self.peak["rss"],
            "peak_pss": self.peak_pss,
            "peak_ingest_tree_pss": self.peak_ingest_tree_pss,
            "peak_horse": self.peak_horse,
            "after_rss": self.last.get("rss", 0),
            "after_pss": self.last.get("pss", 0),
            "at_peak": [
                {k: (round(v / MB, 1) if k in ("rss", "pss", "uss") else v) for k, v in p.items()}
                for p in self.peak["processes"]
            ],
        }


def embedder_alone(texts: list[str]) -> dict[str, int]:
    """Memory of a fresh process that loads the embedder and embeds ``texts`` in calls of 32."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.embedder_alone"],
        input=json.dumps(texts).encode(),
        capture_output=True,
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    figures: dict[str, int] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return figures


def run(ctx: Context) -> list[Row]:
    if "memory_samples" not in ctx.shared:
        from bench.scenarios import ingestion

        say("  the ingestion scenario did not run: running it once for its memory")
        saved = ctx.runs_override
        ctx.runs_override = 1
        try:
            ingestion.run(ctx)
        finally:
            ctx.runs_override = saved
    samples: list[dict[str, Any]] = ctx.shared["memory_samples"]
    texts = [t for doc in ctx.shared["chunk_texts"] for t in doc][:64]
    alone = [embedder_alone(texts) for _ in samples]
    base = [a["rss_after"] / MB for a in alone]
    horse = samples[-1]["peak_horse"]
    ctx.details[NAME] = {"runs": samples, "embedder_alone": alone}
    if horse:
        ctx.notes.append(
            f"memory: largest ingestion work-horse: RSS {horse['rss'] / MB:.0f} MB, of which private (USS) "
            f"{horse['uss'] / MB:.0f} MB; the embedder alone takes {base[-1]:.0f} MB "
            f"(loaded {alone[-1]['rss_loaded'] / MB:.0f} MB, before loading {alone[-1]['rss_start'] / MB:.0f} MB)"
        )
    return [
        Row(
            TITLE,
            "peak RSS, web + workers (sum of process trees)",
            "MB",
            [s["peak_rss"] / MB for s in samples],
            base,
            "embedder alone",
            f"≤ {LIMIT_MB} MB",
            lambda v, b: v <= LIMIT_MB,
        ),
        Row(
            TITLE,
            "peak PSS, web + workers",
            "MB",
            [s["peak_pss"] / MB for s in samples],
            base,
            "embedder alone",
        ),
        Row(
            TITLE,
            "peak PSS, ingestion worker + work-horse",
            "MB",
            [s["peak_ingest_tree_pss"] / MB for s in samples],
            base,
            "embedder alone",
            "model not per job: ≤ 1.5x alone",
            lambda v, b: b is not None and v <= 1.5 * b,
        ),
    ]
