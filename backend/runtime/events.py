"""Live events per notebook, kept in a capped Redis stream.

A stream (XADD) is Redis's publish/subscribe with history: subscribers block on XREAD
(pushed to, no polling), each event has an id that SSE clients send back as Last-Event-ID,
and a reconnecting client replays what it missed without a race between "replay" and
"subscribe".
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from redis.asyncio.sentinel import Sentinel

from backend.runtime.rq import connection, live_worker_count

if TYPE_CHECKING:
    from backend.models import Job

logger = logging.getLogger(__name__)

EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")


def stream_key(notebook_id: Any) -> str:
    return f"quire:events:notebook:{notebook_id}"


def publish(notebook_id: Any, event_type: str, payload: dict[str, Any]) -> str | None:
    try:
        event_id = connection().xadd(
            stream_key(notebook_id),
            {"type": event_type, "data": json.dumps(payload, cls=DjangoJSONEncoder)},
            maxlen=settings.QUIRE_JOBS["EVENT_HISTORY"],
            approximate=True,
        )
    except Exception:
        # The Job row is the record; a missed live event is recovered by reading the API.
        logger.warning("Could not publish %s event for notebook %s", event_type, notebook_id, exc_info=True)
        return None
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)


def publish_job(job: Job) -> str | None:
    if job.notebook_id is None:
        return None
    return publish(job.notebook_id, "job", job_event(job))


def job_event(job: Job) -> dict[str, Any]:
    """The job's own rendering plus what only Redis knows: the live workers while it waits (so
    a page can say why it waits). No queue position: the "queued" event is published before
    the push, and a position goes stale at once."""
    workers: int | None = None
    if job.status in ("queued", "retrying"):
        try:
            workers = live_worker_count(job.queue)
        except Exception:
            workers = None
    return {**job.as_event(), "queue_position": None, "workers": workers}


def _client(read_timeout: float) -> Any:
    """A Redis client for the event stream. The view's first read runs while it holds a request
    thread (backend.asgi), so a Redis that does not answer must not hold it for long."""
    config = settings.REDIS_CONNECTION
    if "URL" not in config:
        # Behind Sentinel the stream follows the master the sentinels name, like the queues.
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            config["SENTINELS"],
            sentinel_kwargs=config.get("SENTINEL_KWARGS", {}),
            db=config["DB"],
            username=config.get("USERNAME"),
            password=config.get("PASSWORD"),
            decode_responses=True,
            socket_connect_timeout=5,
            socket_timeout=read_timeout,
        )
        return sentinel.master_for(config["MASTER_NAME"])
    return aioredis.from_url(
        config["URL"], decode_responses=True, socket_connect_timeout=5, socket_timeout=read_timeout
    )


async def cursor_now(notebook_id: Any) -> str:
    """The id of the newest event, resolved before the response starts: a client that has its
    response headers must not miss an event published a moment later. (Reading with "$"
    on every loop would also drop events published between two reads.)"""
    client = _client(read_timeout=5)
    try:
        newest = await client.xrevrange(stream_key(notebook_id), count=1)
    finally:
        await client.aclose()
    return str(newest[0][0]) if newest else "0-0"


async def stream(notebook_id: Any, cursor: str, heartbeat_seconds: float) -> AsyncIterator[str]:
    """Server-sent events for one notebook after ``cursor`` (an event id: the client's
    Last-Event-ID, or cursor_now()), pushed by Redis as they happen, with a comment line as
    heartbeat while it is quiet."""
    client = _client(read_timeout=heartbeat_seconds + 10)  # XREAD blocks up to a heartbeat
    key = stream_key(notebook_id)
    try:
        yield f"retry: 3000\n: connected to notebook {notebook_id}\n\n"
        while True:
            response = await client.xread({key: cursor}, block=int(heartbeat_seconds * 1000), count=100)
            if not response:
                yield ": heartbeat\n\n"
                continue
            for _key, entries in response:
                for raw_id, fields in entries:
                    cursor = raw_id
                    yield f"id: {raw_id}\nevent: {fields['type']}\ndata: {fields['data']}\n\n"
    finally:
        await client.aclose()
