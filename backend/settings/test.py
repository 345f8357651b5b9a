"""Test settings: real Redis (its own database number) and a real database file, short delays."""

from urllib.parse import urlsplit, urlunsplit

from .base import *  # noqa: F403
from .base import DATA_DIR, DATABASES, QUEUE_TIMEOUTS, QUIRE_JOBS, REDIS_CONNECTION, RQ_QUEUES, env
from .redis_topology import cache_config, with_db

SECRET_KEY = "test-only"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _redis_db(url: str, db: int) -> str:
    # The suite empties its Redis database between tests: never the one `make run` uses.
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


REDIS_URL = _redis_db(env.str("REDIS_URL", default="redis://127.0.0.1:6379/0"), env.int("QUIRE_TEST_REDIS_DB", 15))
REDIS_CONNECTION = with_db(REDIS_CONNECTION, env.int("QUIRE_TEST_REDIS_DB", 15))
for _config in RQ_QUEUES.values():
    _config.update(REDIS_CONNECTION)

# Worker processes started by the tests open the same database, so it must be a file
# (pytest-django's in-memory SQLite is invisible to other processes).
# QUIRE_TEST_DB_NAME and QUIRE_TEST_REDIS_DB let two test sessions run side by side.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": env.str("QUIRE_TEST_DB_NAME", default=str(DATA_DIR / "test.sqlite3"))}
elif env.str("QUIRE_TEST_DB_NAME", default=""):
    DATABASES["default"]["TEST"] = {"NAME": env.str("QUIRE_TEST_DB_NAME")}

MEDIA_ROOT = DATA_DIR / "test-media"
QUIRE_JOBS = {
    **QUIRE_JOBS,
    "DEFAULT_RETRY_INTERVALS": [1, 1, 1],
    "WORKER_TTL": env.int("QUIRE_WORKER_TTL", default=15),
    "RECONCILE_GRACE_SECONDS": 0,
}
QUEUE_TIMEOUTS = dict(QUEUE_TIMEOUTS)
METRICS_TOKEN = "test-metrics-token"
QUIRE_FETCH_ALLOW_LOOPBACK = True  # the tests serve pages from a local HTTP server
QUIRE_FETCH_ALLOWED_PORTS = [80, 443, *range(1024, 65536)]  # on ephemeral ports
INSTALLED_APPS = [*INSTALLED_APPS, "tests"]  # noqa: F405  (test-only job kinds in tests/jobs.py)
QUIRE_PODCAST_WORK_DIR = str(DATA_DIR / "test-podcast-work")
CACHES = {"default": cache_config(REDIS_CONNECTION)}
# Crash tests make a worker die at a chosen step (see tests/faults.py); inert unless asked.
QUIRE_FAULT_INJECTION = "tests.faults.inject"
