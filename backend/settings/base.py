"""Settings shared by every environment. Production differs only by environment variables."""

import contextlib
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ

from .redis_topology import cache_config, connection_config

# Lets annotations like admin.ModelAdmin[Job] run at import time (they are for mypy).
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="dev-insecure-key-change-me")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_yasg",
    "django_rq",
    "backend",
    "notebooks",
    "reports",
    "podcast",
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "backend.urls"
WSGI_APPLICATION = "backend.wsgi.application"
ASGI_APPLICATION = "backend.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "backend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database: SQLite by default, PostgreSQL (or anything dj-database-url knows) via DATABASE_URL
DATA_DIR = Path(env.str("QUIRE_DATA_DIR", default=str(BASE_DIR / "var")))
# A fresh clone has no var/, and SQLite cannot create its file in a missing folder; a read-only
# data dir is fine when nothing local is stored there.
with contextlib.suppress(OSError):
    DATA_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'quire.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and several worker processes write to one file: WAL lets readers run beside the
    # writer, IMMEDIATE transactions avoid the lock-upgrade deadlock, and the timeout waits
    # for the lock instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# The web's request threads (backend.asgi) and the workers keep a connection between requests
# and jobs; a request thread checks its connection's age and health when a request starts.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A host that drops off the network inside a transaction leaves its session open on the
    # server, holding its row locks until TCP gives up (hours by default), and every worker that
    # needs those rows waits as long (tests/test_chaos.py shows it with the notebook row, which
    # every ingestion job's last step updates). So the server ends a session that sits idle
    # inside a transaction for DATABASE_IDLE_TRANSACTION_TIMEOUT seconds (no transaction waits on
    # slow work: uploads are stored before theirs opens, notebooks.services.sources_add) and
    # both ends probe a silent peer with TCP keepalives.
    # PgBouncer refuses startup options: DATABASE_SESSION_OPTIONS=false, and set these on the
    # role instead (ALTER ROLE quire SET idle_in_transaction_session_timeout = '60s').
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    # Transaction pooling also breaks server-side cursors (a named cursor lives in one session),
    # so the PgBouncer switch turns them off too.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = not env.bool("DATABASE_SESSION_OPTIONS", default=True)
    if env.bool("DATABASE_SESSION_OPTIONS", default=True):
        _idle_ms = env.int("DATABASE_IDLE_TRANSACTION_TIMEOUT", default=60) * 1000
        _server = (
            f"-c idle_in_transaction_session_timeout={_idle_ms} -c tcp_keepalives_idle=30"
            " -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3 -c tcp_user_timeout=60000"
        )
        _options["options"] = f"{_options.get('options', '')} {_server}".strip()
    _client = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
    for _key, _value in _client.items():
        _options.setdefault(_key, _value)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

# --- files: local filesystem by default, S3-compatible storage when a bucket is configured
MEDIA_ROOT = Path(env.str("QUIRE_MEDIA_ROOT", default=str(DATA_DIR / "media")))
MEDIA_URL = "media/"
AWS_STORAGE_BUCKET_NAME = env.str("QUIRE_S3_BUCKET", default="")
if AWS_STORAGE_BUCKET_NAME:
    STORAGES: dict[str, Any] = {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": AWS_STORAGE_BUCKET_NAME,
                "endpoint_url": env.str("QUIRE_S3_ENDPOINT_URL", default="") or None,
                "region_name": env.str("QUIRE_S3_REGION", default="") or None,
                "access_key": env.str("QUIRE_S3_ACCESS_KEY", default="") or None,
                "secret_key": env.str("QUIRE_S3_SECRET_KEY", default="") or None,
                "default_acl": None,
                "file_overwrite": False,
            },
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
else:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }

# --- Redis and the queues
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Redis Sentinel (failover): REDIS_SENTINELS=host:26379,host:26379,host:26379 and the master set's
# name; REDIS_URL then only gives the database number and credentials. Every client (queues,
# workers, scheduler, events, health, metrics, throttles) is built from REDIS_CONNECTION.
REDIS_SENTINELS = env.str("REDIS_SENTINELS", default="")
REDIS_SENTINEL_MASTER = env.str("REDIS_SENTINEL_MASTER", default="")
REDIS_CONNECTION = connection_config(url=REDIS_URL, sentinels=REDIS_SENTINELS, master=REDIS_SENTINEL_MASTER)

# One entry per queue: its default timeout must cover the longest job of that queue
# (RQ's 180 s default would kill ingestion of a large PDF and podcast synthesis).
QUEUE_TIMEOUTS = {
    "default": env.int("QUIRE_TIMEOUT_DEFAULT", default=300),
    "notebook_processing": env.int("QUIRE_TIMEOUT_NOTEBOOK_PROCESSING", default=1800),
    "podcast": env.int("QUIRE_TIMEOUT_PODCAST", default=3600),
    "reports": env.int("QUIRE_TIMEOUT_REPORTS", default=1800),
    "maintenance": env.int("QUIRE_TIMEOUT_MAINTENANCE", default=600),
}
JSON_SERIALIZER = "rq.serializers.JSONSerializer"
RQ_QUEUES = {
    name: {
        **REDIS_CONNECTION,
        "DEFAULT_TIMEOUT": timeout,
        "SERIALIZER": JSON_SERIALIZER,
    }
    for name, timeout in QUEUE_TIMEOUTS.items()
}
RQ: dict[str, Any] = {
    # JSON by default even where a caller forgets to pass a serializer (rq-scheduler does).
    "JOB_CLASS": "backend.runtime.rq.JSONJob",
    "DEFAULT_RESULT_TTL": 500,
    "COMMIT_MODE": "on_db_commit",
}
RQ_SHOW_ADMIN_LINK = True
RQ_API_TOKEN = env.str("QUIRE_RQ_API_TOKEN", default="")

