"""Job overhead: no-op jobs through Quire's job runtime against the same no-op through bare RQ.

Quire: ``bench.noop`` (bench/jobs.py) on a forking queue, each enqueue writing a Job row and
pushing to RQ after commit, each run writing the running/succeeded transitions and their events,
drained by two Procfile-style workers (``manage.py rqworker <queue> --worker-class ForkingWorker
--serializer JSON --with-scheduler``). Bare RQ: ``rq.Queue.enqueue(bench.bare.noop)`` drained by
two ``rqworker`` processes with RQ's defaults (pickle, rq.Worker, which forks too).

Throughput: N jobs enqueued up front, from the first enqueue to the last job's end (Quire: the
Job rows' ``finished_at``; RQ: the jobs' ``ended_at``). Latency: jobs enqueued at 10 per second,
from just before the enqueue call to the job's start (``started_at`` of the row / the RQ job).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.context import Context, say, wait_for
from bench.report import Row, percentile
from bench.stack import Proc, cpu_seconds

NAME = "jobs"
TITLE = "job overhead"
BARE_QUEUE = "bench_bare"
RATE = 10.0  # jobs per second for the latency measurement


def _ts(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


class Quire:
    def __init__(self, user: Any, notebook_id: str, kind: Any = None) -> None:
        from bench.jobs import noop

        self.kind = kind or noop
        self.user = user
        self.notebook_id = notebook_id

    def enqueue(self) -> str:
        # With a notebook, as a real job has one: every change is also published as an event.
        return str(self.kind.enqueue({}, owner=self.user, notebook_id=self.notebook_id).id)

    def wait(self, ids: list[str], timeout: float) -> list[Any]:
        from backend.models import Job

        # A cheap poll (one COUNT) while the workers drain; the rows are read once at the end.
        def done() -> bool:
            return Job.objects.filter(id__in=ids, status__in=Job.TERMINAL).count() == len(ids)

        wait_for(done, timeout=timeout, interval=0.1, what="Quire no-op jobs")
        jobs = list(Job.objects.filter(id__in=ids).only("id", "status", "started_at", "finished_at"))
        failed = [j for j in jobs if j.status != Job.Status.SUCCEEDED]
        if failed:
            say(f"  {len(failed)} Quire no-op jobs did not succeed (e.g. {failed[0].status})")
        return jobs

    def finished(self, job: Any) -> float:
        return _ts(job.finished_at)

    def started(self, job: Any) -> float:
        return _ts(job.started_at)


class Bare:
    def __init__(self, redis_url: str) -> None:
        from redis import Redis
        from rq import Queue

        self.conn = Redis.from_url(redis_url)
        self.queue = Queue(BARE_QUEUE, connection=self.conn)

    def enqueue(self) -> str:
        from bench.bare import noop

        return str(self.queue.enqueue(noop).id)

    def wait(self, ids: list[str], timeout: float) -> list[Any]:
        from rq.job import Job, JobStatus

        # A cheap poll (the status field of the jobs not yet seen ending) while the workers drain;
        # the jobs are read once at the end.
        pending = list(ids)

        def done() -> bool:
            nonlocal pending
            pipe = self.conn.pipeline(transaction=False)
            for job_id in pending:
                pipe.hget(f"rq:job:{job_id}", "status")
            ended = (JobStatus.FINISHED.value.encode(), JobStatus.FAILED.value.encode())
            pending = [job_id for job_id, status in zip(pending, pipe.execute(), strict=True) if status not in ended]
            return not pending

        wait_for(done, timeout=timeout, interval=0.1, what="bare RQ no-op jobs")
        jobs = [j for j in Job.fetch_many(ids, connection=self.conn) if j is not None]
        failed = [j for j in jobs if j.get_status(refresh=False) != JobStatus.FINISHED]
        if failed:
            say(f"  {len(failed)} bare RQ jobs did not finish")
        return jobs

    def finished(self, job: Any) -> float:
        return _ts(job.ended_at)

    def started(self, job: Any) -> float:
        return _ts(job.started_at)


def page_faults(workers: list[Proc]) -> int:
    """Minor page faults so far of these worker processes and the work-horses they have reaped
    (/proc/PID/stat minflt + cminflt): after a fork, the first write to each shared page faults
    and copies it, in the horse and in the worker alike."""
    total = 0
    for worker in workers:
        try:
            fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[7]) + int(fields[8])  # fields 10 and 11 of proc(5), after pid and comm
    return total


def redis_cpu(conn: Any) -> float:
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def throughput(side: Quire | Bare, n: int, workers: list[Proc], conn: Any) -> dict[str, float]:
    """Jobs/s drained, ms per enqueue call, and CPU ms per job (enqueuing process, workers, Redis)."""
    cpu_workers, cpu_redis = cpu_seconds(workers), redis_cpu(conn)
    faults, kernel = page_faults(workers), cpu_seconds(workers, kernel_only=True)
    t0 = time.time()
    cpu_enqueue = time.process_time()
    ids = [side.enqueue() for _ in range(n)]
    cpu_enqueue = time.process_time() - cpu_enqueue
    enqueue_ms = (time.time() - t0) * 1000 / n
    jobs = side.wait(ids, timeout=max(120.0, n))
    end = max(side.finished(j) for j in jobs)
    return {
        "rate": n / (end - t0),
        "enqueue_ms": enqueue_ms,
        "cpu_enqueue_ms": cpu_enqueue * 1000 / n,
        "cpu_workers_ms": (cpu_seconds(workers) - cpu_workers) * 1000 / n,
        "cpu_redis_ms": (redis_cpu(conn) - cpu_redis) * 1000 / n,
        "faults": (page_faults(workers) - faults) / n,
        "cpu_kernel_ms": (cpu_seconds(workers, kernel_only=True) - kernel) * 1000 / n,
    }


def latency(side: Quire | Bare, m: int) -> tuple[float, float]:
    """(p50, p99) in ms from just before the enqueue call to the job's start, at RATE jobs/s."""
    sent: dict[str, float] = {}
    start = time.monotonic()
    for i in range(m):
        pause = start + i / RATE - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        t = time.time()
        sent[side.enqueue()] = t
    jobs = side.wait(list(sent), timeout=120)
    waits = [(side.started(j) - sent[j.id]) * 1000 for j in jobs]
    return percentile(waits, 50), percentile(waits, 99)


