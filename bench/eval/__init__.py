"""Quality evaluations on public data (``make eval``), not tests and not speed benchmarks."""
