"""Arbitrage detection against the stored bars: read the latest prices, detect (market.arbitrage, pure),
track opportunities in `ArbitrageOpportunity` and tell the `arbitrage` WebSocket channel.

A module of its own rather than more of market/services.py (already over 400 lines, about bars):
this is the one place that writes arbitrage opportunities and publishes them, and it only needs
`publish_arbitrage_opportunities` from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, OuterRef, Subquery

from market.arbitrage import DetectionParams, Opportunity, QuoteColumns, detect_opportunities
from market.models import ArbitrageOpportunity, Bar, Instrument
from market.queries import EpochSeconds
from market.services import publish_arbitrage_opportunities
from market.timeframes import BASE_TIMEFRAME

# A 1m bar's close is the last trade of its minute: the price is taken as observed at the minute's end.
BAR_SECONDS = 60


def detection_params() -> DetectionParams:
    """The detector's parameters from settings (ARBITRAGE_* in cryptostock/settings.py)."""
    return DetectionParams(
        min_net_bps=settings.ARBITRAGE_MIN_NET_BPS,
        max_age_seconds=settings.ARBITRAGE_MAX_AGE_SECONDS,
        default_fee_bps=settings.ARBITRAGE_DEFAULT_FEE_BPS,
        fees_bps=settings.ARBITRAGE_FEES_BPS,
        quote_equivalents=settings.ARBITRAGE_QUOTE_EQUIVALENTS,
    )


def latest_quotes(now: datetime, max_age_seconds: float) -> QuoteColumns:
    """The close of the newest final 1m bar of every active instrument whose base asset is also
    quoted on another active exchange, if that bar ended within `max_age_seconds` of `now`: one query,
    two index lookups of the bar table per instrument (its time, its close; never a scan).

    Only final bars: a stored open bar (a collector stopping) has no time at which its close held."""
    since = now - timedelta(seconds=max_age_seconds + BAR_SECONDS)
    # Bars that ended by `now` only: live, every stored bar has; a detection as of a past moment
    # (the command's --now) must not see the future.
    ended = now - timedelta(seconds=BAR_SECONDS)
    newest = Bar.objects.filter(
        instrument_id=OuterRef("pk"), timeframe=BASE_TIMEFRAME, final=True, time__gte=since, time__lte=ended
    ).order_by("-time")
    # Evaluated once, not per instrument (SQLite would scan the instruments for each one).
    shared_bases = (
        Instrument.objects.active()
        .values("base")
        .annotate(exchanges=Count("exchange_id", distinct=True))
        .filter(exchanges__gt=1)
        .values("base")
    )
    query = (
        Instrument.objects.active()
        .exclude(base="")
        .exclude(quote="")
        .filter(base__in=shared_bases)
        .annotate(
            bar_time=EpochSeconds(Subquery(newest.values("time")[:1])),
            close=Subquery(newest.values("close")[:1]),
        )
        .order_by("pk")
        .values_list("pk", "exchange__code", "base", "quote", "bar_time", "close")
    )
    with transaction.atomic():
        if connections[query.db].vendor == "postgresql":
            # The planner cannot know each lookup stops at one bar, and JIT-compiled the plan: 30 ms
            # of compiling for 10,000 instruments (EXPLAIN ANALYZE).
            with connections[query.db].cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
        # Instruments without a bar in the window are dropped here: filtering on the subquery in
        # SQL made PostgreSQL run it a third time per instrument.
        rows = [row for row in query if row[4] is not None]
    return _columns(rows)


def _columns(rows: Sequence[tuple[Any, ...]]) -> QuoteColumns:
    def text(index: int) -> Any:
        column = np.empty(len(rows), dtype=object)
        column[:] = [row[index] for row in rows]
        return column

    unknown = np.full(len(rows), np.nan)
    return QuoteColumns(
        instrument_id=np.array([row[0] for row in rows], dtype=np.int64),
        venue=text(1),
        base=text(2),
        quote=text(3),
        price=np.array([row[5] for row in rows], dtype=np.float64),
        time=np.array([row[4] + BAR_SECONDS for row in rows], dtype=np.float64),
        bid=unknown,
        ask=unknown.copy(),
    )