# The queues whose worker forks a work-horse per job (a running job can be stopped and a
# crash dies with the horse); the short-job queues run jobs in the worker process.
FORKING_QUEUES = ("notebook_processing", "podcast", "reports")

QUIRE_JOBS: dict[str, Any] = {
    "DEFAULT_RETRY_INTERVALS": [5, 15, 60],
    # A worker that has not sent a heartbeat for this long is considered dead.
    "WORKER_TTL": env.int("QUIRE_WORKER_TTL", default=60),
    # Non-terminal jobs younger than this are left alone by the reconciler (enqueue in flight).
    "RECONCILE_GRACE_SECONDS": env.int("QUIRE_RECONCILE_GRACE_SECONDS", default=30),
    "RETENTION_DAYS": env.int("QUIRE_JOB_RETENTION_DAYS", default=30),
    "EVENT_HISTORY": 1000,
}

# Fair scheduling (README "Fair, prioritised background work"). On the long-job queues a job
# is written queued and handed to RQ only when a dispatcher picks it: interactive before bulk
# (bulk gets at least 1 of every BULK_SHARE dispatches), round-robin across owners, at most
# CAPS[queue] running or handed-out jobs per owner while another owner waits. Off: every job
# is pushed to RQ when its transaction commits (plain FIFO).
QUIRE_FAIR: dict[str, Any] = {
    "ENABLED": env.bool("QUIRE_FAIR_SCHEDULING", default=True),
    "QUEUES": ("notebook_processing", "reports", "podcast"),
    "BULK_SHARE": env.int("QUIRE_FAIR_BULK_SHARE", default=4),
    # A request with more files/URLs than this is bulk work.
    "BULK_THRESHOLD": env.int("QUIRE_FAIR_BULK_THRESHOLD", default=5),
    "CAPS": {
        "notebook_processing": env.int("QUIRE_FAIR_CAP_NOTEBOOK_PROCESSING", default=0),
        "reports": env.int("QUIRE_FAIR_CAP_REPORTS", default=0),
        "podcast": env.int("QUIRE_FAIR_CAP_PODCAST", default=0),
    },
}

# Periodic jobs: one table, registered by `manage.py sync_schedules` with stable ids.
# Each entry names a job kind (declared with backend.runtime.job) and a cron string (UTC).
QUIRE_SCHEDULES: dict[str, dict[str, Any]] = {
    "reconcile-jobs": {"cron": "* * * * *", "kind": "maintenance.reconcile_jobs"},
    "purge-jobs": {"cron": "17 3 * * *", "kind": "maintenance.purge_jobs"},
}

# --- API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "backend.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SWAGGER_SETTINGS = {
    "SECURITY_DEFINITIONS": {
        "Token": {"type": "apiKey", "name": "Authorization", "in": "header"},
    },
    "USE_SESSION_AUTH": True,
}
SWAGGER_USE_COMPAT_RENDERERS = False
LOGIN_URL = "/admin/login/"

METRICS_TOKEN = env.str("QUIRE_METRICS_TOKEN", default="")

# Production only: the start-up check warns when Redis could lose queued jobs.
QUIRE_CHECK_REDIS_DURABILITY = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("QUIRE_LOG_LEVEL", default="INFO")},
    "loggers": {"rq.worker": {"level": "INFO"}},
}
# Threads per web process that run requests (backend.asgi); each keeps a database connection.
# An event stream holds one only while it starts (its first Redis read has a 5 s limit); when
# all are busy (slow uploads), requests wait their turn.
QUIRE_WEB_THREADS = env.int("QUIRE_WEB_THREADS", default=16)
QUIRE_SSE_HEARTBEAT_SECONDS = env.float("QUIRE_SSE_HEARTBEAT_SECONDS", default=15.0)
QUIRE_SERVE_STATIC = env.bool("QUIRE_SERVE_STATIC", default=True)

