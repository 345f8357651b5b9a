"""How every Redis client of Quire is configured: one URL, or Sentinel in front of a master.

Used by the settings (RQ_QUEUES, CACHES) and read back by backend.runtime.rq and
backend.runtime.events, so queues, scheduler, workers, events, health, metrics and throttles all
follow the same master. Kept free of Django so the settings can import it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

# host:port, [ipv6]:port; a host name or IPv4 address has no other characters (a ';' typed for
# a ',' must not pass as part of a name).
_ENTRY = re.compile(r"(?:(?P<name>[A-Za-z0-9.-]+)|\[(?P<ipv6>[0-9A-Fa-f:.]+)\]):(?P<port>[0-9]{1,5})")


def parse_sentinels(value: str) -> list[tuple[str, int]]:
    """`host:port,host:port,...` -> [(host, port), ...]; a malformed entry stops the start."""
    sentinels = []
    for raw in value.split(","):
        entry = raw.strip()
        match = _ENTRY.fullmatch(entry)
        host, port = (match.group("name") or match.group("ipv6"), match.group("port")) if match else ("", "0")
        if not host or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(
                f"REDIS_SENTINELS has a bad entry {entry!r} in {value!r}: expected host:port[,host:port...],"
                " for example sentinel-1:26379,sentinel-2:26379,sentinel-3:26379"
            )
        sentinels.append((host, int(port)))
    if len(set(sentinels)) != len(sentinels):
        raise ImproperlyConfigured(f"REDIS_SENTINELS lists a sentinel twice: {value!r}")
    return sentinels


def connection_config(*, url: str, sentinels: str, master: str) -> dict[str, Any]:
    """The connection part of an RQ_QUEUES entry (django-rq reads URL, or SENTINELS and
    MASTER_NAME). With sentinels, REDIS_URL still gives the database number and credentials;
    its host and port are not used."""
    if not sentinels.strip():
        return {"URL": url}
    if not master.strip():
        raise ImproperlyConfigured("REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is empty: name the master set")
    parts = urlsplit(url)
    db = (parts.path or "/0").lstrip("/") or "0"
    if not db.isdigit():
        raise ImproperlyConfigured(f"REDIS_URL's database {db!r} is not a number")
    return {
        "SENTINELS": parse_sentinels(sentinels),
        "MASTER_NAME": master.strip(),
        "DB": int(db),
        "USERNAME": unquote(parts.username) if parts.username else None,
        "PASSWORD": unquote(parts.password) if parts.password else None,
        # The sentinels answer a who-is-master question fast or not at all.
        "SENTINEL_KWARGS": {"socket_timeout": 2, "socket_connect_timeout": 2},
    }


def with_db(config: dict[str, Any], db: int) -> dict[str, Any]:
    """The same Redis, another database number (the test and bench settings use their own)."""
    if "URL" in config:
        parts = urlsplit(config["URL"])
        return {**config, "URL": parts._replace(path=f"/{db}").geturl()}
    return {**config, "DB": db}


def describe(config: dict[str, Any]) -> str:
    if "URL" in config:
        parts = urlsplit(config["URL"])
        return f"{parts.hostname}:{parts.port or 6379}/{(parts.path or '/0').lstrip('/') or '0'}"
    return f"sentinel master {config['MASTER_NAME']!r} via {len(config['SENTINELS'])} sentinels, db {config['DB']}"


def cache_config(config: dict[str, Any]) -> dict[str, Any]:
    """Django's Redis cache (the throttles' counters) on the same Redis as the queues."""
    if "URL" in config:
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": config["URL"]}
    return {"BACKEND": "backend.cache.SentinelRedisCache", "LOCATION": describe(config)}
