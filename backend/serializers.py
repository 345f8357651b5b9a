import functools
from typing import Any, cast

from rest_framework import serializers

from backend.models import Batch, Job
from backend.runtime import dispatch
from backend.runtime import rq as rq_adapter


class JobSerializer(serializers.ModelSerializer[Job]):
    subject = serializers.SerializerMethodField()
    notebook = serializers.UUIDField(source="notebook_id", allow_null=True)
    batch = serializers.UUIDField(source="batch_id", allow_null=True)
    queue_position = serializers.SerializerMethodField()
    workers = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "queue",
            "status",
            "progress",
            "message",
            "attempts",
            "max_attempts",
            "error",
            "error_code",
            "result",
            "subject",
            "notebook",
            "batch",
            "priority",
            "queue_position",
            "workers",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_subject(self, job: Job) -> dict[str, str] | None:
        if not job.subject_type:
            return None
        return {"type": job.subject_type.rsplit(".", 1)[-1], "id": job.subject_id}

    def get_queue_position(self, job: Job) -> int | None:
        """1 = next to run. Only while queued; None when Redis cannot say, and in events (the
        "queued" event is published before the push, and a position goes stale at once)."""
        if job.status != Job.Status.QUEUED or self.context.get("event"):
            return None
        try:
            if job.dispatched_at is None and dispatch.is_fair(job.queue):
                # Shared by the jobs of one response (an upload lists each job twice).
                return dispatch.fair_position(job, cast(dict[str, Any], self.context).setdefault("fair_memo", {}))
            return rq_adapter.queue_position(job.queue, job.id)
        except Exception:
            return None

    def get_workers(self, job: Job) -> int | None:
        """Live workers on the job's queue while it waits, so a client can say why it waits."""
        if job.status not in (Job.Status.QUEUED, Job.Status.RETRYING):
            return None
        # Counted once per queue for a whole response (an upload lists a job per file); the
        # events' shared serializer counts afresh each time.
        context = cast(dict[str, Any], self.context)
        counts: dict[str, int | None] = {} if context.get("event") else context.setdefault("workers", {})
        if job.queue not in counts:
            try:
                counts[job.queue] = rq_adapter.live_worker_count(job.queue)
            except Exception:
                counts[job.queue] = None
        return counts[job.queue]


class BatchSerializer(serializers.ModelSerializer[Batch]):
    notebook = serializers.UUIDField(source="notebook_id", allow_null=True)
    totals = serializers.SerializerMethodField()
    succeeded = serializers.SerializerMethodField()
    failed = serializers.SerializerMethodField()
    failures = serializers.SerializerMethodField()
    coverage = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    jobs = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = [
            "id",
            "notebook",
            "label",
            "status",
            "progress",
            "totals",
            "succeeded",
            "failed",
            "failures",
            "coverage",
            "jobs",
            "created_at",
        ]

    def _jobs(self, batch: Batch) -> list[Job]:
        # Every field reads the same jobs: load them once per serialized batch.
        cached: tuple[Any, list[Job]] | None = getattr(self, "_jobs_cache", None)
        if cached is None or cached[0] != batch.pk:
            cached = (batch.pk, list(batch.jobs.order_by("created_at")))
            self._jobs_cache = cached
        return cached[1]

    def get_totals(self, batch: Batch) -> dict[str, int]:
        jobs = self._jobs(batch)
        counts = {status: 0 for status in Job.Status.values}
        for job in jobs:
            counts[job.status] += 1
        return {"total": len(jobs), **counts}

    def get_succeeded(self, batch: Batch) -> int:
        return sum(job.status == Job.Status.SUCCEEDED for job in self._jobs(batch))

    def get_failed(self, batch: Batch) -> int:
        return sum(job.status == Job.Status.FAILED for job in self._jobs(batch))

    def get_failures(self, batch: Batch) -> list[dict[str, Any]]:
        """Failed jobs grouped by error code, most frequent first."""
        counts: dict[str, int] = {}
        for job in self._jobs(batch):
            if job.status == Job.Status.FAILED:
                code = job.error_code or "UNKNOWN"
                counts[code] = counts.get(code, 0) + 1
        return [{"error_code": c, "count": n} for c, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]

    def get_coverage(self, batch: Batch) -> str:
        """One readable line: "423 of 501 ready, 78 failed: 60 EXTRACTION_FAILED, 18 FETCH_BLOCKED"."""
        jobs = self._jobs(batch)
        line = f"{self.get_succeeded(batch)} of {len(jobs)} ready"
        failed = self.get_failed(batch)
        if failed:
            line += f", {failed} failed: " + ", ".join(
                f"{f['count']} {f['error_code']}" for f in self.get_failures(batch)
            )
        waiting = sum(job.status in Job.ACTIVE for job in jobs)
        if waiting:
            line += f", {waiting} still in progress"
        cancelled = sum(job.status == Job.Status.CANCELLED for job in jobs)
        if cancelled:
            line += f", {cancelled} cancelled"
        return line

    def get_status(self, batch: Batch) -> str:
        jobs = self._jobs(batch)
        if any(job.status in Job.ACTIVE for job in jobs):
            return "running" if any(job.status != Job.Status.QUEUED for job in jobs) else "queued"
        if jobs and all(job.status == Job.Status.SUCCEEDED for job in jobs):
            return "succeeded"
        if any(job.status == Job.Status.FAILED for job in jobs):
            return "failed" if not any(job.status == Job.Status.SUCCEEDED for job in jobs) else "partial"
        return "cancelled" if jobs else "empty"

    def get_progress(self, batch: Batch) -> int:
        jobs = self._jobs(batch)
        if not jobs:
            return 0
        return round(sum(100 if job.is_terminal else job.progress for job in jobs) / len(jobs))

    def get_jobs(self, batch: Batch) -> list[dict[str, Any]]:
        return [dict(job) for job in JobSerializer(self._jobs(batch), many=True, context=self.context).data]


@functools.cache
def page_of(item: type[serializers.Serializer[Any]], *, paged: bool = True) -> type[serializers.Serializer[Any]]:
    """The body of a list response, for Swagger: ``{count, next, previous, results}`` for a list
    paged by limit/offset (50 a page), ``{results}`` for one that is not."""
    fields: dict[str, Any] = {"results": item(many=True)}
    if paged:
        fields.update(
            count=serializers.IntegerField(),
            next=serializers.URLField(allow_null=True),
            previous=serializers.URLField(allow_null=True),
        )
    name = item.__name__.removesuffix("Serializer") + ("Page" if paged else "List")
    return type(name, (serializers.Serializer,), fields)
