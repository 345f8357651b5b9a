from typing import Any

from django.conf import settings
from django.http import HttpResponseBase
from django.shortcuts import get_object_or_404
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from backend.artifact_apis import ArtifactDetailApi, ArtifactListCreateApi, ArtifactSerializer
from backend.errors import Conflict, DomainError
from backend.http import IgnoreFormatParameter, ranged_file_response
from notebooks import selectors as notebook_selectors
from podcast import selectors, services
from podcast.models import Podcast


class PodcastSerializer(ArtifactSerializer):
    audio = serializers.SerializerMethodField()

    class Meta:
        model = Podcast
        fields = [
            *ArtifactSerializer.FIELDS, "words_per_minute", "expected_seconds", "duration_seconds", "audio"
        ]  # fmt: skip

    def get_audio(self, podcast: Podcast) -> dict[str, str] | None:
        if podcast.status != Podcast.Status.COMPLETED:
            return None
        base = f"/api/v1/podcasts/{podcast.id}/audio/"
        return {"mp3": f"{base}?format=mp3", "wav": f"{base}?format=wav"}


class PodcastDetailSerializer(PodcastSerializer):
    class Meta(PodcastSerializer.Meta):
        fields = [*PodcastSerializer.Meta.fields, "script"]


class PodcastInputSerializer(serializers.Serializer[dict[str, Any]]):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    minutes = serializers.FloatField(min_value=0.5, default=3.0)
    focus = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    source_ids = serializers.ListField(child=serializers.UUIDField(), required=False, default=list)

    def validate_minutes(self, value: float) -> float:
        if value > settings.QUIRE_PODCAST_MAX_MINUTES:
            raise serializers.ValidationError(f"At most {settings.QUIRE_PODCAST_MAX_MINUTES:g} minutes.")
        return value


class PodcastListCreateApi(ArtifactListCreateApi):
    serializer = PodcastSerializer
    detail_serializer = PodcastDetailSerializer
    input_serializer = PodcastInputSerializer
    notebooks = staticmethod(notebook_selectors.notebooks_of)
    of_notebook = staticmethod(selectors.podcasts_of_notebook)
    create = staticmethod(services.podcast_create)


class PodcastDetailApi(ArtifactDetailApi):
    serializer = PodcastDetailSerializer
    lookup = "podcast_id"
    of_user = staticmethod(selectors.podcasts_of)
    delete_one = staticmethod(services.podcast_delete)


class PodcastAudioApi(APIView):
    content_negotiation_class = IgnoreFormatParameter

    def get(self, request: Request, podcast_id: str) -> HttpResponseBase:
        podcast = get_object_or_404(selectors.podcasts_of(user=request.user), id=podcast_id)
        fmt = request.query_params.get("format", "mp3")
        if fmt not in ("mp3", "wav"):
            raise DomainError("format must be mp3 or wav.", code="BAD_FORMAT")
        stored = podcast.audio_mp3 if fmt == "mp3" else podcast.audio_wav
        if podcast.status != Podcast.Status.COMPLETED or not stored:
            raise Conflict(f"The podcast is {podcast.status}; it has no audio yet.", code="NO_AUDIO")
        return ranged_file_response(
            request, stored.name or "", "audio/mpeg" if fmt == "mp3" else "audio/wav", f"podcast-{podcast.id}.{fmt}"
        )