# --- sources
QUIRE_EMBEDDER = env.str("QUIRE_EMBEDDER", default="minilm-onnx")  # or "hashing" (tests only)
QUIRE_MAX_UPLOAD_BYTES = env.int("QUIRE_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024)  # per file
QUIRE_MAX_REQUEST_BYTES = env.int("QUIRE_MAX_REQUEST_BYTES", default=200 * 1024 * 1024)  # per upload request
QUIRE_MAX_FILES_PER_REQUEST = env.int("QUIRE_MAX_FILES_PER_REQUEST", default=20)
QUIRE_MAX_PDF_PAGES = env.int("QUIRE_MAX_PDF_PAGES", default=2000)
QUIRE_FETCH_ALLOW_LOOPBACK = env.bool("QUIRE_FETCH_ALLOW_LOOPBACK", default=False)
QUIRE_FETCH_ALLOWED_PORTS = env.list("QUIRE_FETCH_ALLOWED_PORTS", cast=int, default=[80, 443])
QUIRE_FETCH_MAX_BYTES = env.int("QUIRE_FETCH_MAX_BYTES", default=20 * 1024 * 1024)
QUIRE_FETCH_TIMEOUT_SECONDS = env.float("QUIRE_FETCH_TIMEOUT_SECONDS", default=30.0)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024  # JSON bodies (pasted text)
# Audio and video sources (notebooks/ingest/media.py): transcribed offline by faster-whisper.
QUIRE_MEDIA_MAX_SECONDS = env.float("QUIRE_MEDIA_MAX_SECONDS", default=4 * 3600.0)
QUIRE_WHISPER_MODEL = env.str("QUIRE_WHISPER_MODEL", default="base")  # "small" once its packages are installed
QUIRE_WHISPER_THREADS = env.int("QUIRE_WHISPER_THREADS", default=0)  # 0: CTranslate2 picks
QUIRE_MODEL_CACHE_DIR = env.str("QUIRE_MODEL_CACHE_DIR", default=str(DATA_DIR / "models"))
# Loaded by a forking worker before it forks, so every job's work-horse inherits it.
QUIRE_WORKER_PRELOAD: dict[str, list[str]] = {
    "notebook_processing": ["notebooks.ingestion.ingestion_preload"],
    "default": ["notebooks.ask.ask_preload"],  # questions are answered there
}

# --- podcasts
QUIRE_PODCAST_WORK_DIR = env.str("QUIRE_PODCAST_WORK_DIR", default=str(DATA_DIR / "podcast-work"))
QUIRE_PODCAST_RETENTION_DAYS = env.int("QUIRE_PODCAST_RETENTION_DAYS", default=7)  # failed and cancelled
QUIRE_PODCAST_COMPLETED_RETENTION_DAYS: int | None = env.int("QUIRE_PODCAST_COMPLETED_RETENTION_DAYS", default=None)
QUIRE_PODCAST_MAX_MINUTES = env.float("QUIRE_PODCAST_MAX_MINUTES", default=30.0)
QUIRE_WORKER_PRELOAD["podcast"] = ["podcast.services.speech_preload"]
QUIRE_SCHEDULES["cleanup-old-podcasts"] = {"cron": "23 * * * *", "kind": "maintenance.cleanup_old_podcast_jobs"}

# --- reports
QUIRE_WORKER_PRELOAD["reports"] = ["reports.services.generation_preload"]
# An OpenAI-compatible chat endpoint, used when both LLM_BASE_URL and LLM_MODEL are set;
# otherwise reports are written by the offline extractive generator.
LLM_BASE_URL = env.str("LLM_BASE_URL", default="")
LLM_MODEL = env.str("LLM_MODEL", default="")
LLM_API_KEY = env.str("LLM_API_KEY", default="")
LLM_TIMEOUT = env.float("LLM_TIMEOUT", default=60.0)
LLM_MAX_TOKENS = env.int("LLM_MAX_TOKENS", default=1200)
QUIRE_REPORT_RETENTION_DAYS = env.int("QUIRE_REPORT_RETENTION_DAYS", default=7)  # failed and cancelled
QUIRE_REPORT_COMPLETED_RETENTION_DAYS: int | None = env.int("QUIRE_REPORT_COMPLETED_RETENTION_DAYS", default=None)
QUIRE_SCHEDULES["cleanup-old-reports"] = {"cron": "41 * * * *", "kind": "maintenance.cleanup_old_reports"}

# --- quotas and throttles
# Per user: at most CONCURRENT unfinished jobs of the expensive kinds, and DAILY started in any
# 24 hours; enforced in the database under a lock on the user's row (429 with Retry-After).
QUIRE_QUOTAS: dict[str, Any] = {
    "KINDS": ["reports.generate_report", "podcast.generate_podcast"],
    "CONCURRENT": env.int("QUIRE_QUOTA_CONCURRENT", default=2),
    "DAILY": env.int("QUIRE_QUOTA_DAILY", default=50),
}
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    "enqueue": env.str("QUIRE_THROTTLE_ENQUEUE", default="60/min"),
    # Source uploads (bulk imports): requests are cheap to refuse, queued work is what is capped.
    "sources": env.str("QUIRE_THROTTLE_SOURCES", default="600/min"),
}
# Per user: at most this many sources waiting for a worker (queued, not started) across all
# notebooks; an upload that would go past it is refused whole (429 QUEUE_FULL, Retry-After).
QUIRE_MAX_WAITING_SOURCES = env.int("QUIRE_MAX_WAITING_SOURCES", default=2000)
QUIRE_QUEUE_FULL_RETRY_AFTER = 15
# Shared by every web process, so throttles count across them.
CACHES = {"default": cache_config(REDIS_CONNECTION)}
