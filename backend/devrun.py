"""`make run`: prepare the database and start every Procfile process with honcho.

Runs inside the project's venv with REDIS_URL already answering (backend.embedded_redis).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def procfile_processes() -> list[str]:
    names = []
    for line in (ROOT / "Procfile").read_text().splitlines():
        name = line.split(":", 1)[0].strip()
        if name and not name.startswith("#") and name != "release":
            names.append(name)
    return names


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings.local")
    # Every process, including the ones honcho starts, must find the venv's commands.
    venv_bin = str(Path(sys.executable).parent)
    os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    call_command("sync_schedules")
    user_model = get_user_model()
    if not user_model.objects.filter(username="admin").exists():
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "admin@localhost", password)
        print(f"[quire] created development superuser  admin / {password}  (shown once)")
    else:
        print("[quire] development superuser: admin (reset with: .venv/bin/python manage.py changepassword admin)")

    port = os.environ.get("PORT", "8000")
    base = f"http://127.0.0.1:{port}"
    print(
        "[quire] starting web, 5 workers and the scheduler; Ctrl-C stops them all\n"
        f"        API        {base}/api/v1/\n"
        f"        API docs   {base}/api/docs/\n"
        f"        admin      {base}/admin/\n"
        f"        jobs       {base}/django-rq/\n"
        f"        health     {base}/healthz",
        flush=True,
    )
    honcho = [os.path.join(venv_bin, "honcho"), "-d", str(ROOT), "-f", str(ROOT / "Procfile")]
    os.execv(honcho[0], [*honcho, "start", "-p", port, *procfile_processes()])


if __name__ == "__main__":
    main()
