"""The pure bar builder, checked against candles that freqtrade built from the same real trades."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import pandas as pd
import pytest

from market.bars import MINUTE_MS, BarBuilder, MinuteBar, Trade, TradeRun, build_bars
from market.sources.replay import read_trades

FREQTRADE = Path(__file__).resolve().parents[2] / "sample_data" / "freqtrade"


@pytest.mark.parametrize("recording", ["XRP_ETH-trades.json.gz", "XRP_ETH-trades.feather"])
def test_it_builds_exactly_the_reference_candles_from_real_trades(recording):
    # Given 12,477 real Binance XRP/ETH trades and the 1m candles freqtrade built from them
    trades = read_trades(FREQTRADE / recording)
    expected = pd.read_feather(FREQTRADE / "XRP_ETH-1m.feather")
    assert len(trades) == 12_477

    # When they go through the bar builder
    bars = build_bars(trades)

    # Then every candle matches exactly, minutes without trades included (there are none)
    built = pd.DataFrame(
        {
            "date": pd.to_datetime([bar.time_ms for bar in bars], unit="ms", utc=True),
            "open": [bar.open for bar in bars],
            "high": [bar.high for bar in bars],
            "low": [bar.low for bar in bars],
            "close": [bar.close for bar in bars],
            "volume": [bar.volume for bar in bars],
        }
    )
    assert len(bars) == 2_469
    pd.testing.assert_frame_equal(built, expected, check_exact=True, check_dtype=False)
    assert sum(bar.trades for bar in bars) == 12_477


def trade(second: float, price: float, amount: float = 1.0, trade_id: str | None = None) -> Trade:
    time_ms = int(second * 1000)
    return Trade(time_ms, trade_id or f"t{time_ms}-{price}", price, amount)


def test_it_closes_a_bar_when_a_trade_of_a_later_minute_arrives():
    builder = BarBuilder()
    assert builder.add(trade(1, 10.0)) == []
    assert builder.add(trade(30, 12.0, 3.0)) == []
    closed = builder.add(trade(61, 11.0))
    assert len(closed) == 1
    bar = closed[0]
    assert (bar.time_ms, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades) == (0, 10, 12, 10, 12, 4, 2)
    assert bar.vwap == pytest.approx((10 + 36) / 4)
    assert builder.current is not None
    assert builder.current.time_ms == MINUTE_MS


def test_it_closes_the_open_bar_on_the_clock_without_waiting_for_a_trade():
    builder = BarBuilder()
    builder.add(trade(5, 10.0))
    assert builder.close_until(59_999) == []
    assert [bar.time_ms for bar in builder.close_until(60_000)] == [0]
    assert builder.current is None


def test_it_drops_duplicate_trade_ids_and_counts_them():
    builder = BarBuilder()
    builder.add(trade(1, 10.0, trade_id="a"))
    builder.add(trade(2, 99.0, trade_id="a"))
    assert builder.stats.duplicates == 1
    assert builder.current is not None
    assert builder.current.high == 10.0


def test_with_sequence_numbers_resends_are_dropped_and_trades_out_of_order_taken_once():
    # Given trades numbered 1, 2, 5 (3 and 4 not seen yet)
    builder = BarBuilder()
    for seq, price in ((1, 10.0), (2, 11.0), (5, 12.0)):
        builder.add(Trade(seq * 1000, str(seq), price, 1.0, seq))

    # When 2 and 5 are resent, and 4 then 3 arrive late (twice each)
    for seq in (2, 5, 4, 3, 4, 3):
        builder.add(Trade(seq * 1000, str(seq), 20.0 + seq, 1.0, seq))

    # Then the resends and the second copies were dropped, 3 and 4 counted once each
    assert builder.stats.duplicates == 4
    assert builder.stats.accepted == 5
    assert builder.current is not None
    assert (builder.current.trades, builder.current.high, builder.current.volume) == (5, 24.0, 5.0)


def test_only_the_newest_holes_of_a_sequence_are_remembered():
    builder = BarBuilder(max_holes=2)
    for seq in (1, 3, 5, 7):  # holes at 2, 4 and 6: the oldest (2) is forgotten
        builder.add(Trade(seq, str(seq), 1.0, 1.0, seq))
    for seq in (2, 4, 6):
        builder.add(Trade(seq, str(seq), 1.0, 1.0, seq))
    assert (builder.stats.accepted, builder.stats.duplicates) == (6, 1)


def test_it_counts_trades_for_a_closed_minute_as_late_and_leaves_the_closed_bar_alone():
    builder = BarBuilder()
    builder.add(trade(1, 10.0))
    builder.add(trade(61, 11.0))
    assert builder.add(trade(2, 50.0)) == []
    assert builder.stats.late == 1
    assert builder.current is not None
    assert builder.current.high == 11.0


def test_it_rejects_trades_with_a_non_positive_price_or_negative_amount():
    builder = BarBuilder()
    builder.add(trade(1, 0.0))
    builder.add(trade(2, 10.0, amount=-1.0))
    assert builder.stats.invalid == 2
    assert builder.current is None


def test_a_minute_without_trades_produces_no_bar():
    bars = build_bars([trade(1, 10.0), trade(125, 11.0)])
    assert [bar.time_ms for bar in bars] == [0, 2 * MINUTE_MS]


# --- runs: many trades in one call, the same bars as trade by trade -------------------------------


def by_trade(builder: BarBuilder, run: TradeRun) -> list[MinuteBar]:
    """What add_run must equal: each trade through add, the clock points through close_until."""
    clocks = dict(run.clocks)
    closed = []
    for index, (time_ms, price, amount) in enumerate(zip(run.time_ms, run.price, run.amount, strict=True)):
        seq = run.first_seq + index
        closed += builder.add(Trade(time_ms, str(seq), price, amount, seq))
        if index in clocks:
            closed += builder.close_until(clocks[index])
    return closed


def unseen(builder: BarBuilder) -> set[int]:
    """The sequence numbers below the highest that a builder would still take (its holes)."""
    return {seq for start, end in builder._holes for seq in range(start, end)}


def assert_same_state(run_builder: BarBuilder, trade_builder: BarBuilder) -> None:
    assert run_builder.current == trade_builder.current
    assert run_builder.stats == trade_builder.stats
    assert (run_builder.last_closed_ms, run_builder.clock_ms) == (trade_builder.last_closed_ms, trade_builder.clock_ms)
    assert run_builder._recent == trade_builder._recent
    assert unseen(run_builder) == unseen(trade_builder)


def recorded_runs(size: int) -> list[TradeRun]:
    """The 12,477 real XRP/ETH aggregate trades in runs of `size`, with the clock points a minute
    clock one second behind the trades would give (a clock event per minute boundary passed)."""
    with gzip.open(FREQTRADE / "XRP_OLD-trades.json.gz", "rt") as handle:
        rows = [trade["info"] for trade in json.load(handle)]
    runs, next_clock = [], -1
    for start in range(0, len(rows), size):
        part = rows[start : start + size]
        clocks = []
        for index, row in enumerate(part):
            at = row["T"] - 1000
            if at >= next_clock:
                clocks.append((index, at))
                next_clock = at - at % MINUTE_MS + MINUTE_MS
        times = [row["T"] for row in part]
        runs.append(
            TradeRun(times, [float(row["p"]) for row in part], [float(row["q"]) for row in part], part[0]["a"], clocks)
        )
    return runs


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_a_run_of_real_trades_builds_what_the_trades_one_by_one_build(size):
    run_builder, trade_builder = BarBuilder(), BarBuilder()
    for run in recorded_runs(size):
        assert run_builder.add_run(run) == by_trade(trade_builder, run)
    assert run_builder.flush() == trade_builder.flush()
    assert_same_state(run_builder, trade_builder)
    assert run_builder.stats.accepted == 12_477


def random_runs(rng: random.Random, count: int) -> list[TradeRun]:
    """Runs that do everything a stream does wrong: resent and skipped numbers, trades out of time
    order and for minutes long over, bad prices and amounts, clocks that run ahead of the trades."""
    runs, seq, time_ms = [], 1000, 10 * MINUTE_MS
    for _ in range(count):
        length = rng.randint(1, 40)
        seq += rng.choice([0, 0, 0, 1, 5, -3, -length])  # go on, skip, or repeat numbers
        times, prices, amounts, clocks = [], [], [], []
        for index in range(length):
            time_ms += rng.choice([0, 1_000, 7_000, 30_000, 61_000, -45_000, -150_000])
            times.append(max(time_ms, 0))
            prices.append(
                rng.choice([10.0, 11.5, 9.25, 10.125, 0.0, -1.0, math.nan])
                if rng.random() < 0.1
                else rng.uniform(9, 11)
            )
            amounts.append(-1.0 if rng.random() < 0.03 else rng.uniform(0, 3))
            if rng.random() < 0.2:
                clocks.append((index, time_ms + rng.choice([-60_000, 0, 20_000, 90_000])))
        runs.append(TradeRun(times, prices, amounts, max(seq, 0), clocks))
        seq = max(seq, 0) + length
    return runs


@pytest.mark.parametrize("grace_ms", [0, 30_000])
@pytest.mark.parametrize("seed", range(20))
def test_a_run_equals_its_trades_one_by_one_whatever_the_stream_does_wrong(seed, grace_ms):
    run_builder, trade_builder = BarBuilder(grace_ms=grace_ms), BarBuilder(grace_ms=grace_ms)
    for run in random_runs(random.Random(seed), 60):
        assert run_builder.add_run(run) == by_trade(trade_builder, run)
        assert_same_state(run_builder, trade_builder)
    assert trade_builder.stats.duplicates
    assert trade_builder.stats.invalid
    assert trade_builder.stats.late


def test_a_run_needs_sequence_numbers():
    with pytest.raises(ValueError, match="sequence numbers"):
        TradeRun([0], [1.0], [1.0], first_seq=-1)
