"""Latest indicator values published with each final bar (the hook `market.services.publish_bars` calls).

Each process keeps one `LiveIndicators` per series it has published, opened on a window of the
series' recent stored bars the first time and then advanced by one O(1) update per closed bar
(~20 microseconds for the 13 indicators). It is reopened from the database when the bar does not
follow the last one it saw: a correction of an older bar, or bars stored without being published.

Publishing must never fail because of indicators: an error is logged and the bar goes out with
`"indicators": null`.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

from indicators import queries
from indicators.catalogue import IndicatorSpec, default_specs
from indicators.live import LiveBar, LiveIndicators, Values
from market.barstore import BarRow
from market.models import Bar, Instrument
from market.timeframes import timeframe_seconds

log = logging.getLogger(__name__)

_series: dict[tuple[int, str], LiveIndicators] = {}
_lock = threading.Lock()


@lru_cache(maxsize=1)
def live_specs() -> tuple[IndicatorSpec, ...]:
    """What is published live: every indicator of the catalogue with its default parameters."""
    return tuple(default_specs())


def window_bars(timeframe: str) -> int:
    """Bars a live series is opened on: the longest history any published indicator needs."""
    return max(spec.history_bars(timeframe_seconds(timeframe)) for spec in live_specs()) + 1


def live_indicator_values(row: BarRow) -> dict[str, Values] | None:
    """The published indicators' values at `row`, a final bar just stored; None if not available."""
    if not row.final:
        return None
    series_key = (row.instrument_id, row.timeframe)
    try:
        with _lock:
            return _advance(series_key, row)
    except Exception:
        log.exception("live indicators failed for %s %s; reopening on the next bar", *series_key)
        _series.pop(series_key, None)
        return None


def forget_live_state() -> None:
    """Drop every live series (tests; a process that wants to reread the database)."""
    with _lock:
        _series.clear()


def _advance(series_key: tuple[int, str], row: BarRow) -> dict[str, Values] | None:
    time = int(row.time.timestamp())
    live = _series.get(series_key)
    if (
        live is not None
        and live.last_time is not None
        and time > live.last_time
        and _follows(row, live.last_time, time)
    ):
        values = live.update(LiveBar(time, row.open, row.high, row.low, row.close, row.volume))
        return dict(values)
    live = _open(*series_key, time)
    if live is None:
        _series.pop(series_key, None)
        return None
    _series[series_key] = live
    return dict(live.values)


def _follows(row: BarRow, last_time: int, time: int) -> bool:
    """Whether no stored bar lies between the last bar seen and this one (gaps without trades are normal)."""
    if time - last_time == timeframe_seconds(row.timeframe):
        return True
    between = Bar.objects.for_series(row.instrument_id, row.timeframe).filter(
        time__gt=queries.utc(last_time), time__lt=row.time
    )
    return not between.exists()


def _open(instrument_id: int, timeframe: str, time: int) -> LiveIndicators | None:
    instrument = Instrument.objects.select_related("exchange").filter(pk=instrument_id).first()
    if instrument is None:
        return None
    window = queries.load_bars(instrument_id, timeframe, None, time + 1, limit=window_bars(timeframe))
    if len(window) == 0 or int(window.time[-1]) != time:
        return None  # the bar is not stored (yet): nothing consistent to start from
    offset = queries.obv_at(instrument_id, timeframe, int(window.time[0])) - float(window.volume[0])
    return LiveIndicators(live_specs(), window, queries.instrument_context(instrument), obv_offset=offset)
