"""The scenarios, in the order they run. Each module has NAME, TITLE and run(ctx) -> list[Row]."""

from types import ModuleType

from bench.scenarios import (
    ask,
    bulk,
    fairness,
    generation,
    ingestion,
    jobs,
    live,
    media,
    memory,
    search,
    upload,
    web_handler,
)

ORDER: list[ModuleType] = [
    jobs,
    ingestion,
    memory,
    upload,
    search,
    ask,
    live,
    generation,
    bulk,
    fairness,
    media,
    web_handler,
]
ALIASES = {
    "job-overhead": "jobs",
    "job_overhead": "jobs",
    "upload-api": "upload",
    "live-progress": "live",
    "sse": "live",
    "reports": "generation",
    "podcasts": "generation",
    "podcast": "generation",
    "fair": "fairness",
    "questions": "ask",
    "transcription": "media",
    "web-handler": "web_handler",
    "asgi": "web_handler",
}


def select(names: list[str]) -> list[ModuleType]:
    if not names:
        return list(ORDER)
    wanted = {ALIASES.get(n, n) for n in names}
    unknown = wanted - {m.NAME for m in ORDER}
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from {names_help()}")
    return [m for m in ORDER if m.NAME in wanted]


def names_help() -> str:
    return ", ".join(m.NAME for m in ORDER)
