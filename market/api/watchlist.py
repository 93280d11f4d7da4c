"""The user's watchlist: GET it, POST an instrument onto it, DELETE one, POST a new order.

Per user, so never public (PUBLIC_MARKET_DATA does not apply): the viewer role and up. An empty
watchlist reads as every active instrument, flagged `default`, which is what the overview shows.
"""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import CanReadMarketData
from market.api.serializers import MAX_ID
from market.models import Instrument
from market.watchlist import (
    WatchlistError,
    add_to_watchlist,
    remove_from_watchlist,
    reorder_watchlist,
    watched_instruments,
)


class WatchedInstrumentSerializer(serializers.ModelSerializer[Instrument]):
    exchange = serializers.CharField(source="exchange.code", read_only=True)

    class Meta:
        model = Instrument
        fields = ["id", "exchange", "symbol", "name", "asset_class", "active"]
        read_only_fields = fields


class AddSerializer(serializers.Serializer[Any]):
    instrument = serializers.PrimaryKeyRelatedField(queryset=Instrument.objects.all())


class ReorderSerializer(serializers.Serializer[Any]):
    instruments = serializers.ListField(child=serializers.IntegerField(min_value=1), max_length=1000)


WATCHLIST = inline_serializer(
    "Watchlist",
    {
        "default": serializers.BooleanField(help_text="The list is empty: these are the active instruments"),
        "instruments": WatchedInstrumentSerializer(many=True),
    },
)


def _user_id(request: Request) -> int:
    return cast(int, request.user.pk)


def watchlist_body(request: Request) -> dict[str, Any]:
    instruments, default = watched_instruments(request.user)
    return {"default": default, "instruments": WatchedInstrumentSerializer(instruments, many=True).data}


def _refused(error: WatchlistError) -> ValidationError:
    return ValidationError({error.field: [str(error)]})


class WatchlistView(APIView):
    """The user's instruments in their order (or, while empty, the active instruments)."""

    permission_classes = [CanReadMarketData]

    @extend_schema(responses=WATCHLIST)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(watchlist_body(request))

    @extend_schema(request=AddSerializer, responses={200: WATCHLIST, 201: WATCHLIST})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Add an instrument at the end (201; 200 when it was already there)."""
        body = AddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            _, created = add_to_watchlist(_user_id(request), body.validated_data["instrument"].pk)
        except WatchlistError as error:
            raise _refused(error) from error
        return Response(watchlist_body(request), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class WatchlistInstrumentView(APIView):
    permission_classes = [CanReadMarketData]

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, instrument: int, *args: Any, **kwargs: Any) -> Response:
        """Take an instrument off the list; 404 when it is not on it."""
        # An id past the database's integer range names no instrument (and SQLite cannot even bind it).
        if instrument > MAX_ID or not remove_from_watchlist(_user_id(request), instrument):
            raise NotFound("That instrument is not on your watchlist.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class WatchlistReorderView(APIView):
    permission_classes = [CanReadMarketData]

    @extend_schema(request=ReorderSerializer, responses=WATCHLIST)
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The new order: every instrument id of the list, each once, first first."""
        body = ReorderSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            reorder_watchlist(_user_id(request), body.validated_data["instruments"])
        except WatchlistError as error:
            raise _refused(error) from error
        return Response(watchlist_body(request))