@dataclass(frozen=True)
class Tracked:
    opened: int
    updated: int
    closed: int
    unchanged: int


@dataclass(frozen=True)
class DetectionRun:
    quotes: int
    opportunities: list[Opportunity]
    tracked: Tracked

    def __str__(self) -> str:
        t = self.tracked
        return (
            f"{self.quotes} quotes, {len(self.opportunities)} opportunities: "
            f"{t.opened} opened, {t.updated} updated, {t.closed} closed, {t.unchanged} unchanged"
        )


def detect_arbitrage(now: datetime, params: DetectionParams | None = None) -> DetectionRun:
    """Detect on the latest stored prices and track the result (what the beat task runs)."""
    params = params or detection_params()
    quotes = latest_quotes(now, params.max_age_seconds)
    found = detect_opportunities(quotes, params, now.timestamp())
    return DetectionRun(len(quotes), found, track_opportunities(found, now))


def track_opportunities(found: Sequence[Opportunity], now: datetime) -> Tracked:
    """Open, update and close `ArbitrageOpportunity` rows from one detection at `now`, and publish
    each change to the `arbitrage` channel once committed.

    A pair's row stays open while detections find it; one that does not (spread at or below the
    threshold, a quote gone stale) closes it at `now`. Only a newer observation updates an open row,
    so the same detection applied twice changes nothing the second time. One statement per kind of
    change (insert, update, close), whatever the number of rows: a detection can touch hundreds."""
    with transaction.atomic():
        open_rows = {
            (row.base, row.quote): row
            for row in ArbitrageOpportunity.objects.open()
            .select_for_update()
            .select_related("buy_instrument__exchange", "sell_instrument__exchange")
        }
        opened, updated, unchanged = [], [], 0
        for opportunity in found:
            row = open_rows.pop((opportunity.base, opportunity.quote), None)
            if row is None:
                opened.append((_new_row(opportunity), opportunity))
            elif _utc(opportunity.observed_at) > row.last_seen_at:
                _apply(row, opportunity)
                updated.append((row, opportunity))
            else:
                unchanged += 1
        ArbitrageOpportunity.objects.bulk_create([row for row, _ in opened])
        _save_fields([row for row, _ in updated], UPDATED_FIELDS)
        closed = list(open_rows.values())
        for row in closed:
            row.closed_at = max(now, row.opened_at)
        _save_fields(closed, ["closed_at"])
        frames = [
            *(opportunity_frame("opened", row.pk, o, row.max_net_bps) for row, o in opened),
            *(opportunity_frame("updated", row.pk, o, row.max_net_bps) for row, o in updated),
            *(closed_frame(row) for row in closed),
        ]
        if frames:
            transaction.on_commit(lambda: publish_arbitrage_opportunities(frames))
    return Tracked(len(opened), len(updated), len(closed), unchanged)


def _new_row(opportunity: Opportunity) -> ArbitrageOpportunity:
    observed = _utc(opportunity.observed_at)
    return ArbitrageOpportunity(
        base=opportunity.base,
        quote=opportunity.quote,
        symbol=opportunity.symbol,
        buy_instrument_id=opportunity.buy_instrument_id,
        sell_instrument_id=opportunity.sell_instrument_id,
        buy_price=opportunity.buy_price,
        sell_price=opportunity.sell_price,
        first_net_bps=opportunity.net_bps,
        last_net_bps=opportunity.net_bps,
        last_gross_bps=opportunity.gross_bps,
        max_net_bps=opportunity.net_bps,
        max_gross_bps=opportunity.gross_bps,
        max_buy_instrument_id=opportunity.buy_instrument_id,
        max_sell_instrument_id=opportunity.sell_instrument_id,
        buy_price_at_max=opportunity.buy_price,
        sell_price_at_max=opportunity.sell_price,
        max_at=observed,
        opened_at=observed,
        last_seen_at=observed,
    )


