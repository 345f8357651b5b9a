"""`make run`: the Procfile's processes under supervisord survive a crash and stop on Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from backend.devrun import ROOT, procfile_entries, supervisord_config
from backend.models import Job
from backend.runtime import get_kind
from backend.runtime import rq as rq_adapter
from tests.helpers import wait_for
from tests.processes import free_port


def test_the_config_runs_every_procfile_process_but_release_with_restarts(tmp_path: Path) -> None:
    entries = procfile_entries()
    names = [name for name, _ in entries]
    assert (
        names
        == [line.split(":", 1)[0] for line in (ROOT / "Procfile").read_text().splitlines() if line and ":" in line][1:]
    )  # release is the first line, run by devrun itself
    config = supervisord_config(entries=entries, run_dir=tmp_path)
    for name in names:
        assert f"[program:{name}]" in config
    assert config.count("autorestart=true") == len(names)
    # The shell line keeps the Procfile's ${PORT:-8000} for sh to expand.
    assert "${PORT:-8000}" in config


def _supervised_worker_pid(queue: str, exclude: set[int]) -> int | None:
    pids = [w.pid for w in rq_adapter.live_workers(queue) if w.pid not in exclude]
    return pids[0] if pids else None


def test_a_killed_worker_is_back_within_seconds_and_ctrl_c_leaves_no_process(
    process_env: dict[str, str], _workers: Any, transactional_db: Any, redis_clean: Any, tmp_path: Path
) -> None:
    # Only the supervised processes may serve the queues here.
    _workers.stop_all()
    before = {w.pid for w in rq_adapter.live_workers("notebook_processing")}
    log_path = tmp_path / "run.log"
    env = {**process_env, "PORT": str(free_port()), "WEB_CONCURRENCY": "1", "QUIRE_DATA_DIR": str(tmp_path)}
    with open(log_path, "wb") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "backend.devrun"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, as a terminal's foreground job
        )
    try:
        first = wait_for(
            lambda: _supervised_worker_pid("notebook_processing", before), timeout=90, message="the supervised worker"
        )
        os.kill(first, signal.SIGKILL)
        killed_at = time.monotonic()
        # Enqueued once the dead worker is reaped (a job handed to its still-open blocking pop
        # would sit in RQ's intermediate list until the reconciler), before the new one is up.
        wait_for(lambda: "exited: worker_notebook_processing" in log_path.read_text(), message="the exit line")
        job = get_kind("tests.echo_notebook_processing").enqueue({"value": "after the crash"})  # type: ignore[union-attr]
        second = wait_for(
            lambda: _supervised_worker_pid("notebook_processing", before | {first}),
            timeout=60,
            message="the restarted worker",
        )
        back_in = time.monotonic() - killed_at
        done = wait_for(
            lambda: Job.objects.filter(id=job.id, status=Job.Status.SUCCEEDED).first(), timeout=60, message="the job"
        )
        assert done.result["value"] == "after the crash"
        assert done.result["queue"] == "notebook_processing"
        assert second != first
        assert back_in < 30, back_in
        output = log_path.read_text()
        assert "exited: worker_notebook_processing (terminated by SIGKILL; not expected)" in output
        assert output.count("spawned: 'worker_notebook_processing'") >= 2
        print(f"worker back {back_in:.1f}s after SIGKILL")

        # Everything the supervisor started, web workers and forked children included.
        tree = [run.pid, *(p.pid for p in psutil.Process(run.pid).children(recursive=True))]
        assert len(tree) >= 8  # supervisord, web (and its worker), 5 workers, the scheduler
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        assert run.wait(timeout=60) == 0
    finally:
        if run.poll() is None:
            # A failed test must not leave the supervised processes (each in its own group) behind.
            for child in psutil.Process(run.pid).children(recursive=True):
                child.kill()
            run.kill()
            run.wait()

    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    left = [pid for pid in tree if alive(pid)]
    assert left == [], log_path.read_text()[-3000:]
    output = log_path.read_text()
    for name, _ in procfile_entries():
        assert f"stopped: {name}" in output, output[-3000:]
