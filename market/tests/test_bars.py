"""The pure bar builder, checked against candles that freqtrade built from the same real trades."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from market.bars import MINUTE_MS, BarBuilder, Trade, build_bars
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