UPDATED_FIELDS = [
    "buy_instrument",
    "sell_instrument",
    "buy_price",
    "sell_price",
    "last_net_bps",
    "last_gross_bps",
    "last_seen_at",
    "updates",
    "max_net_bps",
    "max_gross_bps",
    "max_buy_instrument",
    "max_sell_instrument",
    "buy_price_at_max",
    "sell_price_at_max",
    "max_at",
]


def _save_fields(rows: Sequence[ArbitrageOpportunity], names: Sequence[str]) -> None:
    """UPDATE these fields of these rows: one statement run with each row's values (executemany,
    which psycopg sends as one pipeline). Not `bulk_update`: its CASE WHEN per field and row took
    Django half a second to build for a hundred rows (profiled in bench_arbitrage), more than the
    detection's read."""
    if not rows:
        return
    by_name = {field.name: field for field in ArbitrageOpportunity._meta.concrete_fields}
    fields = [by_name[name] for name in names]
    connection = connections[ArbitrageOpportunity.objects.db]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(str(field.column))} = %s" for field in fields)
    sql = f"UPDATE {quote(ArbitrageOpportunity._meta.db_table)} SET {assignments} WHERE id = %s"
    values = [
        [field.get_db_prep_save(getattr(row, field.attname), connection) for field in fields] + [row.pk] for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, values)


def _apply(row: ArbitrageOpportunity, opportunity: Opportunity) -> None:
    """A newer observation of an open opportunity, onto its row (saved by the caller)."""
    observed = _utc(opportunity.observed_at)
    row.buy_instrument_id = opportunity.buy_instrument_id
    row.sell_instrument_id = opportunity.sell_instrument_id
    row.buy_price = opportunity.buy_price
    row.sell_price = opportunity.sell_price
    row.last_net_bps = opportunity.net_bps
    row.last_gross_bps = opportunity.gross_bps
    row.last_seen_at = observed
    row.updates += 1
    if opportunity.net_bps > row.max_net_bps:
        row.max_net_bps = opportunity.net_bps
        row.max_gross_bps = opportunity.gross_bps
        row.max_buy_instrument_id = opportunity.buy_instrument_id
        row.max_sell_instrument_id = opportunity.sell_instrument_id
        row.buy_price_at_max = opportunity.buy_price
        row.sell_price_at_max = opportunity.sell_price
        row.max_at = observed


def opportunity_frame(event: str, opportunity_id: int, opportunity: Opportunity, max_net_bps: float) -> dict[str, Any]:
    """The `arbitrage` frame of an opened or updated opportunity (docs/websocket.md), without `type`."""
    return {
        "event": event,
        "id": opportunity_id,
        "symbol": opportunity.symbol,
        "buy": {
            "exchange": opportunity.buy_venue,
            "instrument": opportunity.buy_instrument_id,
            "price": opportunity.buy_price,
        },
        "sell": {
            "exchange": opportunity.sell_venue,
            "instrument": opportunity.sell_instrument_id,
            "price": opportunity.sell_price,
        },
        "spread_bps": opportunity.net_bps,
        "gross_spread_bps": opportunity.gross_bps,
        "max_spread_bps": max_net_bps,
        "at": _iso(_utc(opportunity.observed_at)),
    }


def closed_frame(row: ArbitrageOpportunity) -> dict[str, Any]:
    """The frame of a closed opportunity: its last legs and spreads, `at` the time it closed."""
    assert row.closed_at is not None
    return {
        "event": "closed",
        "id": row.pk,
        "symbol": row.symbol,
        "buy": {
            "exchange": row.buy_instrument.exchange.code,
            "instrument": row.buy_instrument_id,
            "price": row.buy_price,
        },
        "sell": {
            "exchange": row.sell_instrument.exchange.code,
            "instrument": row.sell_instrument_id,
            "price": row.sell_price,
        },
        "spread_bps": row.last_net_bps,
        "gross_spread_bps": row.last_gross_bps,
        "max_spread_bps": row.max_net_bps,
        "at": _iso(row.closed_at),
    }


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
