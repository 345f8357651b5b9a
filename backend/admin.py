from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from backend import runtime
from backend.models import Batch, Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin[Job]):
    list_display = ["id", "kind", "queue", "status", "progress", "attempts", "owner", "created_at", "finished_at"]
    list_filter = ["status", "queue", "kind"]
    search_fields = ["id", "subject_id"]
    readonly_fields = [f.name for f in Job._meta.fields]
    actions = ["cancel_jobs", "retry_jobs"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        done = 0
        for job in queryset.filter(status__in=Job.ACTIVE):
            try:
                runtime.job_cancel(job=job)
                done += 1
            except runtime.JobNotCancellable:
                pass
        self.message_user(request, f"Cancelled {done} job(s).", messages.SUCCESS)

    @admin.action(description="Retry selected failed or cancelled jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        done = 0
        for job in queryset.filter(status__in=(Job.Status.FAILED, Job.Status.CANCELLED)):
            runtime.job_retry_now(job=job)
            done += 1
        self.message_user(request, f"Re-queued {done} job(s).", messages.SUCCESS)


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin[Batch]):
    list_display = ["id", "owner", "notebook_id", "label", "created_at"]
    search_fields = ["id"]
