import uuid

from django.conf import settings
from django.db import models


class Report(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        GENERATING = "generating"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    notebook = models.ForeignKey("notebooks.Notebook", on_delete=models.CASCADE, related_name="reports")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reports")
    title = models.CharField(max_length=300, blank=True)
    topic = models.CharField(max_length=500, blank=True)  # empty: the whole notebook
    # length (short/medium/long), style (summary/briefing/study-guide), source_ids
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    markdown = models.TextField(blank=True)
    html = models.TextField(blank=True)
    # [{number, source_id, source_title, chunk_id, page, quote}]
    citations = models.JSONField(default=list, blank=True)
    sections = models.JSONField(default=list, blank=True)
    word_count = models.PositiveIntegerField(default=0)
    generator = models.CharField(max_length=30, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    job_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title or self.topic or str(self.id)
