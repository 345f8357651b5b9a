"""Periodic jobs: the table is settings.QUIRE_SCHEDULES, registered by `manage.py sync_schedules`.

Each schedule is an rq-scheduler cron entry with a stable id that runs ``fire(name)``; fire
enqueues the schedule's job kind under an id derived from the minute it fires for, so a
schedule fired twice for the same minute (a restarted scheduler, two schedulers) runs once.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from backend.runtime import get_kind
from backend.runtime import rq as rq_adapter

logger = logging.getLogger(__name__)

ID_PREFIX = "quire-schedule-"


def schedule_id(name: str) -> str:
    return f"{ID_PREFIX}{name}"


def sync() -> dict[str, list[str]]:
    """Make rq-scheduler hold exactly the table's schedules. Idempotent."""
    scheduler = rq_adapter.scheduler()
    wanted = settings.QUIRE_SCHEDULES
    for name, entry in wanted.items():
        if get_kind(entry["kind"]) is None:
            raise ValueError(f"Schedule {name!r} names unknown job kind {entry['kind']!r}")
    existing = {job.id: job for job in scheduler.get_jobs() if job.id.startswith(ID_PREFIX)}
    added: list[str] = []
    kept: list[str] = []
    removed: list[str] = []
    for job_id, job in existing.items():
        name = job_id.removeprefix(ID_PREFIX)
        wanted_entry = wanted.get(name)
        if wanted_entry is None or job.meta.get("cron_string") != wanted_entry["cron"]:
            scheduler.cancel(job)
            job.delete()
            if wanted_entry is None:
                removed.append(name)
    for name, entry in wanted.items():
        if schedule_id(name) in existing and existing[schedule_id(name)].meta.get("cron_string") == entry["cron"]:
            kept.append(name)
            continue
        scheduler.cron(
            entry["cron"],
            func="backend.schedules.fire",
            kwargs={"name": name},
            id=schedule_id(name),
            queue_name="maintenance",
            use_local_timezone=False,
            timeout=60,
            description=f"schedule {name}: {entry['kind']}",
        )
        added.append(name)
    return {"added": added, "kept": kept, "removed": removed}


def fire(name: str) -> str | None:
    """Run by the maintenance worker when a schedule is due: enqueue its tracked job."""
    entry: dict[str, Any] | None = settings.QUIRE_SCHEDULES.get(name)
    if entry is None:
        logger.warning("Schedule %s is no longer in the table; ignoring", name)
        return None
    kind = get_kind(entry["kind"])
    if kind is None:
        logger.error("Schedule %s names unknown job kind %s", name, entry["kind"])
        return None
    slot = timezone.now().strftime("%Y%m%d%H%M")
    job = kind.enqueue(entry.get("kwargs", {}), job_id=f"periodic-{name}-{slot}")
    return job.id
