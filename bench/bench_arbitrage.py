"""Arbitrage: detection over 5,000 asset pairs x 5 venues of quotes, and the whole detection task.

1. The detector (`market.arbitrage.detect_opportunities`, sorted numpy arrays) side by side with the
   baseline a first implementation would write in pandas: merge each pair's quotes with themselves
   (every buy venue with every sell venue), drop same-venue rows, compute the net spread, keep the
   best row per pair. Both must report the same opportunities (pairs, venues, spreads), which the
   benchmark checks before timing. Quotes per second; ratio = detector / baseline.
2. The whole task on a scratch database (`market.arbitrage_services.detect_arbitrage`: the one
   query for the latest 1m closes, detection, tracking with its writes and broadcasts) against the
   bare read (`latest_quotes`, the same query alone), as quotes per second: ratio below 1 is the
   share of the task's time the read is. Steady (nothing changed since the last run, as most runs
   every ARBITRAGE_INTERVAL_SECONDS are) and after a new minute of bars (every open opportunity
   updated).

The quotes are constructed (seeded): each pair has a price, each venue that price with 5 bps of
noise, and one pair in twenty has one venue 60 bps above the rest; fees 10 bps per side, threshold 5
bps. Wall-clock medians of a few runs; the machine may be shared.

`python -m bench.run arbitrage`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from bench import measurement
from market.arbitrage import DetectionParams, Opportunity, QuoteColumns, detect_opportunities

PAIRS = 5_000
VENUES = ("binance", "bitstamp", "coinbase", "kraken", "okx")
NOW = 1_800_000_000.0
PARAMS = DetectionParams(min_net_bps=5, max_age_seconds=120, default_fee_bps=10, fees_bps={"kraken": 16})
TASK_PAIRS = 2_000  # the database part: 10,000 instruments


def constructed_prices(pairs: int, seed: int = 11) -> npt.NDArray[np.float64]:
    """prices[pair, venue]: a price per pair, 5 bps of noise per venue, one pair in 20 with a venue +60 bps."""
    rng = np.random.default_rng(seed)
    base = np.exp(rng.uniform(np.log(0.01), np.log(50_000), pairs))
    prices = base[:, None] * (1 + rng.normal(0, 5e-4, (pairs, len(VENUES))))
    rich = rng.random(pairs) < 0.05
    prices[rich, rng.integers(0, len(VENUES), rich.sum())] *= 1.006
    return prices


def quote_columns(prices: npt.NDArray[np.float64], seed: int = 12) -> QuoteColumns:
    rng = np.random.default_rng(seed)
    pairs, venues = prices.shape
    n = pairs * venues
    text = np.empty(n, dtype=object)

    def column(values: list[str]) -> Any:
        copy = text.copy()
        copy[:] = values
        return copy

    ages = rng.uniform(0, 100, n)
    ages[rng.random(n) < 0.02] = 600  # a few stale quotes
    return QuoteColumns(
        instrument_id=np.arange(1, n + 1, dtype=np.int64),
        venue=column([VENUES[v] for _ in range(pairs) for v in range(venues)]),
        base=column([f"C{p}" for p in range(pairs) for _ in range(venues)]),
        quote=column(["USDT"] * n),
        price=prices.reshape(-1).copy(),
        time=NOW - ages,
        bid=np.full(n, np.nan),
        ask=np.full(n, np.nan),
    )


def naive_detect(columns: QuoteColumns, params: DetectionParams, now: float) -> pd.DataFrame:
    """The baseline: every (buy, sell) pair of fresh quotes of one symbol on two venues, by a self-merge."""
    frame = pd.DataFrame(
        {
            "instrument": columns.instrument_id,
            "venue": columns.venue,
            "symbol": columns.base + "/" + np.array([params.canonical_quote(q) for q in columns.quote], dtype=object),
            "price": columns.price,
            "time": columns.time,
        }
    )
    frame = frame[(now - frame["time"] <= params.max_age_seconds) & (frame["price"] > 0)]
    frame["fee"] = frame["venue"].map(params.fee_bps) / 10_000
    pairs = frame.merge(frame, on="symbol", suffixes=("_buy", "_sell"))
    pairs = pairs[pairs["venue_buy"] != pairs["venue_sell"]]
    cost = pairs["price_buy"] * (1 + pairs["fee_buy"])
    proceeds = pairs["price_sell"] * (1 - pairs["fee_sell"])
    pairs = pairs.assign(net_bps=(proceeds / cost - 1) * 10_000)
    pairs = pairs[pairs["net_bps"] > params.min_net_bps]
    best = pairs.loc[pairs.groupby("symbol")["net_bps"].idxmax()]
    return best.sort_values("symbol")[["symbol", "venue_buy", "venue_sell", "net_bps"]]


def agree(found: list[Opportunity], naive: pd.DataFrame) -> bool:
    ours = [(o.symbol, o.buy_venue, o.sell_venue) for o in found]
    theirs = list(naive[["symbol", "venue_buy", "venue_sell"]].itertuples(index=False, name=None))
    spreads = np.array([o.net_bps for o in found])
    return ours == theirs and np.allclose(spreads, naive["net_bps"].to_numpy(), rtol=1e-12, atol=1e-9)


def median_seconds(action: Callable[[], Any], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run() -> Iterator[dict[str, Any]]:
    yield from detection()
    yield from whole_task()


def detection() -> Iterator[dict[str, Any]]:
    columns = quote_columns(constructed_prices(PAIRS))
    found = detect_opportunities(columns, PARAMS, NOW)
    naive = naive_detect(columns, PARAMS, NOW)
    if not agree(found, naive):
        raise AssertionError("the detector and the pandas baseline disagree")
    quotes = len(columns)
    # Tens of milliseconds each: medians of many runs, so that a neighbour's burst does not decide.
    baseline = quotes / median_seconds(lambda: naive_detect(columns, PARAMS, NOW), runs=15)
    detector = quotes / median_seconds(lambda: detect_opportunities(columns, PARAMS, NOW), runs=31)
    yield measurement("arbitrage.detect.baseline_pandas_self_merge", baseline, "quotes/s")
    yield measurement("arbitrage.detect.vs_pandas_self_merge", detector, "quotes/s", baseline)
    yield measurement("arbitrage.detect.opportunities_found", len(found), "opportunities")


def whole_task() -> Iterator[dict[str, Any]]:
    from django.db import connections

    import market.arbitrage_services as services
    from market.arbitrage_services import latest_quotes

    detect_arbitrage = services.detect_arbitrage
    from market.barstore import BarRow
    from market.models import Exchange, Instrument
    from market.services import store_bars

    prices = constructed_prices(TASK_PAIRS, seed=21)
    # get_or_create: an earlier benchmark of the same run may have made "binance" already.
    exchanges = [Exchange.objects.get_or_create(code=code, defaults={"name": code})[0] for code in VENUES]
    Instrument.objects.bulk_create(
        Instrument(exchange=exchange, symbol=f"C{p}/USDT", base=f"C{p}", quote="USDT")
        for p in range(TASK_PAIRS)
        for exchange in exchanges
    )
    # Created pair by pair, venue by venue: the order of `prices` flattened (only these: other
    # benchmarks of the same run leave instruments of their own in the scratch database).
    ours = Instrument.objects.filter(exchange__in=exchanges, symbol__regex=r"^C[0-9]+/USDT$").order_by("pk")
    ids = list(ours.values_list("pk", flat=True))
    minute = datetime(2027, 1, 1, tzinfo=UTC)

    def store_minute(start: datetime, drift: float) -> None:
        flat = (prices * drift).reshape(-1)
        store_bars(
            [BarRow(i, "1m", start, c, c, c, c, 1.0, 1, c, True) for i, c in zip(ids, flat.tolist(), strict=True)],
            publish=False,
        )

    store_minute(minute, 1.0)
    now = minute + timedelta(minutes=1, seconds=5)
    first = detect_arbitrage(now, PARAMS)  # opens the opportunities (outside the timing)
    quotes = first.quotes
    read = quotes / median_seconds(lambda: latest_quotes(now, PARAMS.max_age_seconds))
    steady = quotes / median_seconds(lambda: detect_arbitrage(now, PARAMS))
    updating = []
    for step in range(1, 4):
        store_minute(minute + timedelta(minutes=step), 1.0 + step * 1e-4)
        later = now + timedelta(minutes=step)
        started = time.perf_counter()
        run_ = detect_arbitrage(later, PARAMS)
        updating.append(time.perf_counter() - started)
        assert run_.tracked.updated > 0
    connections.close_all()
    yield measurement("arbitrage.task.bare_read", read, "quotes/s")
    yield measurement("arbitrage.task.steady.vs_bare_read", steady, "quotes/s", read)
    yield measurement("arbitrage.task.updating.vs_bare_read", quotes / statistics.median(updating), "quotes/s", read)
    yield measurement("arbitrage.task.open_opportunities", first.tracked.opened, "opportunities")


if __name__ == "__main__":
    import json

    for line in detection():
        print(json.dumps(line))
