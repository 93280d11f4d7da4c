"""Every rule type on real bars, replayed bar by bar through the engine as the live path runs it.

Each test computes the expected firing times independently, with a plain loop over the data (and,
for RSI and the EMA crossing, over the indicator columns freqtrade itself computed), and also names
a few firing times checked by hand against the data (the values are quoted in the comments).
No database: the engine is pure.
"""

from __future__ import annotations

import numpy as np
import pytest

from alerts.engine import Bars, compile_rules, evaluate
from alerts.events import is_silent, quality_issues
from alerts.rules import Condition, Frequency, Operand, RuleSpec
from alerts.tests.conftest import FEED, NEVER, btc_frame, epoch_seconds, frequi_frame, minutes, replay

LEVEL = 0.0019


@pytest.fixture(scope="module")
def btc():
    """3,000 real 1m candles from 2017-11-04 23:02 UTC; closes between 0.001578 and 0.00209."""
    frame = btc_frame(3000)
    return frame, frame["close"].to_numpy(), frame["volume"].to_numpy(), epoch_seconds(frame)


def rule(rule_id: int, condition: Condition, **params) -> RuleSpec:
    return RuleSpec(rule_id, *FEED, condition, **params)


def expected(times, indices) -> list[int]:
    return [int(times[i]) for i in indices]


def test_price_crossing_up_down_and_either_way_fire_where_the_close_crosses_the_level(btc):
    frame, close, _, times = btc
    fired = replay(
        [
            rule(1, Condition.CROSSING_UP, level=LEVEL),
            rule(2, Condition.CROSSING_DOWN, level=LEVEL),
            rule(3, Condition.CROSSING, level=LEVEL),
        ],
        frame,
    )

    up = [i for i in range(1, len(close)) if close[i - 1] <= LEVEL < close[i]]
    down = [i for i in range(1, len(close)) if close[i - 1] >= LEVEL > close[i]]
    assert fired[1] == expected(times, up)
    assert fired[2] == expected(times, down)
    assert fired[3] == expected(times, sorted(up + down))
    # By hand: 04:31 closed at 0.00189982, 04:32 at 0.00190091 (up); 03:40 closed exactly at the
    # level, 0.0019, and 03:41 at 0.001881: touching the level and leaving it downwards is a cross.
    assert minutes(fired[1]) == ["2017-11-06 04:32", "2017-11-06 04:36", "2017-11-06 07:47", "2017-11-06 08:46"]
    assert minutes(fired[2])[0] == "2017-11-06 03:41"


def test_greater_and_less_than_fire_on_every_bar_that_closes_beyond_the_level(btc):
    frame, close, _, times = btc
    fired = replay([rule(1, Condition.GREATER_THAN, level=0.00205), rule(2, Condition.LESS_THAN, level=0.0016)], frame)

    assert fired[1] == expected(times, [i for i in range(1, len(close)) if close[i] > 0.00205])
    assert fired[2] == expected(times, [i for i in range(1, len(close)) if close[i] < 0.0016])
    assert len(fired[1]) == 103
    assert minutes(fired[1])[:2] == ["2017-11-06 09:32", "2017-11-06 09:47"]


def test_moving_up_or_down_x_percent_compares_with_the_close_n_bars_earlier(btc):
    frame, close, _, times = btc
    fired = replay(
        [
            rule(1, Condition.MOVING_UP_PERCENT, percent=3, bars=10),
            rule(2, Condition.MOVING_DOWN_PERCENT, percent=3, bars=10),
        ],
        frame,
    )

    up = [i for i in range(10, len(close)) if close[i] >= close[i - 10] * 1.03]
    down = [i for i in range(10, len(close)) if close[i] <= close[i - 10] * 0.97]
    assert fired[1] == expected(times, up)
    assert fired[2] == expected(times, down)
    # By hand: 10:00 closed at 0.00164057, ten bars earlier (09:50) at 0.00158825: +3.29%.
    assert minutes(fired[1])[0] == "2017-11-05 10:00"
    assert minutes(fired[2])[:3] == ["2017-11-05 14:12", "2017-11-05 14:13", "2017-11-05 14:16"]


def test_entering_and_exiting_a_channel(btc):
    frame, close, _, times = btc
    lower, upper = 0.0018, 0.00185
    fired = replay(
        [
            rule(1, Condition.ENTERING_CHANNEL, level=lower, upper=upper),
            rule(2, Condition.EXITING_CHANNEL, level=lower, upper=upper),
        ],
        frame,
    )

    inside = [lower <= value <= upper for value in close]
    entering = [i for i in range(1, len(close)) if not inside[i - 1] and inside[i]]
    exiting = [i for i in range(1, len(close)) if inside[i - 1] and not inside[i]]
    assert fired[1] == expected(times, entering)
    assert fired[2] == expected(times, exiting)
    # By hand: 13:50 closed at 0.0017873 (below), 13:51 at 0.0018 (on the lower bound: inside).
    assert minutes(fired[1])[0] == "2017-11-05 13:51"
    assert minutes(fired[2])[0] == "2017-11-05 14:10"


