"""Job kinds used only by the benchmarks (loaded by the bench's workers through bench.apps)."""

import time

from backend.runtime import job, progress

# A forking queue whose worker preloads nothing: what is measured is the job runtime itself.
NOOP_QUEUE = "reports"
INLINE_QUEUE = "default"
PROGRESS_PREFIX = "bench-t="


@job("bench.noop", queue=NOOP_QUEUE)
def noop() -> None:
    """Does nothing: the job runtime's own cost (Job row, events, fork) per job."""
    return None


@job("bench.noop_inline", queue=INLINE_QUEUE)
def noop_inline() -> None:
    """The same no-op on the in-process queue (the Procfile's default worker runs short jobs
    without forking): the job runtime's cost without the fork."""
    return None


@job("bench.progress", queue="default", retries=0)
def progress_ticker(*, count: int, interval: float) -> int:
    """Reports progress ``count`` times; each message carries the wall-clock time it was written."""
    for step in range(count):
        time.sleep(interval)
        progress(int(100 * step / count), f"{PROGRESS_PREFIX}{time.time():.6f}")
    return count
