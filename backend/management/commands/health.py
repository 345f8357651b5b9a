import json
import sys
from typing import Any

from django.core.management.base import BaseCommand

from backend.health import health_report


class Command(BaseCommand):
    help = "Print the health report of /healthz; exit 1 when unhealthy (for container probes)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="print the raw JSON report")

    def handle(self, *args: Any, **options: Any) -> None:
        report = health_report()
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.stdout.write(f"database  {'ok' if report['database']['ok'] else 'DOWN'}")
            self.stdout.write(f"redis     {'ok' if report['redis']['ok'] else 'DOWN'}")
            self.stdout.write(f"scheduler {'ok' if report['scheduler'].get('ok') else 'DOWN'}")
            for name, q in report["queues"].items():
                age = q["oldest_age_seconds"]
                self.stdout.write(
                    f"queue {name:<20} workers={q['workers']} depth={q['depth']} waiting={q['waiting']} "
                    f"backlog={q['backlog']} "
                    f"oldest={'-' if age is None else f'{age:.0f}s'} {'ok' if q['ok'] else 'NO WORKER'}"
                )
            for problem in report["problems"]:
                self.stdout.write(self.style.ERROR(f"problem: {problem}"))
        sys.exit(0 if report["ok"] else 1)
