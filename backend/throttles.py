from typing import Any

from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle


class EnqueueThrottle(UserRateThrottle):
    """Rate limit for requests that start background work (POSTs that enqueue jobs), per user,
    counted in the shared cache so every web process sees the same count."""

    scope = "enqueue"

    def get_rate(self) -> str | None:
        # Read the rate when the request comes, not when DRF was imported (a changed setting counts).
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        return str(rate) if rate is not None else None

    def allow_request(self, request: Any, view: Any) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)


class SourcesThrottle(EnqueueThrottle):
    """Source uploads: a bulk import sends hundreds of requests of 20 files, so requests are
    counted against a looser rate; what protects the queue is the cap on a user's sources
    waiting for a worker (notebooks.services, QUIRE_MAX_WAITING_SOURCES)."""

    scope = "sources"
