"""Figures, the one results table, the machine description, and the files in bench/results/."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

TIMES = "\u00d7"
DASH = "\u2013"
RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def fmt(value: float | None) -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


@dataclass
class Row:
    """One line of the table: a figure measured once per run, and its baseline from the same runs."""

    scenario: str
    measure: str
    unit: str
    values: list[float]
    baseline: list[float] = field(default_factory=list)
    baseline_label: str = ""
    target: str = ""
    # Decides "met" from (median, baseline median); None for an informational row.
    check: Callable[[float, float | None], bool] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline) if self.baseline else None

    @property
    def ratio(self) -> float | None:
        base = self.baseline_median
        if not base or not self.values:
            return None
        return self.median / base

    @property
    def met(self) -> bool | None:
        if self.check is None or not self.values:
            return None
        return bool(self.check(self.median, self.baseline_median))

    def cells(self) -> list[str]:
        lo, hi = (min(self.values), max(self.values)) if self.values else (None, None)
        base = self.baseline_median
        met = {None: "—", True: "yes", False: "**NO**"}[self.met]
        return [
            self.scenario,
            f"{self.measure} ({self.unit})",
            str(len(self.values)),
            fmt(self.median),
            f"{fmt(lo)}{DASH}{fmt(hi)}",
            f"{fmt(base)} {self.baseline_label}".strip() if base is not None else "—",
            f"{self.ratio:.2f}{TIMES}" if self.ratio is not None else "—",
            self.target or "—",
            met,
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "measure": self.measure,
            "unit": self.unit,
            "values": self.values,
            "median": self.median,
            "baseline": self.baseline,
            "baseline_label": self.baseline_label,
            "baseline_median": self.baseline_median,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
        }


HEADER = ["scenario", "measure", "runs", "median", f"min{DASH}max", "baseline (median)", "ratio", "target", "met"]


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "| " + " | ".join("---" for _ in HEADER) + " |",
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str | None:
    """The checked-out commit, read from .git (no git command is run)."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    except OSError:
        return None
    return None


def machine() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_total_mb": round(psutil.virtual_memory().total / 2**20),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": _commit(),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class ForeignCpu:
    """CPU used meanwhile by processes that are neither the bench nor its descendants (other work
    on the machine, e.g. a test suite), so a result measured on a busy machine says so. Redis is
    counted apart: it serves the bench too. Processes that start and end between two snapshots
    are missed."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.steal = float(getattr(psutil.cpu_times(), "steal", 0.0))
        self.start = self._snapshot()

    @staticmethod
    def _snapshot() -> dict[tuple[int, float], tuple[float, str]]:
        me = psutil.Process()
        ours = {me.pid, *(c.pid for c in me.children(recursive=True))}
        snapshot = {}
        for proc in psutil.process_iter(["name", "cmdline", "cpu_times", "create_time"]):
            times = proc.info["cpu_times"]
            if proc.pid in ours or times is None:
                continue
            name = " ".join((proc.info["cmdline"] or [proc.info["name"] or "?"])[:4])[:80]
            snapshot[(proc.pid, proc.info["create_time"] or 0.0)] = (times.user + times.system, name)
        return snapshot

    def finish(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.began
        used: dict[str, float] = {}
        for key, (cpu, name) in self._snapshot().items():
            delta = cpu - self.start.get(key, (0.0, ""))[0]
            if delta > 0.01:
                label = "redis-server" if "redis-server" in name else name
                used[label] = used.get(label, 0.0) + delta
        redis_seconds = used.pop("redis-server", 0.0)
        other = sum(used.values())
        top = sorted(used.items(), key=lambda kv: -kv[1])[:3]
        steal = float(getattr(psutil.cpu_times(), "steal", 0.0)) - self.steal
        return {
            "seconds": round(elapsed, 1),
            # Time the hypervisor gave this machine's CPUs to someone else.
            "steal_share": round(steal / (elapsed * (os.cpu_count() or 1)), 3) if elapsed else 0.0,
            "other_cpu_seconds": round(other, 1),
            "other_share": round(other / (elapsed * (os.cpu_count() or 1)), 3) if elapsed else 0.0,
            "redis_cpu_seconds": round(redis_seconds, 1),
            "top": [(name, round(seconds, 1)) for name, seconds in top],
        }


def write(
    rows: Sequence[Row],
    *,
    info: dict[str, Any],
    notes: Sequence[str],
    details: dict[str, Any],
) -> tuple[str, Path, Path]:
    """The markdown report (table, machine, notes) and the JSON; returns (markdown, md path, json path)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    m = info["machine"]
    header = (
        f"# Quire benchmarks, {m['date']}{' (quick)' if info['quick'] else ''}\n\n"
        f"{m['cpu_count']} {TIMES} {m['cpu_model']}, {m['memory_total_mb']:,} MB RAM, Python {m['python']}, "
        f"{info.get('database', '?')}, Redis {info.get('redis_version', '?')}; "
        f"load average at start {info['load_start']}, at end {info['load_end']}; "
        f"total {info['elapsed_seconds']:.0f} s.\n"
    )
    body = table(rows)
    markdown = header + "\n" + body + "\n"
    if notes:
        markdown += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    md_path = RESULTS / f"{stamp}.md"
    json_path = RESULTS / f"{stamp}.json"
    md_path.write_text(markdown)
    (RESULTS / "latest.md").write_text(markdown)
    payload = {**info, "rows": [r.as_json() for r in rows], "notes": list(notes), "details": details}
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return markdown, md_path, json_path
