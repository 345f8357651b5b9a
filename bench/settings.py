"""Settings for the processes ``python -m bench`` starts: local settings, but never the dev data.

- its own SQLite file (``var/bench.sqlite3``; ``QUIRE_BENCH_DATABASE_URL`` to point elsewhere),
  whatever ``DATABASE_URL`` says;
- its own Redis database (``QUIRE_BENCH_REDIS_DB``, default 14) on the Redis at ``REDIS_URL``;
- its own media folder (``var/bench-media``) and cache (the same Redis database);
- the per-user enqueue throttle raised (``QUIRE_BENCH_THROTTLE_ENQUEUE``, default 100000/min): the
  check still runs on every upload, but the benchmark's clients are never refused;
- ``DEBUG`` off, as in production (Django keeps every SQL query in memory when it is on);
- the ``bench`` app, so ``backend``'s autodiscovery imports ``bench/jobs.py`` in every process.
"""

from urllib.parse import urlsplit, urlunsplit

from backend.settings.base import CACHES, DATA_DIR, REST_FRAMEWORK, RQ_QUEUES, env
from backend.settings.local import *  # noqa: F403

BENCH_REDIS_DB = env.int("QUIRE_BENCH_REDIS_DB", default=14)
BENCH_DATABASE_PATH = DATA_DIR / "bench.sqlite3"

DEBUG = env.bool("QUIRE_BENCH_DEBUG", default=False)
INSTALLED_APPS = [*INSTALLED_APPS, "bench.apps.BenchConfig"]  # noqa: F405

_redis = urlsplit(env.str("REDIS_URL", default="redis://127.0.0.1:6379/0"))
REDIS_URL = urlunsplit(_redis._replace(path=f"/{BENCH_REDIS_DB}"))
REDIS_CONNECTION = {"URL": REDIS_URL}  # the event stream's Redis (the bench runs without Sentinel)
for _config in RQ_QUEUES.values():
    _config["URL"] = REDIS_URL

_DEV_DATABASE = DATABASES["default"]  # noqa: F405
DATABASES = {
    "default": env.db("QUIRE_BENCH_DATABASE_URL", default=f"sqlite:///{BENCH_DATABASE_PATH}"),
}
# Connection reuse as base.py sets it.
DATABASES["default"].update({k: _DEV_DATABASE[k] for k in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS")})
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The same options as base.py gives the default SQLite database.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

MEDIA_ROOT = DATA_DIR / "bench-media"
QUIRE_PODCAST_WORK_DIR = str(DATA_DIR / "bench-podcast-work")

CACHES = {name: {**config, "LOCATION": REDIS_URL} for name, config in CACHES.items()}
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {
        **REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}),
        "enqueue": env.str("QUIRE_BENCH_THROTTLE_ENQUEUE", default="100000/min"),
    },
}
