"""Production settings: `manage.py check --deploy` is clean with the defaults and a durable Redis."""

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend import embedded_redis
from backend.devrun import ROOT


def _manage(*args: str, redis_url: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "backend.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "quire.example.com",
        "REDIS_URL": redis_url,
        **extra,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[str]:
    server, url = embedded_redis.start(tmp_path / "redis")  # AOF on, noeviction, as production
    yield url
    server.terminate()
    server.wait(timeout=10)


def test_check_deploy_is_clean_with_production_defaults_and_an_aof_redis(aof_redis: str) -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", redis_url=aof_redis)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_on_a_redis_without_aof_and_on_hsts_turned_off(aof_redis: str) -> None:
    embedded = embedded_redis.redis.Redis.from_url(aof_redis)
    embedded.config_set("appendonly", "no")
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING", redis_url=aof_redis, DJANGO_SECURE_HSTS_SECONDS="0"
    )
    assert result.returncode != 0
    assert "quire.W002" in result.stderr
    assert "security.W004" in result.stderr  # SECURE_HSTS_SECONDS


def test_hardening_settings_come_from_the_environment(aof_redis: str) -> None:
    show = (
        "from django.conf import settings as s; print(s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT,"
        " s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER)"
    )
    defaults = _manage("shell", "-v", "0", "-c", show, redis_url=aof_redis)
    assert defaults.stdout.strip() == "60 True True True ('HTTP_X_FORWARDED_PROTO', 'https')", defaults.stderr
    changed = _manage(
        "shell",
        "-v",
        "0",
        "-c",
        show,
        redis_url=aof_redis,
        DJANGO_SECURE_HSTS_SECONDS="31536000",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SECURE_COOKIES="false",
        DJANGO_SECURE_PROXY_SSL_HEADER="X-Scheme",
    )
    assert changed.stdout.strip() == "31536000 False False False ('HTTP_X_SCHEME', 'https')", changed.stderr
    bad = _manage("shell", "-v", "0", "-c", show, redis_url=aof_redis, DJANGO_SECURE_HSTS_SECONDS="a year")
    assert bad.returncode != 0
    assert "invalid literal for int()" in bad.stderr


def test_the_pgbouncer_switch_drops_startup_options_and_server_side_cursors(aof_redis: str) -> None:
    show = (
        "from django.conf import settings as s; d = s.DATABASES['default'];"
        " print(d['DISABLE_SERVER_SIDE_CURSORS'], 'options' in d['OPTIONS'])"
    )
    url = "postgres://quire@pgbouncer.example:6432/quire"
    direct = _manage("shell", "-v", "0", "-c", show, redis_url=aof_redis, DATABASE_URL=url)
    assert direct.stdout.strip() == "False True", direct.stderr
    pooled = _manage(
        "shell", "-v", "0", "-c", show, redis_url=aof_redis, DATABASE_URL=url, DATABASE_SESSION_OPTIONS="false"
    )
    assert pooled.stdout.strip() == "True False", pooled.stderr
