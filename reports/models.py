from django.db import models

from backend.models import Artifact


class Report(Artifact):
    """A cited report on a topic (or the whole notebook); shared fields in ``Artifact``."""

    title = models.CharField(max_length=300, blank=True)
    topic = models.CharField(max_length=500, blank=True)  # empty: the whole notebook
    # options: length (short/medium/long), style (summary/briefing/study-guide), source_ids
    markdown = models.TextField(blank=True)
    html = models.TextField(blank=True)
    # [{number, source_id, source_title, chunk_id, page, quote}]
    citations = models.JSONField(default=list, blank=True)
    sections = models.JSONField(default=list, blank=True)
    generator = models.CharField(max_length=30, blank=True)
    warnings = models.JSONField(default=list, blank=True)

    class Meta(Artifact.Meta):
        pass

    def __str__(self) -> str:
        return self.title or self.topic or str(self.id)
