"""``python -m bench [--quick] [--only NAME ...] [--runs N] [--keep-data]`` (``make bench``)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
OTHER_LOAD_NOTE = 0.05  # note a scenario during which other processes used more than this share of the CPUs


def parse(argv: list[str]) -> argparse.Namespace:
    from bench.scenarios import names_help

    parser = argparse.ArgumentParser(prog="python -m bench", description="Quire's benchmarks (issue #8).")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer runs (a few minutes)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only this scenario (repeatable, or comma-separated): {names_help()}",
    )
    parser.add_argument("--runs", type=int, help="runs per scenario (default 3)")
    parser.add_argument(
        "--keep-data", action="store_true", help="keep var/bench.sqlite3 and var/bench-media afterwards"
    )
    args = parser.parse_args(argv)
    args.only = [name.strip() for item in args.only for name in item.split(",") if name.strip()]
    return args


def _wipe_data() -> None:
    for path in VAR.glob("bench.sqlite3*"):
        path.unlink()
    shutil.rmtree(VAR / "bench-media", ignore_errors=True)


def _points_at(value: Any, needle: str, path: str) -> str | None:
    if isinstance(value, str):
        return path if value == needle else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _points_at(item, needle, f"{path}[{key!r}]")
        if found:
            return found
    return None


def _check_isolation(settings: Any, dev_redis_url: str) -> None:
    """Refuse to run when a setting still points at the dev Redis database (a setting added to
    backend/settings after bench/settings.py was written)."""
    if not settings.REDIS_URL.rstrip("/").endswith(f"/{settings.BENCH_REDIS_DB}") or settings.BENCH_REDIS_DB == 0:
        raise SystemExit(f"refusing to run on Redis {settings.REDIS_URL}: the bench needs a database of its own")
    if dev_redis_url == settings.REDIS_URL:
        return
    for name in dir(settings):
        if name.isupper():
            found = _points_at(getattr(settings, name), dev_redis_url, name)
            if found:
                raise SystemExit(
                    f"refusing to run: {found} points at the dev Redis {dev_redis_url}; see bench/settings.py"
                )


def _terminate(signum: int, frame: Any) -> NoReturn:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    args = parse(argv)
    # Always the bench settings, whatever the shell exported: never the dev database or Redis db.
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    os.environ.pop("DATABASE_URL", None)
    # Ctrl-C stops everything cleanly, even when started from a shell that ignores SIGINT for
    # background jobs; SIGTERM and SIGHUP too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    from bench import scenarios

    selected = scenarios.select(args.only)
    VAR.mkdir(exist_ok=True)
    _wipe_data()

    import django

    django.setup()
    import logging

    import redis
    from django.conf import settings
    from django.core.management import call_command

    from bench import report
    from bench.context import Context, say, setup_user
    from bench.stack import Stack

    redis_url = settings.REDIS_URL
    _check_isolation(settings, os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    conn = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        conn.ping()
    except redis.RedisError:
        raise SystemExit(
            f"No Redis answers at {redis_url}. Run `make bench`, which starts an embedded one when needed."
        ) from None

    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.monotonic()
    load_start = report.load_average()
    say(f"{'quick' if args.quick else 'full'} run of: {', '.join(m.NAME for m in selected)}")
    say(f"database {settings.DATABASES['default']['NAME']}, Redis {redis_url}, logs in var/bench-logs/")
    conn.flushdb()
    call_command("migrate", interactive=False, verbosity=0)

    child_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rows: list[report.Row] = []
    with Stack(child_env, say) as stack:
        ctx = Context(quick=args.quick, runs_override=args.runs, stack=stack, redis_url=redis_url)
        try:
            say("starting the Procfile's processes: web, one worker per queue, scheduler")
            stack.start_procfile(settings.RQ_QUEUES)
            setup_user(ctx)
            for module in selected:
                say(f"{module.TITLE}…")
                load = report.load_average()
                foreign = report.ForeignCpu()
                try:
                    rows += module.run(ctx)
                except Exception as exc:
                    traceback.print_exc()
                    ctx.notes.append(f"{module.TITLE}: not measured, {type(exc).__name__}: {exc}".splitlines()[0])
                other = foreign.finish()
                ctx.details.setdefault("load", {})[module.NAME] = {
                    **other,
                    "load_before": load,
                    "load_after": report.load_average(),
                }
                if other["other_share"] > OTHER_LOAD_NOTE:
                    busiest = ", ".join(f"{name} ({seconds} s)" for name, seconds in other["top"])
                    ctx.notes.append(
                        f"{module.TITLE}: other processes used {other['other_share']:.0%} of the CPUs meanwhile "
                        f"(busiest: {busiest}); these figures are pessimistic"
                    )
                if other["steal_share"] > OTHER_LOAD_NOTE:
                    ctx.notes.append(
                        f"{module.TITLE}: the hypervisor took {other['steal_share']:.0%} of the CPU time (steal); "
                        "these figures are pessimistic"
                    )
                say(f"{module.TITLE}: {other['seconds']:.0f} s (others used {other['other_share']:.0%} of the CPUs)")
        finally:
            stack.stop_all()
            conn.flushdb()
            if not args.keep_data:
                from django.db import connections

                connections.close_all()
                _wipe_data()

    info = {
        "quick": args.quick,
        "only": [m.NAME for m in selected],
        "machine": report.machine(),
        "database": f"{settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}",
        "redis_version": conn.info("server").get("redis_version"),
        "load_start": load_start,
        "load_end": report.load_average(),
        "elapsed_seconds": time.monotonic() - started,
    }
    markdown, md_path, json_path = report.write(rows, info=info, notes=ctx.notes, details=ctx.details)
    print(markdown)
    say(f"written: {md_path.relative_to(ROOT)}, {json_path.relative_to(ROOT)}, bench/results/latest.md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("[bench] interrupted: every process it started has been stopped", file=sys.stderr)
        sys.exit(130)
