from django.urls import path

from podcast import apis

urlpatterns = [
    path("notebooks/<uuid:notebook_id>/podcasts/", apis.PodcastListCreateApi.as_view(), name="podcast-list"),
    path("podcasts/<uuid:podcast_id>/", apis.PodcastDetailApi.as_view(), name="podcast-detail"),
    path("podcasts/<uuid:podcast_id>/audio/", apis.PodcastAudioApi.as_view(), name="podcast-audio"),
]
