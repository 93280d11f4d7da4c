"""The Binance adapter against a local server replaying cryptofeed's recordings of Binance's real
websocket traffic, and XRP/ETH aggregate trades recorded from Binance's REST API."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import aclosing
from typing import Any

import pytest

from market.bars import build_bars
from market.sources.base import (
    ClockEvent,
    GapEvent,
    KlineEvent,
    SourceHealth,
    Subscription,
    TradeBatch,
    TradeEvent,
)
from market.sources.binance import BinanceParser, BinanceSource, from_exchange_symbol, to_exchange_symbol
from market.sources.resilience import RetryPolicy
from market.tests.conftest import SAMPLE_DATA
from market.tests.servers.binance import (
    BinanceServer,
    Fault,
    events_one_by_one,
    messages_from_ccxt_trades,
    messages_from_cryptofeed,
)

CRYPTOFEED = SAMPLE_DATA / "cryptofeed"
XRP_OLD = SAMPLE_DATA / "freqtrade" / "XRP_OLD-trades.json.gz"
FUTURES_SYMBOLS = ["SUSHI/USDT", "AKRO/USDT", "KEEP/USDT", "CTK/USDT"]
FAST = RetryPolicy(backoff_base_seconds=0.01, backoff_max_seconds=0.05, stall_seconds=0.5, breaker_reset_seconds=0.1)


def source_for(server: BinanceServer, **kwargs) -> BinanceSource:
    return BinanceSource(ws_url=server.ws_url, rest_url=server.rest_url, policy=FAST, clock_lag_ms=0, **kwargs)


def futures_server(**kwargs) -> BinanceServer:
    """A local Binance USDⓈ-M futures market (fapi paths) replaying the recorded futures stream."""
    messages = messages_from_cryptofeed(CRYPTOFEED / "BINANCE_FUTURES.ws.1.0")
    return BinanceServer(messages, rest_prefix="/fapi/v1", **kwargs)


def futures_source_for(server: BinanceServer, **kwargs) -> BinanceSource:
    return BinanceSource.futures(ws_url=server.ws_url, rest_url=server.rest_url, policy=FAST, clock_lag_ms=0, **kwargs)


async def collect_events(source, symbols, *, until, timeout=20.0, batches=None) -> list[Any]:
    """The source's events, a TradeBatch (a REST page) as the trade and clock events it stands for;
    the batches themselves go to `batches` when given."""
    events: list[Any] = []
    async with asyncio.timeout(timeout), aclosing(source.stream(symbols)) as stream:
        async for event in stream:
            events += flattened([event])
            if batches is not None and isinstance(event, TradeBatch):
                batches.append(event)
            if until(events):
                break
    return events


def kinds(events) -> Counter[str]:
    return Counter(type(event).__name__ for event in events)


@pytest.mark.parametrize(
    ("symbol", "exchange_symbol"),
    [("BTC/USDT", "BTCUSDT"), ("XRP/ETH", "XRPETH"), ("SUSHI/USDT", "SUSHIUSDT"), ("OMG/BUSD", "OMGBUSD")],
)
def test_it_maps_symbols_between_ours_and_binances(symbol, exchange_symbol):
    assert to_exchange_symbol(symbol) == exchange_symbol
    assert from_exchange_symbol(exchange_symbol) == symbol


def test_it_refuses_an_exchange_symbol_without_a_known_quote_asset():
    with pytest.raises(ValueError, match="quote asset"):
        from_exchange_symbol("USDT")


async def test_it_passes_on_exactly_the_91_aggtrades_and_67_klines_of_the_futures_recording():
    # Given a local Binance futures market replaying the recorded futures stream of four symbols
    async with futures_server() as server:
        assert Counter(m.kind for m in server.messages) == {"aggTrade": 91, "kline": 67}
        source = futures_source_for(server)
        assert (source.name, source.exchange) == ("binance-futures", "binance-futures")

        # When the adapter streams those symbols until the recording is over
        def done(events):
            return server.finished and kinds(events)["TradeEvent"] + kinds(events)["KlineEvent"] == 158

        events = await collect_events(source, dict.fromkeys(FUTURES_SYMBOLS), until=done)

    # Then every recorded trade and kline came out, per symbol, and nothing was rejected
    trades = Counter(event.symbol for event in events if isinstance(event, TradeEvent))
    klines = [event for event in events if isinstance(event, KlineEvent)]
    assert trades == {"SUSHI/USDT": 40, "CTK/USDT": 38, "AKRO/USDT": 8, "KEEP/USDT": 5}
    assert len(klines) == 67
    closed = [event for event in klines if event.bar.closed]
    assert sorted(event.symbol for event in closed) == sorted(FUTURES_SYMBOLS)
    # The recording started 41 s into the minute: the trade ids show we did not see all of it.
    assert {event.bar.covered for event in closed} == {False}
    assert source.health.rejected == Counter()
    assert source.health.connects == 1
    # The first trade: CTKUSDT aggregate trade 16599292 at 1.01100 for 10
    first = next(event for event in events if isinstance(event, TradeEvent))
    assert (first.symbol, first.trade.trade_id, first.trade.price, first.trade.amount) == (
        "CTK/USDT",
        "16599292",
        1.011,
        10.0,
    )
    # The minute boundary is announced by the exchange's clock (its event time), once
    clocks = [event.time_ms for event in events if isinstance(event, ClockEvent)]
    assert len(clocks) == 1
    assert 1626992760000 <= clocks[0] < 1626992761000


@pytest.mark.parametrize(
    ("recording", "symbols", "trades", "klines"),
    [
        ("BINANCE.ws.1.0", ["NKN/USDT", "BLZ/ETH", "LRC/BTC", "RUNE/EUR"], 2, 2),
        ("BINANCE_US.ws.1.0", ["CRV/USDT", "COMP/USDT", "OMG/BUSD", "ZRX/USDT"], 11, 5),
    ],
)
async def test_it_passes_on_every_trade_and_kline_of_the_spot_recordings(recording, symbols, trades, klines):
    async with BinanceServer(messages_from_cryptofeed(CRYPTOFEED / recording)) as server:
        source = source_for(server)

        def done(events):
            return kinds(events)["TradeEvent"] == trades and kinds(events)["KlineEvent"] == klines

        events = await collect_events(source, dict.fromkeys(symbols), until=done)
    assert kinds(events)["TradeEvent"] == trades
    assert kinds(events)["KlineEvent"] == klines
    assert source.health.rejected == Counter()


async def test_it_only_receives_the_streams_it_subscribed_to():
    async with futures_server() as server:
        source = futures_source_for(server)

        def done(events):
            return kinds(events)["TradeEvent"] == 5 and kinds(events)["KlineEvent"] == 5

        events = await collect_events(source, {"KEEP/USDT": None}, until=done)
    assert {event.symbol for event in events if isinstance(event, TradeEvent | KlineEvent)} == {"KEEP/USDT"}


async def test_after_a_futures_connection_drops_it_fetches_the_missed_trades_from_fapi():
    # Given the futures stream, whose connection drops after 40 messages while 30 more happen
    async with futures_server(faults={1: [Fault("drop", after=40, skip=30)]}) as server:
        source = futures_source_for(server)

        def done(events):
            return server.finished and kinds(events)["TradeEvent"] == 91

        events = await collect_events(source, dict.fromkeys(FUTURES_SYMBOLS), until=done)

    # Then every recorded aggregate trade came out exactly once, the missed ones through
    # /fapi/v1/aggTrades (the spot paths do not exist on this server)
    ids = Counter((e.symbol, e.trade.trade_id) for e in events if isinstance(e, TradeEvent))
    recorded = Counter((from_exchange_symbol(m.symbol), str(m.rest_row["a"])) for m in server.messages if m.rest_row)
    assert ids == recorded
    assert server.connections == 2
    assert any(path.startswith("/fapi/v1/aggTrades") for path in server.rest_requests)
    assert all(path.startswith("/fapi/v1/") for path in server.rest_requests)
    assert kinds(events)["KlineEvent"] < 67  # klines are not fetched: the ones sent while away are gone
    assert source.health.rejected == Counter()


async def test_missed_trade_ids_whose_fill_fails_are_fetched_after_the_reconnect():
    # Given a stream that holds after 100 messages, and a REST API whose first answer is a 503
    messages = messages_from_ccxt_trades(XRP_OLD, "XRPETH", count=300)
    recorded = [m.rest_row["a"] for m in messages if m.rest_row is not None]
    async with BinanceServer(messages, hold_at=100, rest_faults=[503]) as server:
        source = source_for(server)
        received: list[Any] = []

        async def consume() -> None:
            async with aclosing(source.stream({"XRP/ETH": None})) as stream:
                async for event in stream:
                    received.extend(flattened([event]))

        def trade_ids() -> list[int]:
            return [int(event.trade.trade_id) for event in received if isinstance(event, TradeEvent)]

        task = asyncio.create_task(consume())
        try:
            async with asyncio.timeout(20):
                while server.cursor < 100 or len(received) < sum(server.sent.values()):
                    await asyncio.sleep(0.01)
                # When 50 messages happen unheard on the open connection (a jump in trade ids), and
                # the request for the missed trades fails
                server.advance(50)
                server.release()
                while not server.finished or len(trade_ids()) < len(recorded):
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # Then it reconnected and fetched them again: every trade once, in order
    assert trade_ids() == recorded
    assert server.connections == 2
    assert server.rest_faults == []


def test_the_parser_counts_bad_messages_with_a_reason_and_never_raises():
    health = SourceHealth()
    parser = BinanceParser(health)
    parser.track("XRP/ETH")
    good = (
        b'{"stream":"xrpeth@aggTrade","data":{"e":"aggTrade","E":2,"s":"XRPETH",'
        b'"a":7,"p":"0.1","q":"5","f":1,"l":1,"T":1,"m":true,"M":true}}'
    )
    bad = [
        b"\x00\xff not json",
        b"[1, 2, 3]",
        b'{"stream":"xrpeth@aggTrade","data":{"e":"aggTrade","E":2,"s":"XRPETH","a":"x","p":"0.1","q":"5","f":1,"l":1,"T":1}}',
        b'{"stream":"xrpeth@aggTrade","data":{"e":"aggTrade","E":2,"s":"XRPETH","a":8,"p":"abc","q":"5","f":1,"l":1,"T":1}}',
        b'{"stream":"xrpeth@aggTrade","data":{"e":"aggTrade","E":2,"s":"XRPETH","a":8,"q":"5","f":1,"l":1,"T":1}}',
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":2,"s":"BTCUSDT","a":8,"p":"1","q":"5","f":1,"l":1,"T":1}}',
        b'{"stream":"xrpeth@depth","data":{"e":"depthUpdate","E":2,"s":"XRPETH"}}',
        b'{"stream":"xrpeth@kline_1m","data":{"e":"kline","E":2,"s":"XRPETH","k":{"t":0}}}',
        b'{"error":{"code":2,"msg":"Invalid request"},"id":3}',
    ]
    results = [parser.parse(raw) for raw in [good, *bad]]
    assert isinstance(results[0][0], TradeEvent)
    assert all(event is None for event, _ in results[1:])
    assert health.rejected == {
        "not JSON": 1,
        "not a stream message": 1,
        "malformed aggTrade": 3,
        "trade of a symbol not subscribed": 1,
        "unexpected event type": 1,
        "malformed kline": 1,
        "error from Binance": 1,
    }
    # The answer to a SUBSCRIBE is expected, not rejected
    assert parser.parse(b'{"result":null,"id":1}') == (None, None)
    assert sum(health.rejected.values()) == 9


@pytest.mark.parametrize(
    ("fields", "accepted"),
    [
        ('"a":8,"p":"0.5","q":"5","f":1,"l":1,"T":1', True),
        ('"a":8,"p":0.5,"q":5,"f":1,"l":1,"T":1', True),  # numbers where Binance sends strings: taken as well
        ('"a":8.0,"p":"0.5","q":"5","f":1,"l":1,"T":1', False),
        ('"a":8,"p":"0.5","q":"5","f":1,"l":1,"T":true', False),
        ('"a":8,"p":"0.5","q":"5","f":"1","l":1,"T":1', False),
        ('"a":8,"p":"0.5","q":"5","f":1,"l":1.5,"T":1', False),
    ],
)
def test_the_parser_refuses_ids_and_times_that_are_not_integers(fields, accepted):
    health = SourceHealth()
    parser = BinanceParser(health)
    parser.track("XRP/ETH")

    event, _ = parser.parse(f'{{"stream":"xrpeth@aggTrade","data":{{"e":"aggTrade","E":2,"s":"XRPETH",{fields}}}}}')

    if accepted:
        assert isinstance(event, TradeEvent)
        assert (event.trade.trade_id, event.trade.seq, event.trade.price, event.trade.amount) == ("8", 8, 0.5, 5.0)
        assert not health.rejected
    else:
        assert event is None
        assert health.rejected == {"malformed aggTrade": 1}


def test_the_parser_reports_a_jump_in_aggregate_trade_ids():
    parser = BinanceParser(SourceHealth())
    parser.track("XRP/ETH")

    def message(agg_id: int) -> str:
        return (
            '{"stream":"xrpeth@aggTrade","data":{"e":"aggTrade","E":1,"s":"XRPETH",'
            f'"a":{agg_id},"p":"0.1","q":"5","f":{agg_id},"l":{agg_id},"T":1,"m":true,"M":true}}}}'
        )

    assert parser.parse(message(10))[1] is None
    assert parser.parse(message(11))[1] is None
    assert parser.parse(message(15))[1] == 12  # 12, 13 and 14 were missed
    assert parser.parse(message(13))[1] is None  # older: passed on for the builder to place or drop


async def test_after_a_restart_it_fetches_the_trades_since_the_resume_point_over_rest():
    # Given 600 recorded trades of which the first 400 happened while we were not running
    messages = messages_from_ccxt_trades(XRP_OLD, "XRPETH", count=600)
    trades = [m for m in messages if m.kind == "aggTrade"]
    async with BinanceServer(messages) as server:
        server.advance(messages.index(trades[400]))
        resume_after = trades[199].rest_row["T"]  # type: ignore[index]
        source = source_for(server, max_catchup_ms=7 * 86_400_000)

        # When the adapter starts with a resume point after trade 199
        def done(events):
            return kinds(events)["TradeEvent"] >= 400 and server.finished

        batches: list[TradeBatch] = []
        events = await collect_events(source, {"XRP/ETH": resume_after}, until=done, batches=batches)

    # Then it fetched trades 200..399 over REST, then streamed the rest live, in order, once each
    ids = [int(event.trade.trade_id) for event in events if isinstance(event, TradeEvent)]
    assert ids == [trade.rest_row["a"] for trade in trades[200:600]]  # type: ignore[index]
    assert any("startTime" in request for request in server.rest_requests)
    # the REST pages as runs of trades: one event a page, not one a trade
    assert sum(len(batch.run) for batch in batches) >= 200
    assert len(batches) <= 2
    assert not [event for event in events if isinstance(event, GapEvent)]


async def test_a_resume_point_older_than_the_catch_up_window_asks_for_a_bar_backfill():
    messages = messages_from_ccxt_trades(XRP_OLD, "XRPETH", count=300)
    async with BinanceServer(messages) as server:
        server.advance(len(messages))
        last = messages[-2].rest_row["T"]  # type: ignore[index]
        source = source_for(server, max_catchup_ms=10 * 60_000)
        events = await collect_events(source, {"XRP/ETH": 0}, until=lambda events: isinstance(events[-1], TradeEvent))
    gap = events[0]
    assert isinstance(gap, GapEvent)
    oldest = last - 10 * 60_000
    oldest -= oldest % 60_000  # in whole minutes: the bar backfill takes the minutes before, trades the rest
    assert (gap.symbol, gap.start_ms, gap.end_ms) == ("XRP/ETH", 1, oldest)
    first = next(event for event in events if isinstance(event, TradeEvent))
    assert first.trade.time_ms >= oldest


async def test_a_symbol_added_to_the_subscription_is_subscribed_on_the_open_connection():
    hold = 158 // 2
    async with futures_server(hold_at=hold) as server:
        subscription = Subscription({"SUSHI/USDT": None})
        source = futures_source_for(server)
        source.policy = RetryPolicy(stall_seconds=10)  # the held market is silent: not a stall
        received: list[Any] = []

        async def consume() -> None:
            async with aclosing(source.stream(subscription)) as stream:
                async for event in stream:
                    received.append(event)

        task = asyncio.create_task(consume())
        async with asyncio.timeout(10):
            while server.cursor < hold:
                await asyncio.sleep(0.01)
            subscription.update({"SUSHI/USDT": None, "CTK/USDT": None})
            while not server.subscribe_requests:
                await asyncio.sleep(0.01)
            server.release()
            while not server.finished or len(received) < sum(server.sent.values()):
                await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert server.subscribe_requests[0]["method"] == "SUBSCRIBE"
    assert server.subscribe_requests[0]["params"] == ["ctkusdt@aggTrade", "ctkusdt@kline_1m"]
    assert server.connections == 1
    ctk = [e for e in received if isinstance(e, TradeEvent) and e.symbol == "CTK/USDT"]
    assert len(ctk) == server.sent_by_stream["ctkusdt@aggTrade"] > 0


def test_bars_built_from_the_recorded_xrp_trades_match_freqtrades_candles():
    # The oracle of the fault-injection tests: the REST rows the local server serves are the trades
    # freqtrade recorded, and bars built from them are freqtrade's reference candles.
    from market.sources.binance import trade_from_rest

    messages = messages_from_ccxt_trades(XRP_OLD, "XRPETH")
    bars = build_bars(trade_from_rest(m.rest_row) for m in messages if m.rest_row is not None)
    assert len(bars) == 2_469


def flattened(events) -> list[Any]:
    """TradeBatch events as the trade and clock events they stand for."""
    flat = []
    for event in events:
        if not isinstance(event, TradeBatch):
            flat.append(event)
            continue
        clocks = dict(event.run.clocks)
        for index, trade in enumerate(event.run.trades()):
            flat.append(TradeEvent(event.symbol, trade))
            if index in clocks:
                flat.append(ClockEvent(clocks[index]))
    return flat


def test_parse_many_gives_the_events_of_parse_message_by_message_with_trade_runs_gathered():
    # Given the futures recording's trades and klines, with resent trades, a jump in the ids, a
    # trade of a symbol not tracked and malformed messages mixed in
    recorded = [message.text for message in messages_from_cryptofeed(CRYPTOFEED / "BINANCE_FUTURES.ws.1.0")]
    trades = [text for text in recorded if "aggTrade" in text]
    messed_up: list[bytes | str] = [*recorded[:40], *trades[20:25], *recorded[40:60], b"\x00\xff not json"]
    messed_up += recorded[60:]
    jump = trades[-1].replace('"a":', '"a":1000', 1)  # an id far beyond: the builder notes the hole
    messed_up += [jump, b'{"result":null,"id":1}', trades[-1]]

    def parser() -> BinanceParser:
        parser = BinanceParser(SourceHealth(), clock_lag_ms=1000)
        for symbol in ("SUSHI/USDT", "CTK/USDT", "AKRO/USDT"):  # not KEEP/USDT
            parser.track(symbol)
        return parser

    single, many = parser(), parser()

    # When one parser takes them one by one, the other all at once
    expected = events_one_by_one(single, messed_up)
    events = many.parse_many(messed_up)

    # Then the events are the same once the runs are spread out again, and so is what the parsers know
    assert flattened(events) == expected
    runs = [len(event.run) for event in events if isinstance(event, TradeBatch)]
    assert len(runs) > 10
    assert max(runs) > 1
    assert (many.health.messages, many.health.rejected) == (single.health.messages, single.health.rejected)
    assert many.states == single.states
    assert many.clock == single.clock
