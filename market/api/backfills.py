"""/api/v1/backfills/: history backfills over the API, for whoever may manage collectors (the admin
role): start one (it runs in a worker), follow its progress, resume one that failed.

The same jobs as `manage.py backfill` and the admin's (market.backfill, docs/scheduled.md): asking
again for a span that is already done or underway gives that job back instead of a second one.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import CanManageCollectors
from cryptostock.api_schema import ErrorSerializer
from market.api.serializers import reject_empty_span
from market.api.views import validated_query
from market.backfill import BackfillError, plan_backfill, queue_backfill, source_of
from market.models import TIMEFRAME_CHOICES, BackfillJob, BackfillStatus, Instrument

# A running job that has not stored a page for this long lost its worker (killed, not stopped):
# it may be resumed. A live one saves its checkpoint after every page, seconds apart.
ABANDONED_AFTER = timedelta(minutes=15)


class Running(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "running"
    default_detail = "This job is running in a worker now; follow it at its URL."


class BackfillRequestSerializer(serializers.Serializer[Any]):
    instrument = serializers.PrimaryKeyRelatedField(queryset=Instrument.objects.select_related("exchange"))
    timeframe = serializers.ChoiceField(choices=TIMEFRAME_CHOICES, default="1m")
    start = serializers.DateTimeField(default_timezone=UTC, help_text="First bar time wanted")
    end = serializers.DateTimeField(
        required=False, default_timezone=UTC, help_text="Bars before this time; absent: up to now"
    )
    restart = serializers.BooleanField(default=False, help_text="Fetch again what an earlier job already stored")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_empty_span(attrs)
        return attrs


class BackfillQuerySerializer(serializers.Serializer[Any]):
    instrument = serializers.IntegerField(min_value=1, required=False)
    status = serializers.ChoiceField(choices=BackfillStatus.choices, required=False)


class BackfillJobSerializer(serializers.ModelSerializer[BackfillJob]):
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    exchange = serializers.CharField(source="instrument.exchange.code", read_only=True)
    progress = serializers.SerializerMethodField(help_text="Share of the span stored so far, 0 to 1")

    class Meta:
        model = BackfillJob
        fields = [
            "id", "source", "instrument", "symbol", "exchange", "timeframe", "start", "end", "cursor", "progress",
            "status", "pages", "bars", "error", "gap_fill", "created_at", "updated_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_progress(self, job: BackfillJob) -> float:
        span = (job.end - job.start).total_seconds()
        return round((job.cursor - job.start).total_seconds() / span, 4) if span > 0 else 1.0


class BackfillViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[BackfillJob]):
    """Backfill jobs, newest first: started here, by `manage.py backfill`, or by a collector's gap."""

    permission_classes = [CanManageCollectors]
    serializer_class = BackfillJobSerializer
    queryset = BackfillJob.objects.select_related("instrument__exchange")
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[BackfillJob]:
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        params = validated_query(BackfillQuerySerializer, self.request)
        if "instrument" in params:
            queryset = queryset.filter(instrument_id=params["instrument"])
        if "status" in params:
            queryset = queryset.filter(status=params["status"])
        return queryset

    @extend_schema(parameters=[BackfillQuerySerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=BackfillRequestSerializer,
        responses={
            202: OpenApiResponse(BackfillJobSerializer, description="Queued: a worker fetches it"),
            200: OpenApiResponse(BackfillJobSerializer, description="Already done: nothing queued"),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        wanted = BackfillRequestSerializer(data=request.data)
        wanted.is_valid(raise_exception=True)
        params = wanted.validated_data
        instrument = params["instrument"]
        try:
            job = plan_backfill(
                source_of(instrument),
                instrument,
                params["timeframe"],
                params["start"],
                params.get("end"),
                timezone.now(),
                restart=params["restart"],
            )
        except BackfillError as exc:
            raise ValidationError({"instrument": [str(exc)]}) from exc
        return self._queued(job)

    @extend_schema(
        request=None,
        responses={
            202: OpenApiResponse(BackfillJobSerializer, description="Queued again from its checkpoint"),
            200: OpenApiResponse(BackfillJobSerializer, description="Already done: nothing queued"),
            409: OpenApiResponse(ErrorSerializer, description="Running in a worker now"),
        },
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        job = self.get_object()
        running = job.status == BackfillStatus.RUNNING and job.updated_at > timezone.now() - ABANDONED_AFTER
        if running:
            raise Running()
        return self._queued(job)

    def _queued(self, job: BackfillJob) -> Response:
        if job.status == BackfillStatus.DONE:
            return Response(BackfillJobSerializer(job).data, status=status.HTTP_200_OK)
        queue_backfill(job.pk)
        return Response(BackfillJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
