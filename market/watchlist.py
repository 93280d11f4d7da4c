"""The user's watchlist: the one place that changes it, and the rows the overview page shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, OuterRef, Subquery
from django.utils import timezone

from market.models import Bar, CollectorStatus, Instrument, QualityReport, WatchlistEntry
from market.overview import DAY_SECONDS, SOURCE_EXCHANGES, DaySummary, collector_state, summarize_day
from market.queries import EpochSeconds

MAX_WATCHLIST = 100
# The overview subscribes to each row's 1m bars and scores 1m data quality.
OVERVIEW_TIMEFRAME = "1m"


class WatchlistError(ValueError):
    """A change the watchlist refuses; `field` names the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --- Writes ---


def add_to_watchlist(user_id: int, instrument_id: int) -> tuple[WatchlistEntry, bool]:
    """Put the instrument at the end of the user's list; (entry, created). Adding twice changes nothing."""
    existing = WatchlistEntry.objects.filter(user_id=user_id, instrument_id=instrument_id).first()
    if existing is not None:
        return existing, False
    entries = WatchlistEntry.objects.filter(user_id=user_id)
    if entries.count() >= MAX_WATCHLIST:
        raise WatchlistError("instrument", f"a watchlist holds at most {MAX_WATCHLIST} instruments")
    last = entries.aggregate(last=Max("position"))["last"]
    try:
        with transaction.atomic():
            entry = WatchlistEntry.objects.create(
                user_id=user_id, instrument_id=instrument_id, position=0 if last is None else last + 1
            )
    except IntegrityError:
        # The same add from another tab or request won the race: the unique constraint kept one.
        return WatchlistEntry.objects.get(user_id=user_id, instrument_id=instrument_id), False
    return entry, True


def remove_from_watchlist(user_id: int, instrument_id: int) -> bool:
    """Whether the instrument was on the list (and is now gone)."""
    deleted, _ = WatchlistEntry.objects.filter(user_id=user_id, instrument_id=instrument_id).delete()
    return deleted > 0


def reorder_watchlist(user_id: int, instrument_ids: list[int]) -> None:
    """Put the list in this order; the ids must be exactly the instruments on it."""
    with transaction.atomic():
        entries = {
            entry.instrument_id: entry for entry in WatchlistEntry.objects.select_for_update().filter(user_id=user_id)
        }
        if len(set(instrument_ids)) != len(instrument_ids):
            raise WatchlistError("instruments", "an instrument appears more than once")
        if set(instrument_ids) != set(entries):
            missing = sorted(set(entries) - set(instrument_ids))
            extra = sorted(set(instrument_ids) - set(entries))
            detail = "; ".join(
                part
                for part in (
                    f"missing {', '.join(map(str, missing))}" if missing else "",
                    f"not on the watchlist: {', '.join(map(str, extra))}" if extra else "",
                )
                if part
            )
            raise WatchlistError("instruments", f"give every instrument of the watchlist exactly once ({detail})")
        for position, instrument_id in enumerate(instrument_ids):
            entries[instrument_id].position = position
        WatchlistEntry.objects.bulk_update(entries.values(), ["position"])


# --- Reads ---


def watched_instruments(user: Any) -> tuple[list[Instrument], bool]:
    """The user's instruments in their order, and whether these are the default (every active
    instrument) because the user has none, or is not logged in."""
    if user.is_authenticated:
        instruments = list(
            Instrument.objects.filter(watchlist_entries__user_id=user.pk)
            .select_related("exchange")
            .order_by("watchlist_entries__position", "watchlist_entries__id")
        )
        if instruments:
            return instruments, False
    return list(Instrument.objects.active().select_related("exchange")), True


@dataclass(frozen=True)
class WatchlistRow:
    instrument: Instrument
    day: DaySummary
    quality_score: int | None
    quality_day: Any
    collector: str


def overview_rows(instruments: list[Instrument]) -> list[WatchlistRow]:
    quality = latest_quality_scores([instrument.pk for instrument in instruments])
    collectors = collector_states_by_exchange()
    return [
        WatchlistRow(
            instrument=instrument,
            day=summarize_day(day_closes(instrument.pk)),
            quality_score=quality.get(instrument.pk, (None, None))[0],
            quality_day=quality.get(instrument.pk, (None, None))[1],
            collector=collectors.get(instrument.exchange.code, "none"),
        )
        for instrument in instruments
    ]


def day_closes(instrument_id: int, timeframe: str = OVERVIEW_TIMEFRAME) -> list[tuple[int, float]]:
    """(time, close) of the last day of bars before the newest one, plus the one bar before it
    (the reference for the day's change), oldest first."""
    series = Bar.objects.for_series(instrument_id, timeframe)
    newest = series.order_by("-time").values_list("time", flat=True).first()
    if newest is None:
        return []
    start = newest - timedelta(seconds=DAY_SECONDS)
    reference = list(
        series.filter(time__lte=start)
        .order_by("-time")
        .annotate(epoch=EpochSeconds("time"))
        .values_list("epoch", "close")[:1]
    )
    day = list(
        series.filter(time__gt=start)
        .order_by("time")
        .annotate(epoch=EpochSeconds("time"))
        .values_list("epoch", "close")
    )
    return reference + day


def latest_quality_scores(instrument_ids: list[int], timeframe: str = OVERVIEW_TIMEFRAME) -> dict[int, tuple[int, Any]]:
    """instrument id -> (score, day) of its newest quality report: one index lookup per instrument."""
    newest = QualityReport.objects.filter(instrument_id=OuterRef("pk"), timeframe=timeframe).order_by("-day")
    rows = (
        Instrument.objects.filter(pk__in=instrument_ids)
        .annotate(score=Subquery(newest.values("score")[:1]), day=Subquery(newest.values("day")[:1]))
        .filter(score__isnull=False)
        .values_list("pk", "score", "day")
    )
    return {pk: (score, day) for pk, score, day in rows}


def collector_states_by_exchange() -> dict[str, str]:
    """exchange code -> the state of the best collector feeding it."""
    stale = set(
        CollectorStatus.objects.stale(timezone.now(), settings.COLLECTOR_STALE_SECONDS).values_list("pk", flat=True)
    )
    states: dict[str, list[tuple[str, bool]]] = {}
    for pk, source, state in CollectorStatus.objects.values_list("pk", "source", "state"):
        exchange = SOURCE_EXCHANGES.get(source, source)
        states.setdefault(exchange, []).append((state, pk in stale))
    return {exchange: collector_state(pairs) for exchange, pairs in states.items()}
