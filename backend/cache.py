"""Django's Redis cache behind Redis Sentinel (Django's own backend takes URLs only).

The cache client asks the process's shared master client (backend.runtime.rq.connection), so a
failover moves the throttles' counters to the new master with everything else.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class SentinelRedisCacheClient(RedisCacheClient):
    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        from backend.runtime import rq as rq_adapter

        return rq_adapter.connection()


class SentinelRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SentinelRedisCacheClient
