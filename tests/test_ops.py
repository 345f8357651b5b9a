"""Metrics, admin actions and retention of the job runtime."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from backend import services
from backend.models import Job
from backend.runtime import get_kind
from backend.runtime.state import job_enqueue


def make_job(**fields: Any) -> Job:
    kind = get_kind("tests.echo_default")
    assert kind is not None
    job = job_enqueue(kind=kind, kwargs={"value": "x"})
    Job.objects.filter(id=job.id).update(**fields)
    return Job.objects.get(id=job.id)


@pytest.mark.django_db
def test_metrics_need_the_token_and_report_jobs_by_kind_and_status(redis_clean: Any) -> None:
    now = timezone.now()
    make_job(status="succeeded", started_at=now - timedelta(seconds=3), finished_at=now)
    make_job(status="failed", started_at=now - timedelta(seconds=0.2), finished_at=now)
    client = Client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer test-metrics-token")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'quire_jobs_total{kind="tests.echo_default",status="succeeded"} 1.0' in text
    assert 'quire_job_duration_seconds_bucket{kind="tests.echo_default",le="2.5",status="succeeded"} 0.0' in text
    assert 'quire_job_duration_seconds_bucket{kind="tests.echo_default",le="5",status="succeeded"} 1.0' in text
    assert 'quire_job_duration_seconds_bucket{kind="tests.echo_default",le="0.25",status="failed"} 1.0' in text
    assert "rq_workers" in text or "rq_jobs" in text


@pytest.mark.django_db
def test_admin_cancels_and_retries_jobs(make_user: Any, redis_clean: Any) -> None:
    admin_user = make_user(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin_user)
    queued = make_job()
    failed = make_job(status="failed", attempts=4, error="boom", error_code="INTERNAL_ERROR")

    response = client.post(
        "/admin/backend/job/", {"action": "cancel_jobs", "_selected_action": [queued.id]}, follow=True
    )
    assert response.status_code == 200
    assert Job.objects.get(id=queued.id).status == "cancelled"

    client.post("/admin/backend/job/", {"action": "retry_jobs", "_selected_action": [failed.id]})
    failed.refresh_from_db()
    # A fresh budget on top of the attempts made (which keep counting: stale runs stay fenced).
    assert (failed.status, failed.attempts, failed.error) == ("queued", 4, "")
    kind = get_kind(failed.kind)
    assert kind is not None and failed.max_attempts - failed.attempts == kind.max_attempts
    assert redis_clean.hget(f"rq:job:{failed.id}", "status") == b"queued"

    listing = client.get("/admin/backend/job/?status__exact=queued&q=" + failed.id)
    assert failed.id in listing.content.decode()


@pytest.mark.django_db
def test_purge_deletes_only_old_finished_jobs(redis_clean: Any) -> None:
    old = timezone.now() - timedelta(days=40)
    old_done = make_job(status="succeeded", finished_at=old)
    old_running = make_job(status="running")
    recent_done = make_job(status="failed", finished_at=timezone.now())
    assert services.jobs_purge(older_than_days=30) == 1
    remaining = set(Job.objects.values_list("id", flat=True))
    assert old_done.id not in remaining
    assert {old_running.id, recent_done.id} <= remaining
