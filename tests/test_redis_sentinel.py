"""Redis Sentinel settings: the same queues on a Sentinel-managed master; a bad list stops the start."""

import json
import subprocess
import sys
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from backend.devrun import ROOT
from backend.settings.redis_topology import connection_config, parse_sentinels

SHOW_QUEUES = (
    "import json; from django.conf import settings as s; from backend.runtime import rq;"
    " print(json.dumps({'queues': s.RQ_QUEUES, 'cache': s.CACHES['default']['BACKEND'],"
    " 'pool': type(rq.connection('reports').connection_pool).__name__,"
    " 'rq': {n: [rq.get_queue(n).name, rq.get_queue(n).serializer.__name__] for n in s.RQ_QUEUES}}))"
)


def _production(**extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "backend.settings.production",
        "DJANGO_SECRET_KEY": "x" * 60,
        "DJANGO_ALLOWED_HOSTS": "quire.example.com",
        "REDIS_URL": "redis://:s3cret@127.0.0.1:6379/3",
        **extra,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", SHOW_QUEUES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_sentinel_config_builds_the_same_rq_queues_on_the_sentinels_master() -> None:
    plain = _production()
    sentinel = _production(REDIS_SENTINELS="10.0.0.1:26379, 10.0.0.2:26379,[::1]:26380", REDIS_SENTINEL_MASTER="quire")
    assert plain.returncode == 0 and sentinel.returncode == 0, plain.stderr + sentinel.stderr
    by_url: dict[str, Any] = json.loads(plain.stdout)
    by_sentinel: dict[str, Any] = json.loads(sentinel.stdout)

    assert by_sentinel["rq"] == by_url["rq"]  # same queue names, JSON serializer on each
    assert by_url["pool"] == "ConnectionPool"
    assert by_sentinel["pool"] == "SentinelConnectionPool"
    assert by_sentinel["cache"] == "backend.cache.SentinelRedisCache"
    for name, config in by_sentinel["queues"].items():
        url_config = by_url["queues"][name]
        assert {k: v for k, v in config.items() if k not in ("SENTINELS", "MASTER_NAME", "DB", "USERNAME",
                "PASSWORD", "SENTINEL_KWARGS")} == {k: v for k, v in url_config.items() if k != "URL"}  # fmt: skip
        assert "URL" not in config  # django-rq prefers URL over SENTINELS
        assert config["SENTINELS"] == [["10.0.0.1", 26379], ["10.0.0.2", 26379], ["::1", 26380]]
        assert config["MASTER_NAME"] == "quire"
        assert config["DB"] == 3 and config["PASSWORD"] == "s3cret"  # from REDIS_URL


@pytest.mark.parametrize(
    ("sentinels", "master", "message"),
    [
        ("10.0.0.1", "quire", "REDIS_SENTINELS has a bad entry '10.0.0.1'"),
        ("10.0.0.1:26379,,10.0.0.2:26379", "quire", "REDIS_SENTINELS has a bad entry ''"),
        ("10.0.0.1:port", "quire", "REDIS_SENTINELS has a bad entry '10.0.0.1:port'"),
        ("10.0.0.1:70000", "quire", "REDIS_SENTINELS has a bad entry '10.0.0.1:70000'"),
        ("10.0.0.1:26379,10.0.0.1:26379", "quire", "REDIS_SENTINELS lists a sentinel twice"),
        ("10.0.0.1:26379", "", "REDIS_SENTINEL_MASTER is empty"),
    ],
)
def test_a_bad_sentinel_setting_fails_at_start_with_a_clear_message(sentinels: str, master: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message.replace("[", r"\[")):
        connection_config(url="redis://127.0.0.1:6379/0", sentinels=sentinels, master=master)


def test_a_process_with_a_bad_sentinel_list_does_not_start() -> None:
    result = _production(REDIS_SENTINELS="sentinel-1:26379;sentinel-2:26379", REDIS_SENTINEL_MASTER="quire")
    assert result.returncode != 0
    assert "ImproperlyConfigured: REDIS_SENTINELS has a bad entry" in result.stderr
    assert "expected host:port[,host:port...]" in result.stderr


def test_without_sentinels_the_queues_use_the_url() -> None:
    assert connection_config(url="redis://h:6380/2", sentinels=" ", master="") == {"URL": "redis://h:6380/2"}
    assert parse_sentinels("a:1,b:2") == [("a", 1), ("b", 2)]
