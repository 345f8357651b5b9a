from django.contrib import admin

from notebooks.models import Notebook, Source


@admin.register(Notebook)
class NotebookAdmin(admin.ModelAdmin[Notebook]):
    list_display = ["title", "owner", "created_at"]
    search_fields = ["title", "owner__username"]


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin[Source]):
    list_display = ["title", "notebook", "kind", "content_type", "status", "chunk_count", "created_at"]
    list_filter = ["status", "kind", "content_type"]
    search_fields = ["title", "id", "original_filename", "url"]
    readonly_fields = ["text", "content_hash", "job_id"]