def test_volume_spike_compares_with_the_average_of_the_bars_before(btc):
    frame, _, volume, times = btc
    fired = replay([rule(1, Condition.VOLUME_SPIKE, multiplier=10, bars=20)], frame)

    spikes = [i for i in range(20, len(volume)) if volume[i] > 10 * sum(volume[i - 20 : i]) / 20]
    assert fired[1] == expected(times, spikes)
    # By hand: 00:51 traded 668.84 against an average of 53.71 over the 20 bars before: 12.5x.
    assert minutes(fired[1])[:2] == ["2017-11-05 00:51", "2017-11-05 02:13"]


def ema(values: list[float], length: int) -> list[float]:
    """A plain-loop EMA seeded with the first value (not TA-Lib's seed: both converge)."""
    alpha, out, current = 2 / (length + 1), [], values[0]
    for value in values:
        current += alpha * (value - current)
        out.append(current)
    return out


def test_macd_crossing_its_signal_line(btc):
    frame, close, _, times = btc
    macd = Operand.parse({"indicator": "macd"})
    signal = Operand.parse({"indicator": "macd", "output": "signal"})
    fired = replay(
        [
            rule(1, Condition.CROSSING_UP, source=macd, target=signal),
            rule(2, Condition.CROSSING_DOWN, source=macd, target=signal),
        ],
        frame,
    )

    line = [fast - slow for fast, slow in zip(ema(list(close), 12), ema(list(close), 26), strict=True)]
    slow_line = ema(line, 9)
    settled = 400  # both seeds have long stopped mattering by then
    up = [i for i in range(settled, len(close)) if line[i - 1] <= slow_line[i - 1] and line[i] > slow_line[i]]
    down = [i for i in range(settled, len(close)) if line[i - 1] >= slow_line[i - 1] and line[i] < slow_line[i]]
    assert [t for t in fired[1] if t >= times[settled]] == expected(times, up)
    assert [t for t in fired[2] if t >= times[settled]] == expected(times, down)
    # By hand (TA-Lib MACD 12/26/9): at 09:47 macd 1.778e-06 <= signal 1.876e-06, at 09:48
    # macd 2.424e-06 > signal 1.985e-06.
    assert "2017-11-05 09:48" in minutes(fired[1])


@pytest.fixture(scope="module")
def frequi():
    frame = frequi_frame()
    return frame, epoch_seconds(frame)


# freqtrade computed these columns over a longer history; over the last 300 rows they agree with a
# standard implementation (sample_data/README.md, frequi), so the comparison starts there.
SETTLED = 200


def test_rsi_above_below_and_crossing_levels_match_freqtrades_own_rsi(frequi):
    frame, times = frequi
    rsi = Operand.parse({"indicator": "rsi", "length": 14})
    fired = replay(
        [
            rule(1, Condition.CROSSING_UP, source=rsi, level=70),
            rule(2, Condition.CROSSING_DOWN, source=rsi, level=30),
            rule(3, Condition.GREATER_THAN, source=rsi, level=75),
            rule(4, Condition.LESS_THAN, source=rsi, level=25),
            rule(5, Condition.CROSSING, source=rsi, level=50),
        ],
        frame,
    )

    r = frame["rsi"].to_numpy()
    rows = range(SETTLED, len(r))
    oracle = {
        1: [i for i in rows if r[i - 1] <= 70 < r[i]],
        2: [i for i in rows if r[i - 1] >= 30 > r[i]],
        3: [i for i in rows if r[i] > 75],
        4: [i for i in rows if r[i] < 25],
        5: [i for i in rows if r[i - 1] <= 50 < r[i] or r[i - 1] >= 50 > r[i]],
    }
    for rule_id, indices in oracle.items():
        assert [t for t in fired[rule_id] if t >= times[SETTLED]] == expected(times, indices), rule_id
    # By hand: freqtrade's RSI was 68.49 at 14:55 and 71.90 at 14:56.
    assert minutes(fired[1])[-2:] == ["2023-05-08 14:56", "2023-05-08 14:58"]
    assert len(oracle[5]) == 46


def test_an_indicator_moving_up_or_down_compares_with_its_own_value_n_bars_earlier(frequi):
    """A move on an indicator reads a lagged copy of the indicator, not of the close."""
    frame, times = frequi
    rsi = Operand.parse({"indicator": "rsi", "length": 14})
    fired = replay(
        [
            rule(1, Condition.MOVING_UP_PERCENT, source=rsi, percent=40, bars=5),
            rule(2, Condition.MOVING_DOWN_PERCENT, source=rsi, percent=30, bars=5),
        ],
        frame,
    )

    r = frame["rsi"].to_numpy()
    rows = range(SETTLED + 5, len(r))
    up = [i for i in rows if r[i] >= r[i - 5] * 1.4]
    down = [i for i in rows if r[i] <= r[i - 5] * 0.7]
    assert up
    assert down
    assert [t for t in fired[1] if t >= times[SETTLED + 5]] == expected(times, up)
    assert [t for t in fired[2] if t >= times[SETTLED + 5]] == expected(times, down)


