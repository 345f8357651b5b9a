"""Start-up checks (`manage.py check`, and every command): refuse a pickle queue, warn about a
Redis that could lose queued jobs."""

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

PICKLE_SERIALIZERS = {"pickle", "rq.serializers.DefaultSerializer", "rq.serializers.PickleSerializer"}


@register("quire")
def check_queue_serializers(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    for name, config in settings.RQ_QUEUES.items():
        serializer = config.get("SERIALIZER")
        if not serializer or str(serializer) in PICKLE_SERIALIZERS:
            errors.append(
                Error(
                    f"Queue {name!r} uses the pickle serializer ({serializer or 'the default'}).",
                    hint="Set RQ_QUEUES[...]['SERIALIZER'] to 'rq.serializers.JSONSerializer': pickle runs "
                    "whatever Redis holds.",
                    id="quire.E001",
                )
            )
    if settings.RQ.get("JOB_CLASS") != "backend.runtime.rq.JSONJob":
        errors.append(
            Error(
                "RQ['JOB_CLASS'] is not backend.runtime.rq.JSONJob.",
                hint="rq-scheduler creates jobs without a serializer; only a JSON job class keeps them JSON.",
                id="quire.E002",
            )
        )
    return errors


@register("quire", deploy=False)
def check_redis_durability(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    if not settings.QUIRE_CHECK_REDIS_DURABILITY:
        return []
    from backend.runtime.rq import connection

    try:
        config = connection().config_get("maxmemory-policy") | connection().config_get("appendonly")
    except Exception as exc:
        return [Warning(f"Could not read the Redis configuration ({type(exc).__name__}).", id="quire.W003")]
    warnings = []
    if config.get("maxmemory-policy") != "noeviction":
        warnings.append(
            Warning(
                f"Redis maxmemory-policy is {config.get('maxmemory-policy')!r}: under memory pressure Redis "
                "may evict queued jobs.",
                hint="Set maxmemory-policy noeviction.",
                id="quire.W001",
            )
        )
    if config.get("appendonly") != "yes":
        warnings.append(
            Warning(
                "Redis runs without AOF persistence: a restart loses every queued job.",
                hint="Set appendonly yes (appendfsync everysec).",
                id="quire.W002",
            )
        )
    return warnings
