"""Prometheus metrics at /metrics (token-protected).

Job metrics are computed from the Job rows at scrape time rather than counted in process
memory: jobs run in short-lived work-horses on several hosts, and the database is the one
place that sees them all (and survives restarts). django-rq's collector adds queue and worker
gauges from Redis.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from backend.models import Job
from backend.runtime.dispatch import backlog_stats

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class JobCollector:
    def collect(self) -> Iterator[Metric]:
        totals = CounterMetricFamily("quire_jobs", "Jobs recorded, by kind and status", labels=["kind", "status"])
        for row in Job.objects.values("kind", "status").annotate(n=Count("id")).order_by():
            totals.add_metric([row["kind"], row["status"]], row["n"])
        yield totals
        yield from self._backlog()
        yield self._histogram(
            "quire_job_duration_seconds",
            "Run time of finished jobs (last attempt), by kind and status",
            ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()),
            Q(finished_at__isnull=False, started_at__isnull=False),
        )
        yield self._histogram(
            "quire_job_queue_wait_seconds",
            "Time from enqueue to the first start, by kind and status",
            ExpressionWrapper(F("started_at") - F("created_at"), output_field=DurationField()),
            Q(started_at__isnull=False),
        )

    def _backlog(self) -> Iterator[Metric]:
        """Jobs waiting for the fair dispatcher (not yet in RQ, so not in django-rq's gauges)."""
        waiting = GaugeMetricFamily(
            "quire_jobs_waiting_dispatch", "Queued jobs not yet handed to RQ, by queue", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "quire_jobs_waiting_dispatch_oldest_age_seconds",
            "Age of the oldest job waiting for dispatch, by queue",
            labels=["queue"],
        )
        for queue in settings.QUIRE_FAIR["QUEUES"]:
            stats = backlog_stats(queue)
            waiting.add_metric([queue], float(stats["waiting"] or 0))
            oldest.add_metric([queue], float(stats["oldest_waiting_age_seconds"] or 0))
        yield waiting
        yield oldest

    def _histogram(self, name: str, doc: str, expression: ExpressionWrapper[Any], where: Q) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=["kind", "status"])
        aggregates = {f"le_{i}": Count("id", filter=Q(d__lte=timedelta(seconds=b))) for i, b in enumerate(BUCKETS)}
        rows = (
            Job.objects.filter(where)
            .annotate(d=expression)
            .values("kind", "status")
            .annotate(n=Count("id"), **aggregates)
            .order_by()
        )
        row: dict[str, Any]
        for row in rows.values("kind", "status", "n", *aggregates):
            buckets = [(str(b), row[f"le_{i}"]) for i, b in enumerate(BUCKETS)] + [("+Inf", row["n"])]
            # The sum is not kept per row; Prometheus accepts a histogram without it.
            family.add_metric([row["kind"], row["status"]], buckets, sum_value=None)
        return family


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        return HttpResponse("metrics need 'Authorization: Bearer <QUIRE_METRICS_TOKEN>'\n", status=401)
    from django_rq.contrib.prometheus import RQCollector

    registry = CollectorRegistry()
    registry.register(JobCollector())
    registry.register(RQCollector())
    return HttpResponse(generate_latest(registry), content_type="text/plain; version=0.0.4; charset=utf-8")
