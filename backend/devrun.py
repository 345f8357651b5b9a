"""`make run`: prepare the database and run every Procfile process under supervisord.

Runs inside the project's venv with REDIS_URL already answering (backend.embedded_redis).

The Procfile stays the one list of processes: its lines are turned into a supervisord
configuration at every start (var/supervisor/supervisord.conf). supervisord, unlike honcho,
keeps the others running when one process dies: it starts the dead one again at once, and a
process that dies again within `startsecs` of its start is retried after 1, 2, 3... seconds
(its backoff) up to `startretries` times, then left FATAL. Each restart is a line in the output
("exited: ... not expected", "spawned: ..."). Ctrl-C stops every process (each in its own
process group, and the group is killed after `stopwaitsecs`) before supervisord exits.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A process that lives this long after starting counts as started; one that dies sooner is
# retried with a growing delay (supervisord's backoff), this many times.
START_SECONDS = 3
START_RETRIES = 10
# Longer than a worker's warm shutdown of a short job; gunicorn's graceful timeout is 10 s.
STOP_WAIT_SECONDS = 20


def procfile_entries(procfile: Path = ROOT / "Procfile") -> list[tuple[str, str]]:
    """(name, command) per Procfile line, without `release` (main() runs its steps itself)."""
    entries = []
    for line in procfile.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or ":" not in line:
            continue
        name, command = (part.strip() for part in line.split(":", 1))
        if name != "release":
            entries.append((name, command))
    return entries


def supervisord_config(*, entries: list[tuple[str, str]], run_dir: Path, directory: Path = ROOT) -> str:
    """A supervisord configuration that runs each entry in the foreground, output to ours."""
    socket = run_dir / "supervisor.sock"
    lines = [
        "[supervisord]",
        "nodaemon=true",
        # supervisord's own lines (spawned/exited/stopped) go to its stdout in the foreground.
        "logfile=/dev/null",
        "logfile_maxbytes=0",
        "loglevel=info",
        f"pidfile={run_dir / 'supervisord.pid'}",
        f"childlogdir={run_dir}",
        "",
        # For `supervisorctl -c var/supervisor/supervisord.conf status|restart NAME`.
        "[unix_http_server]",
        f"file={socket}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{socket}",
    ]
    for name, command in entries:
        # Procfile lines are shell lines (${PORT:-8000}); exec keeps the process's pid the one
        # supervisord signals. '%' is supervisord's interpolation character.
        shell = "exec " + command
        lines += [
            "",
            f"[program:{name}]",
            f"command=/bin/sh -c {shlex.quote(shell).replace('%', '%%')}",
            f"directory={directory}",
            "autostart=true",
            "autorestart=true",
            f"startsecs={START_SECONDS}",
            f"startretries={START_RETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={STOP_WAIT_SECONDS}",
            # A web's or worker's children (gunicorn workers, a work-horse) go with it.
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings.local")
    # Every process, including the ones supervisord starts, must find the venv's commands.
    venv_bin = str(Path(sys.executable).parent)
    os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    import django

    django.setup()
    from django.conf import settings
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

    port = os.environ.setdefault("PORT", "8000")
    base = f"http://127.0.0.1:{port}"
    run_dir = Path(settings.DATA_DIR) / "supervisor"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "supervisord.conf"
    config.write_text(supervisord_config(entries=procfile_entries(), run_dir=run_dir))
    print(
        "[quire] starting web, 5 workers and the scheduler under supervisord; a process that dies\n"
        "        is restarted; Ctrl-C stops them all\n"
        f"        API        {base}/api/v1/\n"
        f"        API docs   {base}/api/docs/\n"
        f"        admin      {base}/admin/\n"
        f"        jobs       {base}/django-rq/\n"
        f"        health     {base}/healthz\n"
        f"        status     {venv_bin}/supervisorctl -c {config} status",
        flush=True,
    )
    supervisord = os.path.join(venv_bin, "supervisord")
    os.execv(supervisord, [supervisord, "-n", "-c", str(config)])


if __name__ == "__main__":
    main()