def test_an_indicator_crossing_another_ema20_over_ema50_matches_freqtrades_emas(frequi):
    frame, times = frequi
    ema20 = Operand.parse({"indicator": "ema", "length": 20})
    ema50 = Operand.parse({"indicator": "ema", "length": 50})
    fired = replay(
        [
            rule(1, Condition.CROSSING_UP, source=ema20, target=ema50),
            rule(2, Condition.CROSSING_DOWN, source=ema20, target=ema50),
        ],
        frame,
    )

    fast, slow = frame["ema20"].to_numpy(), frame["ema50"].to_numpy()
    rows = range(SETTLED, len(fast))
    up = [i for i in rows if fast[i - 1] <= slow[i - 1] and fast[i] > slow[i]]
    down = [i for i in rows if fast[i - 1] >= slow[i - 1] and fast[i] < slow[i]]
    assert [t for t in fired[1] if t >= times[SETTLED]] == expected(times, up)
    assert [t for t in fired[2] if t >= times[SETTLED]] == expected(times, down)
    # By hand: at 14:47 EMA20 27815.64 < EMA50 27818.35, at 14:48 EMA20 27820.109 > EMA50 27820.080.
    assert minutes(fired[1])[-4:] == ["2023-05-08 14:48", "2023-05-08 16:41", "2023-05-08 16:44", "2023-05-08 17:27"]


def test_data_quality_reports_each_gap_in_real_bars(btc):
    _, close, _, times = btc
    found = []
    for end in range(2, len(times) + 1):
        issues = quality_issues(times[end - 2 : end], close[end - 2 : end], timeframe_seconds=60)
        if issues:
            found.append((int(times[end - 1]), issues[0].value))

    gaps = [
        (int(times[i]), (times[i] - times[i - 1]) // 60 - 1)
        for i in range(1, len(times))
        if times[i] - times[i - 1] > 60
    ]
    assert found == gaps
    assert len(found) == 203
    # By hand: the file has no bars for 23:08 to 23:13 (six minutes) on 2017-11-04.
    assert (minutes([found[0][0]]), found[0][1]) == (["2017-11-04 23:14"], 6)


def test_data_quality_flags_a_jump_above_the_given_percent():
    times = np.array([0, 60, 120], dtype=np.int64)
    close = np.array([100.0, 101.0, 90.0])
    assert quality_issues(times[:2], close[:2], timeframe_seconds=60, jump_percent=5) == []
    [issue] = quality_issues(times[1:], close[1:], timeframe_seconds=60, jump_percent=5)
    assert issue.description == "close jumped -10.89% from the previous bar"


def test_a_collector_is_down_after_its_number_of_silent_bar_periods():
    # The newest bar opened at 12:00 and closed at 12:01; three silent 1m periods end at 12:04.
    assert not is_silent(43_200, 43_200 + 60 + 180, timeframe_seconds=60, bars=3)
    assert is_silent(43_200, 43_200 + 60 + 181, timeframe_seconds=60, bars=3)


def test_rules_without_enough_history_do_not_fire():
    bars = Bars.from_columns([0, 60], [1.0, 1.0], [1.0, 2.0], [1.0, 1.0], [1.0, 2.0], [1.0, 1.0])
    book = compile_rules(
        [
            rule(1, Condition.CROSSING_UP, source=Operand.parse({"indicator": "rsi"}), level=1),
            rule(2, Condition.MOVING_UP_PERCENT, percent=1, bars=5),
            rule(3, Condition.CROSSING_UP, level=1.5),
        ]
    )
    assert [f.rule_id for f in evaluate(book, {FEED: bars}, now=NEVER)] == [3]


def test_only_price_rules_that_do_not_wait_for_the_close_are_judged_on_a_partial_bar():
    partial = Bars.from_columns([0, 60], [1.0, 1.0], [1.0, 2.0], [1.0, 1.0], [1.0, 2.0], [1.0, 1.0], final=False)
    rsi = Operand.parse({"indicator": "rsi", "length": 2})
    book = compile_rules(
        [
            rule(1, Condition.CROSSING_UP, level=1.5, frequency=Frequency.ONCE_PER_BAR),
            rule(2, Condition.CROSSING_UP, level=1.5, frequency=Frequency.ONCE),
            rule(3, Condition.CROSSING_UP, level=1.5, frequency=Frequency.ONCE_PER_BAR_CLOSE),
            rule(4, Condition.GREATER_THAN, source=rsi, level=0, frequency=Frequency.ONCE_PER_BAR),
        ]
    )
    firings = evaluate(book, {FEED: partial}, now=NEVER)
    assert [(f.rule_id, f.final) for f in firings] == [(1, False), (2, False)]