def run(ctx: Context) -> list[Row]:
    from bench.jobs import INLINE_QUEUE, NOOP_QUEUE, noop_inline

    n = ctx.size(500, 200)
    m = ctx.size(100, 40)
    runs = ctx.runs(3)
    stack = ctx.stack
    # The Procfile runs one worker per queue; the comparison uses two on each side.
    extra = f"worker_{NOOP_QUEUE}_2"
    quire_workers = [stack.start_worker(NOOP_QUEUE), stack.start_worker(NOOP_QUEUE, name=extra)]
    extra_inline = f"worker_{INLINE_QUEUE}_2"
    inline_workers = [stack.start_worker(INLINE_QUEUE), stack.start_worker(INLINE_QUEUE, name=extra_inline)]
    bare_names = ["rqworker_bare_1", "rqworker_bare_2"]
    bare_workers = [stack.start_bare_worker(BARE_QUEUE, ctx.redis_url, name=name) for name in bare_names]
    workers_of = {"q": quire_workers, "b": bare_workers, "i": inline_workers}

    quire = Quire(ctx.user(), ctx.new_notebook("bench: job overhead"))
    inline = Quire(quire.user, quire.notebook_id, kind=noop_inline)
    bare = Bare(ctx.redis_url)
    figures: dict[str, list[float]] = {
        f"{side}_{k}": []
        for side in "qb"
        for k in ("tp", "enq", "p50", "p99", "cpu_enqueue", "cpu_workers", "cpu_redis", "faults", "cpu_kernel")
    }
    figures.update({"i_tp": [], "i_b_tp": []})
    try:
        # Warm both sides up (imports, first fork, connections) before measuring.
        throughput(quire, 10, quire_workers, bare.conn)
        throughput(bare, 10, bare_workers, bare.conn)
        throughput(inline, 10, inline_workers, bare.conn)
        for i in range(runs):
            # Alternate which side goes first, so a drift in machine load hits both alike.
            order: list[tuple[str, Quire | Bare]] = [("q", quire), ("b", bare)]
            if i % 2:
                order.reverse()
            for key, side in order:
                measured = throughput(side, n, workers_of[key], bare.conn)
                figures[f"{key}_tp"].append(measured["rate"])
                figures[f"{key}_enq"].append(measured["enqueue_ms"])
                for part in ("cpu_enqueue", "cpu_workers", "cpu_redis", "cpu_kernel"):
                    figures[f"{key}_{part}"].append(measured[f"{part}_ms"])
                figures[f"{key}_faults"].append(measured["faults"])
            # In-process workers against a bare RQ run next to it in time.
            figures["i_tp"].append(throughput(inline, n, inline_workers, bare.conn)["rate"])
            figures["i_b_tp"].append(throughput(bare, n, bare_workers, bare.conn)["rate"])
            for key, side in order:
                p50, p99 = latency(side, m)
                figures[f"{key}_p50"].append(p50)
                figures[f"{key}_p99"].append(p99)
            say(
                f"  run {i + 1}/{runs}: throughput Quire {figures['q_tp'][-1]:.0f}/s, bare RQ "
                f"{figures['b_tp'][-1]:.0f}/s; start latency p50 Quire {figures['q_p50'][-1]:.0f} ms, "
                f"bare {figures['b_p50'][-1]:.0f} ms"
            )
    finally:
        for name in [extra, extra_inline, *bare_names]:
            stack.stop(name)

    ctx.details[NAME] = {"jobs_per_throughput_run": n, "jobs_per_latency_run": m, "rate": RATE, **figures}

    def cpu(key: str) -> str:
        parts = [statistics.median(figures[f"{key}_{p}"]) for p in ("cpu_enqueue", "cpu_workers", "cpu_redis")]
        return f"{sum(parts):.1f} ms (enqueuing {parts[0]:.1f} + workers {parts[1]:.1f} + Redis {parts[2]:.1f})"

    ctx.notes.append(f"job overhead: CPU per no-op job: Quire {cpu('q')}; bare RQ {cpu('b')}")

    def kernel(key: str) -> str:
        faults, ms = statistics.median(figures[f"{key}_faults"]), statistics.median(figures[f"{key}_cpu_kernel"])
        return f"{faults:,.0f} page faults and {ms:.1f} ms of kernel CPU"

    ctx.notes.append(
        f"job overhead: per no-op job on the forking workers, Quire {kernel('q')}; bare RQ {kernel('b')} "
        "(fork, copy-on-write faults, exit)"
    )
    base = "bare RQ"
    return [
        # Information, not judged: the 0.9x target was retired as infeasible on 2 CPUs with a
        # work-horse per job (the README's Benchmarks section has the arithmetic).
        Row(TITLE, f"throughput, 2 forking workers, {n} jobs", "jobs/s", figures["q_tp"], figures["b_tp"], base,
            "(retired; information)"),
        Row(TITLE, f"throughput, 2 in-process workers (Procfile's default queue), {n} jobs", "jobs/s",
            figures["i_tp"], figures["i_b_tp"], base, "≥ 0.9x bare RQ", lambda v, b: b is not None and v >= 0.9 * b),
        Row(TITLE, f"enqueue→running p50 at {RATE:.0f} jobs/s", "ms", figures["q_p50"], figures["b_p50"], base,
            "≤ 50 ms", lambda v, b: v <= 50),
        Row(TITLE, f"enqueue→running p99 at {RATE:.0f} jobs/s", "ms", figures["q_p99"], figures["b_p99"], base,
            "≤ 200 ms", lambda v, b: v <= 200),
        Row(TITLE, "enqueue call", "ms/job", figures["q_enq"], figures["b_enq"], base),
    ]  # fmt: skip
