from typing import Any

from django.core.management.base import BaseCommand

from backend import schedules


class Command(BaseCommand):
    help = "Register the periodic jobs of settings.QUIRE_SCHEDULES with rq-scheduler (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        result = schedules.sync()
        for key in ("added", "kept", "removed"):
            self.stdout.write(f"{key}: {', '.join(result[key]) or '-'}")
