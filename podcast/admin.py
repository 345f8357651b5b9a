from django.contrib import admin

from podcast.models import Podcast


@admin.register(Podcast)
class PodcastAdmin(admin.ModelAdmin[Podcast]):
    list_display = ["title", "notebook", "owner", "status", "duration_seconds", "created_at"]
    list_filter = ["status"]
    search_fields = ["title", "id"]
