"""Jobs, batches and operations endpoints."""

from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from drf_yasg.utils import no_body, swagger_auto_schema
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend import runtime, selectors
from backend.health import health_report
from backend.models import Batch, Job
from backend.serializers import BatchSerializer, JobSerializer, page_of


class JobListApi(APIView):
    class FilterSerializer(serializers.Serializer[dict[str, Any]]):
        status = serializers.ChoiceField(choices=Job.Status.choices, required=False)
        queue = serializers.ChoiceField(choices=list(settings.RQ_QUEUES), required=False)
        kind = serializers.CharField(required=False)
        notebook = serializers.UUIDField(required=False)

    @swagger_auto_schema(query_serializer=FilterSerializer, responses={200: page_of(JobSerializer)})
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = selectors.jobs_of(user=request.user, filters={k: str(v) for k, v in filters.validated_data.items()})
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(JobSerializer(page, many=True).data)


class JobDetailApi(APIView):
    @swagger_auto_schema(responses={200: JobSerializer})
    def get(self, request: Request, job_id: str) -> Response:
        job = get_object_or_404(Job, id=job_id, owner=request.user)
        return Response(JobSerializer(job).data)


class JobCancelApi(APIView):
    @swagger_auto_schema(request_body=no_body, responses={200: JobSerializer, 409: "already finished"})
    def post(self, request: Request, job_id: str) -> Response:
        job = get_object_or_404(Job, id=job_id, owner=request.user)
        job = runtime.job_cancel(job=job)
        return Response(JobSerializer(job).data)


class BatchDetailApi(APIView):
    @swagger_auto_schema(responses={200: BatchSerializer})
    def get(self, request: Request, batch_id: str) -> Response:
        batch = get_object_or_404(Batch, id=batch_id, owner=request.user)
        return Response(BatchSerializer(batch).data)


class BatchRetryFailedApi(APIView):
    class OutputSerializer(serializers.Serializer[dict[str, Any]]):
        batch = serializers.UUIDField()
        retried = serializers.ListField(child=serializers.CharField())

    @swagger_auto_schema(request_body=no_body, responses={202: OutputSerializer, 409: "the batch still runs"})
    def post(self, request: Request, batch_id: str) -> Response:
        batch = get_object_or_404(Batch, id=batch_id, owner=request.user)
        retried = runtime.batch_retry_failed(batch=batch)
        return Response(self.OutputSerializer({"batch": batch.id, "retried": retried}).data, status=202)


def healthz(request: HttpRequest) -> JsonResponse:
    report = health_report()
    return JsonResponse(report, status=200 if report["ok"] else 503)


class TokenApi(ObtainAuthToken):
    """Exchange a username and password for an API token: `Authorization: Token <token>`."""

    permission_classes = []
    authentication_classes = []
