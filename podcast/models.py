from django.db import models

from backend.models import Artifact


class Podcast(Artifact):
    """A two-voice audio conversation about the notebook; shared fields in ``Artifact``."""

    title = models.CharField(max_length=200)
    # options: minutes (target length), focus (topic), source_ids (restrict to these sources)
    # Ordered turns: {"speaker": "A"|"B", "text", "source_ids"}; stored before synthesis starts.
    script = models.JSONField(default=list, blank=True)
    words_per_minute = models.FloatField(null=True, blank=True)
    expected_seconds = models.FloatField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    audio_wav = models.FileField(upload_to="podcasts/", max_length=300, blank=True)
    audio_mp3 = models.FileField(upload_to="podcasts/", max_length=300, blank=True)

    class Meta(Artifact.Meta):
        pass

    def __str__(self) -> str:
        return self.title
