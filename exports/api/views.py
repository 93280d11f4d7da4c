"""Exports over the API: a streamed export of bars, and background exports (each user's own only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import FileResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.permissions import CanOwnExports, IsOwner, OwnedObjectsMixin
from cryptostock.api_schema import ErrorSerializer
from exports import services
from exports.api.serializers import ExportQuerySerializer, ExportSerializer
from exports.models import Export, ExportStatus
from exports.naming import download_name
from exports.streams import count_bars, export_bytes
from exports.writers import CONTENT_TYPES
from market.api.views import query_data
from market.models import Instrument

FILE_RESPONSES: dict[Any, Any] = {
    (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV with a header line"),
    (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="JSON Lines: one bar per line"),
    (200, "application/vnd.apache.parquet"): OpenApiResponse(OpenApiTypes.BINARY, description="Parquet"),
}


class PulledChunks:
    """Under ASGI, Django reads a synchronous streaming body into one list before sending any of it
    (`StreamingHttpResponse.__aiter__`): a million-bar export would sit in memory whole. Here each
    piece is pulled from the iterator on the request's thread (thread-sensitive, where its database
    connection lives) and sent before the next is made. Under WSGI nothing changes."""

    streaming_content: Any

    async def __aiter__(self) -> AsyncIterator[bytes]:
        iterator = iter(self.streaming_content)
        pull: Any = sync_to_async(next, thread_sensitive=True)
        done = object()
        while (piece := await pull(iterator, done)) is not done:
            yield piece


class StreamingExportResponse(PulledChunks, StreamingHttpResponse):
    pass


class ExportFileResponse(PulledChunks, FileResponse):
    pass


class _SettingsWithoutFormatOverride:
    """DRF's settings, except that `?format=` does not choose a renderer."""

    URL_FORMAT_OVERRIDE = None

    def __getattr__(self, name: str) -> Any:
        return getattr(api_settings, name)


class FileFormatNegotiation(DefaultContentNegotiation):
    """DRF reads `?format=` as the renderer to answer with and answers 404 for one it lacks
    (`parquet`): here `format` is the file's format, a parameter like any other, and errors are JSON."""

    settings = _SettingsWithoutFormatOverride()  # type: ignore[assignment]


class ExportBarsView(APIView):
    """Bars of one instrument and timeframe in [start, end) as a file, streamed as it is read.

    Parameters and their errors are those of `/api/v1/bars/`; a range holding more than
    EXPORT_MAX_ROWS bars is refused: use a background export (`POST /api/v1/exports/`)."""

    permission_classes = [CanOwnExports]
    content_negotiation_class = FileFormatNegotiation

    @extend_schema(parameters=[ExportQuerySerializer], responses=FILE_RESPONSES, summary="Export bars as a file")
    def get(self, request: Request, version: str) -> StreamingHttpResponse:
        query = ExportQuerySerializer(data=query_data(request))
        query.is_valid(raise_exception=True)
        params = query.validated_data
        instrument = Instrument.objects.select_related("exchange").filter(pk=params["instrument"]).first()
        if instrument is None:
            raise serializers.ValidationError({"instrument": [f"no instrument with id {params['instrument']}"]})
        series = (instrument.pk, params["timeframe"], params.get("start"), params.get("end"))
        limit = settings.EXPORT_MAX_ROWS
        if count_bars(*series, at_most=limit + 1) > limit:
            raise serializers.ValidationError(
                {
                    "end": [
                        f"more than {limit:,} bars in this range: narrow it, or use a background export "
                        "(POST /api/v1/exports/)"
                    ]
                }
            )
        fmt = params["format"]
        response = StreamingExportResponse(export_bytes(fmt, *series), content_type=CONTENT_TYPES[fmt])
        name = download_name(instrument.exchange.code, instrument.symbol, *series[1:], fmt)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class ExportNotReady(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "not_ready"
    default_detail = "The export is not done."


class ExportFileGone(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_code = "gone"
    default_detail = "The export's file is no longer there; create the export again."


class ExportViewSet(
    OwnedObjectsMixin[Export],
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Export],
):
    """The user's background exports, newest first. Create one, poll it until `status` is `done` (or
    `failed`, with `error`), download it; it is deleted `EXPORT_TTL_HOURS` after it finished."""

    permission_classes = [CanOwnExports, IsOwner]
    queryset = Export.objects.select_related("instrument__exchange")
    serializer_class = ExportSerializer
    lookup_value_regex = r"\d+"

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        export = services.create_export(
            request.user,
            Instrument.objects.get(pk=data["instrument_id"]),
            data["timeframe"],
            data.get("start"),
            data.get("end"),
            data["format"],
            now=timezone.now(),
        )
        return Response(self.get_serializer(export).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Export) -> None:
        services.delete_export(instance)

    @extend_schema(
        responses={
            **FILE_RESPONSES,
            409: OpenApiResponse(ErrorSerializer, description="Not done yet (pending, running or failed)"),
            410: OpenApiResponse(ErrorSerializer, description="The file is gone"),
        },
        summary="Download a done export",
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, *args: Any, **kwargs: Any) -> FileResponse:
        export = self.get_object()
        if export.status != ExportStatus.DONE:
            raise ExportNotReady(f"The export is {export.status}, not done; try again when it is.")
        path = services.export_path(export)
        try:
            file = path.open("rb") if path is not None else None
        except FileNotFoundError:
            file = None
        if file is None:
            raise ExportFileGone()
        instrument = export.instrument
        name = download_name(
            instrument.exchange.code, instrument.symbol, export.timeframe, export.start, export.end, export.format
        )
        return ExportFileResponse(file, as_attachment=True, filename=name, content_type=CONTENT_TYPES[export.format])
