from django.contrib import admin

from reports.models import Report


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin[Report]):
    list_display = ["__str__", "notebook", "owner", "status", "generator", "word_count", "created_at"]
    list_filter = ["status", "generator"]
    search_fields = ["title", "topic", "id"]
