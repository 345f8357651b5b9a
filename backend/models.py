"""The system of record for background work: one Job row per job, grouped into batches."""

import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class Batch(models.Model):
    """Jobs started by one request (a multi-file upload); progress is aggregated over them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="job_batches")
    notebook_id = models.UUIDField(null=True, blank=True, db_index=True)
    label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"batch {self.id}"


class Job(models.Model):
    class Priority(models.TextChoices):
        INTERACTIVE = "interactive"
        BULK = "bulk"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.RETRYING)

    # The RQ job id: the API can return it before the job reaches Redis.
    id = models.CharField(primary_key=True, max_length=64, editable=False)
    kind = models.CharField(max_length=100, db_index=True)
    queue = models.CharField(max_length=50, db_index=True)
    # What RQ runs, kept here so the reconciler can put the job back when Redis lost it.
    func = models.CharField(max_length=200)
    kwargs = models.JSONField(default=dict, blank=True)
    timeout = models.PositiveIntegerField()
    retry_intervals = models.JSONField(default=list, blank=True)
    depends_on = models.JSONField(default=list, blank=True)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    subject_type = models.CharField(max_length=60, blank=True)
    subject_id = models.CharField(max_length=64, blank=True, db_index=True)
    # A plain id, not a foreign key: backend/ knows no app.
    notebook_id = models.UUIDField(null=True, blank=True, db_index=True)
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=1)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    result = models.JSONField(null=True, blank=True)
    worker_name = models.CharField(max_length=200, blank=True)
    # Fair scheduling: the class the enqueuing service chose, and when a dispatcher claimed the
    # row and handed it to RQ (null: it waits in the backlog; set once, by a conditional UPDATE).
    priority = models.CharField(max_length=20, choices=Priority.choices, default=Priority.INTERACTIVE)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Run together (runtime/companions.py): the job that took this one along from the backlog
    # ("": it runs by itself), and whether it must run by itself, after a group it ran in ended
    # in a crash nobody can attribute to one member.
    led_by = models.CharField(max_length=64, blank=True, default="")
    alone = models.BooleanField(default=False)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "status"]),
            models.Index(fields=["status", "updated_at"]),
            # The fair dispatcher's reads: the backlog, the latest dispatches, each owner's last.
            models.Index(fields=["queue", "status", "dispatched_at"]),
            models.Index(fields=["queue", "dispatched_at"]),
            models.Index(fields=["queue", "owner", "dispatched_at"]),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="job_progress_at_most_100"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def as_event(self) -> dict[str, Any]:
        """The job as the live event stream sends it: the API's fields (backend/serializers.py,
        which must render these the same; a test compares them) without the two read from
        Redis, which the event stream adds (runtime/events.py)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "queue": self.queue,
            "status": self.status,
            "progress": self.progress,
            "message": self.message,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "error": self.error,
            "error_code": self.error_code,
            "result": self.result,
            "subject": {"type": self.subject_type.rsplit(".", 1)[-1], "id": self.subject_id}
            if self.subject_type
            else None,
            "notebook": _text(self.notebook_id),
            "batch": _text(self.batch_id),
            "priority": self.priority,
            "created_at": _instant(self.created_at),
            "started_at": _instant(self.started_at),
            "finished_at": _instant(self.finished_at),
        }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _instant(value: datetime | None) -> str | None:
    """As DRF renders a DateTimeField: ISO 8601 in the current time zone, UTC as "Z"."""
    if value is None:
        return None
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class Artifact(models.Model):
    """What a notebook's job generates for its owner (a report, a podcast): the fields, statuses
    and status mapping they share. Each follows one Job row (``job_id``) through its status hook
    (``subject_follow_job(run, rows, **Artifact.STATUS_OF_JOB)``); the app adds its content."""

    class Status(models.TextChoices):
        PENDING = "pending"
        GENERATING = "generating"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    # The artifact's status for each state of its job, as subject_follow_job names them.
    STATUS_OF_JOB = {
        "pending": Status.PENDING,
        "working": Status.GENERATING,
        "done": Status.COMPLETED,
        "failed": Status.FAILED,
        "cancelled": Status.CANCELLED,
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    notebook = models.ForeignKey("notebooks.Notebook", on_delete=models.CASCADE, related_name="%(class)ss")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="%(class)ss")
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    word_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    job_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]
