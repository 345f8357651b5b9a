"""``python -m bench.eval [--only NAME ...] [--limit N]`` (``make eval``): quality on SciFact.

Each evaluation is a module of this package with ``run(args) -> str`` returning a Markdown
section; the sections are printed and saved to ``bench/results/eval-<time>.md``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

EVALUATIONS = ["search", "ask", "report"]  # in the order they run; each is bench/eval/<name>.py
RESULTS = Path(__file__).resolve().parents[1] / "results"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eval", description=__doc__)
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help=", ".join(EVALUATIONS))
    parser.add_argument("--limit", type=int, help="only the first N abstracts (a smoke run)")
    args = parser.parse_args(argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()] or EVALUATIONS
    unknown = set(names) - set(EVALUATIONS)
    if unknown:
        parser.error(f"unknown evaluation(s): {', '.join(sorted(unknown))}")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.eval.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    sections = [f"# Quire evaluation {time.strftime('%Y-%m-%d %H:%M')}\n"]
    for name in names:
        started = time.monotonic()
        module = importlib.import_module(f"bench.eval.{name}")
        section = module.run(args)
        sections.append(f"{section}\n\n({name}: {time.monotonic() - started:.0f} s)\n")
        print(sections[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"eval-{time.strftime('%Y%m%d-%H%M%S')}.md"
    out.write_text("\n".join(sections), encoding="utf-8")
    print(f"saved {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
