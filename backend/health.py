"""One health report for /healthz and `manage.py health`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection

from backend.runtime import rq as rq_adapter


def health_report() -> dict[str, Any]:
    report: dict[str, Any] = {"database": _check_database(), "redis": {"ok": False}, "queues": {}, "scheduler": {}}
    try:
        rq_adapter.connection().ping()
        # Which Redis took over is the first question after a failover.
        report["redis"] = {"ok": True, "master": rq_adapter.master_address()}
    except Exception as exc:
        report["redis"] = {"ok": False, "error": type(exc).__name__}
    problems = [] if report["database"]["ok"] else ["database unreachable"]
    if report["redis"]["ok"]:
        for name in settings.RQ_QUEUES:
            stats = rq_adapter.queue_stats(name)
            stats["ok"] = stats["workers"] > 0
            if not stats["ok"]:
                problems.append(f"no worker on queue {name}")
            report["queues"][name] = stats
        alive = rq_adapter.scheduler_alive()
        report["scheduler"] = {"ok": alive}
        if not alive:
            problems.append("scheduler not running")
    else:
        problems.append("redis unreachable")
    report["ok"] = not problems
    report["problems"] = problems
    return report


def _check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
