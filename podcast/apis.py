from typing import Any

from django.conf import settings
from django.http import HttpResponseBase
from django.shortcuts import get_object_or_404
from drf_yasg.utils import swagger_auto_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.errors import DomainError
from backend.http import IgnoreFormatParameter, ranged_file_response
from backend.serializers import JobSerializer
from backend.throttles import EnqueueThrottle
from notebooks import selectors as notebook_selectors
from podcast import selectors, services
from podcast.models import Podcast


class PodcastSerializer(serializers.ModelSerializer[Podcast]):
    notebook = serializers.UUIDField(source="notebook_id")
    job = serializers.SerializerMethodField()
    audio = serializers.SerializerMethodField()

    class Meta:
        model = Podcast
        fields = [
            "id", "notebook", "title", "options", "status", "word_count", "words_per_minute",
            "expected_seconds", "duration_seconds", "error", "error_code", "job", "audio", "created_at",
            "completed_at",
        ]  # fmt: skip

    def get_job(self, podcast: Podcast) -> dict[str, Any] | None:
        job = selectors.podcast_job(podcast=podcast, jobs=self.context.get("jobs"))
        return dict(JobSerializer(job).data) if job else None

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


class PodcastListCreateApi(APIView):
    throttle_classes = [EnqueueThrottle]

    @swagger_auto_schema(responses={200: PodcastSerializer(many=True)})
    def get(self, request: Request, notebook_id: str) -> Response:
        notebook = get_object_or_404(notebook_selectors.notebooks_of(user=request.user), id=notebook_id)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.podcasts_of_notebook(notebook=notebook), request, view=self) or []
        jobs = selectors.jobs_of(podcasts=page)
        return paginator.get_paginated_response(PodcastSerializer(page, many=True, context={"jobs": jobs}).data)

    @swagger_auto_schema(request_body=PodcastInputSerializer, responses={202: PodcastDetailSerializer})
    def post(self, request: Request, notebook_id: str) -> Response:
        notebook = get_object_or_404(notebook_selectors.notebooks_of(user=request.user), id=notebook_id)
        data = PodcastInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        podcast = services.podcast_create(
            notebook=notebook,
            owner=request.user,
            title=data.validated_data["title"],
            minutes=data.validated_data["minutes"],
            focus=data.validated_data["focus"],
            source_ids=[str(s) for s in data.validated_data["source_ids"]],
        )
        return Response(PodcastDetailSerializer(podcast).data, status=status.HTTP_202_ACCEPTED)


def _podcast(request: Request, podcast_id: str) -> Podcast:
    return get_object_or_404(selectors.podcasts_of(user=request.user), id=podcast_id)


class PodcastDetailApi(APIView):
    @swagger_auto_schema(responses={200: PodcastDetailSerializer})
    def get(self, request: Request, podcast_id: str) -> Response:
        return Response(PodcastDetailSerializer(_podcast(request, podcast_id)).data)

    def delete(self, request: Request, podcast_id: str) -> Response:
        services.podcast_delete(podcast=_podcast(request, podcast_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PodcastAudioApi(APIView):
    content_negotiation_class = IgnoreFormatParameter

    def get(self, request: Request, podcast_id: str) -> HttpResponseBase:
        podcast = _podcast(request, podcast_id)
        fmt = request.query_params.get("format", "mp3")
        if fmt not in ("mp3", "wav"):
            raise DomainError("format must be mp3 or wav.", code="BAD_FORMAT")
        stored = podcast.audio_mp3 if fmt == "mp3" else podcast.audio_wav
        if podcast.status != Podcast.Status.COMPLETED or not stored:
            raise DomainError(
                f"The podcast is {podcast.status}; it has no audio yet.", code="NO_AUDIO", status_code=409
            )
        return ranged_file_response(
            request, stored.name or "", "audio/mpeg" if fmt == "mp3" else "audio/wav", f"podcast-{podcast.id}.{fmt}"
        )
