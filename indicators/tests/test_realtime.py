"""Indicator values published with each final bar: equal to the historical series, O(1) per bar."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from indicators import queries, realtime
from indicators.catalogue import default_specs
from indicators.compute import compute_many
from indicators.live import LiveIndicators
from indicators.tests.conftest import rows_of
from market import services
from market.groups import bars_group
from market.services import publish_bars, store_bars
from market.tests.broadcasts import bar_frames

pytestmark = pytest.mark.django_db(transaction=True)

HISTORY = 2000


@pytest.fixture(autouse=True)
def _fresh_live_state():
    realtime.forget_live_state()
    yield
    realtime.forget_live_state()


@pytest.fixture
def history(instrument, btc_1m):
    store_bars(rows_of(instrument.pk, btc_1m.slice(0, HISTORY)), publish=False)
    return btc_1m


def assert_equal_to_history(values: Any, bars: Any, upto: int) -> None:
    expected = compute_many(default_specs(), bars.slice(0, upto))
    for key, outputs in expected.items():
        for output, series in outputs.items():
            assert values[key][output] == pytest.approx(series[-1], rel=1e-9), f"{key}.{output}"


def store_and_value(instrument: Any, bars: Any, i: int) -> Any:
    row = rows_of(instrument.pk, bars.slice(i, i + 1))[0]
    store_bars([row], publish=False)
    return realtime.live_indicator_values(row)


def test_each_closed_bar_gets_the_values_of_the_whole_history(instrument, history):
    for i in range(HISTORY, HISTORY + 30):
        values = store_and_value(instrument, history, i)
    # OBV too: it continues from the first stored bar, not from the window's
    assert_equal_to_history(values, history, HISTORY + 30)


def test_consecutive_bars_are_carried_forward_without_reading_the_database_again(instrument, history, monkeypatch):
    opened = []
    original = realtime._open

    def spy(*args: Any) -> Any:
        opened.append(args)
        return original(*args)

    monkeypatch.setattr(realtime, "_open", spy)
    for i in range(HISTORY, HISTORY + 20):
        store_and_value(instrument, history, i)
    assert len(opened) == 1


def test_a_bar_stored_without_being_published_reopens_the_series(instrument, history):
    store_and_value(instrument, history, HISTORY)
    store_bars(rows_of(instrument.pk, history.slice(HISTORY + 1, HISTORY + 3)), publish=False)  # not published
    values = store_and_value(instrument, history, HISTORY + 3)
    assert_equal_to_history(values, history, HISTORY + 4)


def test_a_bar_that_is_not_final_gets_no_values(instrument, history):
    row = rows_of(instrument.pk, history.slice(HISTORY, HISTORY + 1))[0]._replace(final=False)
    assert realtime.live_indicator_values(row) is None


def test_a_failure_is_logged_and_the_bar_still_goes_out(instrument, history, monkeypatch, caplog):
    monkeypatch.setattr(realtime, "_open", lambda *args: 1 / 0)
    assert store_and_value(instrument, history, HISTORY) is None
    assert "live indicators failed" in caplog.text


def test_published_final_bars_carry_the_indicators_on_the_channel_group(instrument, history):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(bars_group(instrument.pk, "1m"), channel)
    row = rows_of(instrument.pk, history.slice(HISTORY, HISTORY + 1))[0]
    store_bars([row], publish=False)
    publish_bars([row])
    [message] = bar_frames([async_to_sync(layer.receive)(channel)])
    assert message["bar"]["close"] == row.close
    assert message["indicators"]["rsi"]["rsi"] == pytest.approx(
        compute_many(default_specs(), history.slice(0, HISTORY + 1))["rsi"]["rsi"][-1], rel=1e-9
    )
    assert set(message["indicators"]) == {spec.key for spec in default_specs()}
    assert all(np.isfinite(v) for outputs in message["indicators"].values() for v in outputs.values())


def test_a_batch_gets_the_values_each_bar_gets_alone_and_reads_its_gaps_once(instrument, history, monkeypatch):
    # Given a batch with minutes without trades (never stored) and one bar stored but not published
    store_and_value(instrument, history, HISTORY)
    rows = rows_of(instrument.pk, history.slice(HISTORY + 1, HISTORY + 60))
    stored = [row for n, row in enumerate(rows) if n % 7 != 3]
    store_bars(stored, publish=False)
    batch = stored[:20] + stored[21:]
    reads = []
    original = realtime.StoredTimes.between

    def spy(*args: Any) -> Any:
        reads.append(args)
        return original(*args)

    # When the batch gets its values in one call
    monkeypatch.setattr(realtime.StoredTimes, "between", spy)
    together = realtime.live_indicator_values_many(batch)

    # Then the gaps were read once, and every bar has the values it gets when published alone
    assert len(reads) == 1
    realtime.forget_live_state()
    realtime.live_indicator_values(rows_of(instrument.pk, history.slice(HISTORY, HISTORY + 1))[0])
    alone = [realtime.live_indicator_values(row) for row in batch]
    assert together == alone
    assert all(values is not None for values in together)


@pytest.mark.parametrize("unpublished", [None, 40], ids=["all published", "one stored but not published"])
def test_a_large_batch_gets_the_values_of_the_whole_history_and_the_series_carries_on_after_it(
    instrument, history, monkeypatch, unpublished
):
    # Given a catch-up: many bars stored at once, perhaps one of them not published
    store_and_value(instrument, history, HISTORY)
    count = realtime.BATCH_MIN_BARS + 36
    stored = rows_of(instrument.pk, history.slice(HISTORY + 1, HISTORY + 1 + count))
    store_bars(stored, publish=False)
    batch = stored if unpublished is None else stored[:unpublished] + stored[unpublished + 1 :]
    updates = []
    original = LiveIndicators.update

    def spy(self: Any, bar: Any) -> Any:
        updates.append(bar)
        return original(self, bar)

    # When they are published together
    monkeypatch.setattr(LiveIndicators, "update", spy)
    values = realtime.live_indicator_values_many(batch)

    # Then no bar went through the stream updates, and each has the values of the history up to it
    assert updates == []
    for n in (0, 39, 40, len(batch) - 1):
        position = HISTORY + 1 + n + (1 if unpublished is not None and n >= unpublished else 0)
        assert_equal_to_history(values[n], history, position + 1)
    # And the next bar is carried forward from the last one, bar by bar, with the history's values
    after = store_and_value(instrument, history, HISTORY + 1 + count)
    assert len(updates) == 1
    assert_equal_to_history(after, history, HISTORY + 2 + count)


def test_a_large_batch_travels_as_columns_that_give_each_bar_the_frame_it_gets_as_an_item(instrument, history):
    # Given a catch-up: more bars of a series stored at once than one message takes
    store_and_value(instrument, history, HISTORY)
    count = services.MAX_BARS_PER_MESSAGE + 100
    stored = rows_of(instrument.pk, history.slice(HISTORY + 1, HISTORY + 1 + count))
    store_bars(stored, publish=False)

    # When their messages are prepared
    messages = services.prepare_bar_messages(stored)

    # Then they are columns, split as items are, and a consumer reads them back as exactly the frames
    # the items would have carried, indicator values included
    assert [("columns" in message, "bars" in message) for message in messages] == [(True, False)] * 2
    items = [item for message in messages for item in services.batch_items(message) or []]
    realtime.forget_live_state()
    as_items = services.bar_batch_messages(stored, realtime.live_indicator_values_many(stored))
    assert [item["text"] for item in items] == [item["text"] for message in as_items for item in message["bars"]]
    assert [item["time"] for item in items] == [int(row.time.timestamp()) for row in stored]
    assert_equal_to_history(orjson.loads(items[-1]["text"])["indicators"], history, HISTORY + 1 + count)


def test_a_small_batch_or_one_out_of_time_order_travels_as_items(instrument, history):
    stored = rows_of(instrument.pk, history.slice(HISTORY, HISTORY + services.COLUMNS_MIN_BARS))
    store_bars(stored, publish=False)

    for batch in (stored[:-1], [stored[1], stored[0], *stored[2:]]):
        realtime.forget_live_state()
        messages = services.prepare_bar_messages(batch)
        assert all("bars" in message and "columns" not in message for message in messages)
        assert sum(len(message["bars"]) for message in messages) == len(batch)


def test_bars_after_a_batchs_leading_final_bars_follow_its_columns_as_items(instrument, history):
    # Given the final bars of a catch-up and then the open bar, stored as non-final at shutdown
    stored = rows_of(instrument.pk, history.slice(HISTORY, HISTORY + services.COLUMNS_MIN_BARS + 1))
    batch = [*stored[:-1], stored[-1]._replace(final=False)]
    store_bars(batch, publish=False)

    messages = services.prepare_bar_messages(batch)

    # Then the final bars go as columns and the open bar after them as an item without indicators
    assert [("columns" in message, len(message.get("bars", []))) for message in messages] == [(True, 0), (False, 1)]
    frames = bar_frames(messages)
    assert [frame["bar"]["time"] for frame in frames] == [int(row.time.timestamp()) for row in batch]
    assert [frame["bar"]["final"] for frame in frames] == [True] * services.COLUMNS_MIN_BARS + [False]
    assert "indicators" not in frames[-1]


def test_consecutive_large_batches_read_the_window_once_and_get_the_values_of_the_whole_history(
    instrument, history, monkeypatch
):
    # Given a catch-up published in rounds, each of many bars
    count = services.COLUMNS_MIN_BARS + 10
    rounds = [rows_of(instrument.pk, history.slice(HISTORY + k * count, HISTORY + (k + 1) * count)) for k in range(3)]
    reads = []
    original = queries.load_bars

    def spy(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(queries, "load_bars", spy)

    # When each round is stored and published before the next
    columns = []
    for rows in rounds:
        store_bars(rows, publish=False)
        columns.append(realtime.live_indicator_columns((instrument.pk, "1m"), rows))

    # Then only the first round read the window before it, and every round has the history's values
    assert len(reads) == 1
    for k, round_columns in enumerate(columns):
        assert round_columns is not None
        at_last = {key: {name: v[-1] for name, v in outputs.items()} for key, outputs in round_columns.items()}
        assert_equal_to_history(at_last, history, HISTORY + (k + 1) * count)
