import uuid

from django.conf import settings
from django.db import models


class Notebook(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notebooks")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # Bumped in the transaction that changes the notebook's chunks: search caches key on it.
    chunks_version = models.PositiveIntegerField(default=0)
    overview = models.JSONField(null=True, blank=True)
    overview_updated_at = models.DateTimeField(null=True, blank=True)
    # The overview rebuild that is queued and has not started yet, if any: claimed with a
    # conditional UPDATE so batches ending together queue one rebuild, not one each.
    overview_waiting_job_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title


class Source(models.Model):
    class Kind(models.TextChoices):
        FILE = "file"
        URL = "url"
        TEXT = "text"
        NOTE = "note"  # an answer saved from the ask feature, with its citations

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    notebook = models.ForeignKey(Notebook, on_delete=models.CASCADE, related_name="sources")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    title = models.CharField(max_length=300, blank=True)
    # The web site a page came from ("BBC News"), taken off its title; empty for other kinds.
    site = models.CharField(max_length=200, blank=True, default="")
    # What produced the text (pypdf, python-docx, trafilatura, densest-block, full-text, text,
    # markdown): a page whose article extractor kept a stub says so.
    extractor = models.CharField(max_length=30, blank=True, default="")
    # Stored under a generated name; the client's filename is metadata only, never a path.
    file = models.FileField(upload_to="sources/", max_length=300, blank=True)
    original_filename = models.CharField(max_length=300, blank=True)
    url = models.URLField(max_length=2000, blank=True)
    content_type = models.CharField(max_length=20, blank=True)  # detected: pdf, docx, txt, md, html
    size = models.PositiveBigIntegerField(default=0)
    content_hash = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    text = models.TextField(blank=True)
    page_count = models.PositiveIntegerField(default=0)
    word_count = models.PositiveIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0)
    # Recordings: the language asked for at upload ("" = detect) or detected, the seconds of
    # audio, and the timed transcript [{start, end, text}] whose lines make up `text`.
    language = models.CharField(max_length=16, blank=True, default="")
    duration = models.FloatField(null=True, blank=True)
    transcript = models.JSONField(default=list, blank=True)
    job_id = models.CharField(max_length=64, blank=True)
    # A note's citations ([{number, source_id, chunk_id, page, quote}]): links to the passages
    # the saved answer quoted.
    citations = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.title or str(self.id)


class Chunk(models.Model):
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="chunks")
    # Denormalised so search reads one notebook's chunks without a join.
    notebook = models.ForeignKey(Notebook, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField()
    text = models.TextField()
    token_count = models.PositiveIntegerField()
    char_start = models.PositiveIntegerField()
    char_end = models.PositiveIntegerField()
    page = models.PositiveIntegerField(null=True, blank=True)
    # The media time (seconds) a recording's passage covers; null for documents.
    time_start = models.FloatField(null=True, blank=True)
    time_end = models.FloatField(null=True, blank=True)
    embedding = models.BinaryField()  # float32, L2-normalised

    class Meta:
        ordering = ["source_id", "position"]
        constraints = [models.UniqueConstraint(fields=["source", "position"], name="chunk_unique_position")]

    def __str__(self) -> str:
        return f"{self.source_id}#{self.position}"


class Question(models.Model):
    """A question asked of a notebook, and its answer. History is per user: only the asker sees it."""

    class Status(models.TextChoices):
        PENDING = "pending"
        ANSWERING = "answering"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    notebook = models.ForeignKey(Notebook, on_delete=models.CASCADE, related_name="questions")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="questions")
    # The earlier turn this one follows up (a conversation is a chain of questions).
    previous = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="follow_ups")
    question = models.TextField()
    source_ids = models.JSONField(default=list, blank=True)  # empty: every ready source
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    answer = models.TextField(blank=True)
    answered = models.BooleanField(default=False)  # false: declined (or not answered yet)
    # [{number, source_id, source_title, chunk_id, position, page, quote, start, end}]
    citations = models.JSONField(default=list, blank=True)
    answerer = models.CharField(max_length=30, blank=True)
    note = models.ForeignKey(Source, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    job_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["notebook", "owner", "-created_at"], name="question_history")]

    def __str__(self) -> str:
        return self.question[:80]
