import uuid

from django.conf import settings
from django.db import models


class Podcast(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        GENERATING = "generating"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    notebook = models.ForeignKey("notebooks.Notebook", on_delete=models.CASCADE, related_name="podcasts")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="podcasts")
    title = models.CharField(max_length=200)
    # minutes (target length), focus (topic), source_ids (restrict to these sources)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    # Ordered turns: {"speaker": "A"|"B", "text", "source_ids"}; stored before synthesis starts.
    script = models.JSONField(default=list, blank=True)
    word_count = models.PositiveIntegerField(default=0)
    words_per_minute = models.FloatField(null=True, blank=True)
    expected_seconds = models.FloatField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    audio_wav = models.FileField(upload_to="podcasts/", max_length=300, blank=True)
    audio_mp3 = models.FileField(upload_to="podcasts/", max_length=300, blank=True)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    job_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title
