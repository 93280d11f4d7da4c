"""The arbitrage detector (market.arbitrage, pure): hand-worked cases, then agreement with a brute
force over every venue pair on generated quotes. No database."""

from __future__ import annotations

import random
from itertools import permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.arbitrage import DetectionParams, Opportunity, Quote, detect_opportunities

NOW = 1_700_000_000.0


def quote(instrument: int, venue: str, price: float, *, symbol: str = "BTC/USDT", age: float = 10.0, **book) -> Quote:
    base, _, currency = symbol.partition("/")
    return Quote(instrument, venue, base, currency, price, NOW - age, **book)


def detect(quotes: list[Quote], **params) -> list[Opportunity]:
    return detect_opportunities(quotes, DetectionParams(**params), NOW)


def test_a_gross_edge_smaller_than_both_fees_is_no_opportunity():
    # Given 15 bps between two venues, each charging a 10 bps taker fee
    quotes = [quote(1, "binance", 100.00), quote(2, "kraken", 100.15)]

    # Then: buying costs 100.00 x 1.001 = 100.1, selling yields 100.15 x 0.999 = 100.04985: a loss
    assert detect(quotes, default_fee_bps=10) == []
    # With 5 bps fees: 100.15 x 0.9995 = 100.099925 for 100.00 x 1.0005 = 100.05: +4.99 bps net
    (found,) = detect(quotes, default_fee_bps=5)
    assert found.gross_bps == pytest.approx(15.0)
    assert found.net_bps == pytest.approx((100.099925 / 100.05 - 1) * 10_000)
    assert found.net_bps == pytest.approx(4.990, abs=1e-3)


def test_the_net_spread_must_be_above_the_minimum():
    quotes = [quote(1, "binance", 100.00), quote(2, "kraken", 100.15)]

    assert detect(quotes, default_fee_bps=5, min_net_bps=4.9) != []
    assert detect(quotes, default_fee_bps=5, min_net_bps=5.0) == []


def test_each_venue_pays_its_own_fee():
    quotes = [quote(1, "binance", 100.0), quote(2, "kraken", 101.0)]

    (found,) = detect(quotes, fees_bps={"binance": 10, "kraken": 26}, default_fee_bps=1000)

    # 101 x (1 - 0.0026) / (100 x (1 + 0.0010)) - 1 = 100.7374 / 100.1 - 1
    assert found.net_bps == pytest.approx((100.7374 / 100.1 - 1) * 10_000)
    assert found.gross_bps == pytest.approx(100.0)


def test_stale_quotes_never_make_an_opportunity():
    fresh, stale = quote(1, "binance", 100.0, age=5), quote(2, "kraken", 105.0, age=121)

    assert detect([fresh, stale], default_fee_bps=0, max_age_seconds=120) == []
    # Exactly at the limit still counts
    at_limit = quote(2, "kraken", 105.0, age=120)
    assert len(detect([fresh, at_limit], default_fee_bps=0, max_age_seconds=120)) == 1


def test_a_stale_quote_does_not_hide_a_fresh_pair():
    quotes = [quote(1, "binance", 100.0), quote(2, "kraken", 102.0), quote(3, "coinbase", 110.0, age=600)]

    (found,) = detect(quotes, default_fee_bps=0)

    assert (found.buy_venue, found.sell_venue) == ("binance", "kraken")


def test_three_venues_buy_at_the_cheapest_and_sell_at_the_dearest():
    quotes = [quote(1, "binance", 100.0), quote(2, "kraken", 101.0), quote(3, "coinbase", 100.5)]

    (found,) = detect(quotes, default_fee_bps=0)

    # (101 / 100 - 1) x 10,000 = 100 bps, gross and (without fees) net
    assert found == Opportunity(
        base="BTC",
        quote="USDT",
        buy_venue="binance",
        buy_instrument_id=1,
        buy_price=100.0,
        sell_venue="kraken",
        sell_instrument_id=2,
        sell_price=101.0,
        gross_bps=found.gross_bps,
        net_bps=found.net_bps,
        observed_at=NOW - 10,
    )
    assert found.gross_bps == found.net_bps == pytest.approx(100.0)


def test_fees_can_change_which_venues_are_best():
    # kraken is dearest but its 60 bps fee leaves coinbase the better place to sell
    quotes = [quote(1, "binance", 100.0), quote(2, "kraken", 101.0), quote(3, "coinbase", 100.8)]

    (found,) = detect(quotes, fees_bps={"binance": 0, "kraken": 60, "coinbase": 0})

    assert found.sell_venue == "coinbase"
    assert found.net_bps == pytest.approx(80.0)


def test_quote_currencies_are_kept_apart_unless_configured_as_one():
    quotes = [quote(1, "binance", 100.0, symbol="BTC/USDT"), quote(2, "kraken", 101.0, symbol="BTC/USD")]

    assert detect(quotes, default_fee_bps=0) == []
    (found,) = detect(quotes, default_fee_bps=0, quote_equivalents={"USDT": "USD"})
    assert (found.symbol, found.buy_instrument_id, found.sell_instrument_id) == ("BTC/USD", 1, 2)


def test_two_instruments_of_one_venue_are_never_paired_with_each_other():
    # binance has both extremes (BTC/USDT cheapest, BTC/USDC dearest) once the quotes count as one
    quotes = [
        quote(1, "binance", 100.0, symbol="BTC/USDT"),
        quote(2, "binance", 102.0, symbol="BTC/USDC"),
        quote(3, "kraken", 101.0, symbol="BTC/USD"),
    ]

    (found,) = detect(quotes, default_fee_bps=0, quote_equivalents={"USDT": "USD", "USDC": "USD"})

    # Buy binance 100 / sell kraken 101 (100 bps) beats buy kraken 101 / sell binance 102 (99 bps)
    assert (found.buy_instrument_id, found.sell_instrument_id) == (1, 3)


def test_a_pair_on_one_venue_only_is_no_opportunity():
    assert detect([quote(1, "binance", 100.0), quote(2, "binance", 90.0, symbol="ETH/USDT")]) == []


def test_the_book_is_used_where_known_buying_at_the_ask_and_selling_at_the_bid():
    quotes = [
        quote(1, "binance", 100.0, bid=99.9, ask=100.1),
        quote(2, "kraken", 100.5, bid=100.4, ask=100.6),
    ]

    (found,) = detect(quotes, default_fee_bps=0)

    assert (found.buy_price, found.sell_price) == (100.1, 100.4)
    assert found.gross_bps == pytest.approx((100.4 / 100.1 - 1) * 10_000)


def test_quotes_without_a_positive_price_are_ignored():
    assert detect([quote(1, "binance", 0.0), quote(2, "kraken", 100.0)], default_fee_bps=0) == []


def test_the_result_does_not_depend_on_the_order_of_the_quotes():
    quotes = [
        quote(1, "binance", 100.0),
        quote(2, "kraken", 101.0),
        quote(3, "coinbase", 101.0),
        quote(4, "binance", 10.0, symbol="ETH/USDT"),
        quote(5, "kraken", 10.0, symbol="ETH/USDT"),
        quote(6, "coinbase", 10.2, symbol="ETH/USDT"),
    ]
    expected = detect(quotes, default_fee_bps=0)

    for _ in range(20):
        random.shuffle(quotes)
        assert detect(quotes, default_fee_bps=0) == expected
    # Ties go to the venue first by name: coinbase and kraken both sell BTC at 101
    assert [(o.symbol, o.buy_venue, o.sell_venue) for o in expected] == [
        ("BTC/USDT", "binance", "coinbase"),
        ("ETH/USDT", "binance", "coinbase"),
    ]


def test_no_quotes_no_opportunities():
    assert detect([]) == []


# --- Agreement with a brute force over every pair of venues ---------------------------------------


def brute_force(quotes: list[Quote], params: DetectionParams, now: float) -> dict[str, float]:
    """The best net spread of each symbol, trying every (buy, sell) pair of fresh quotes on two venues."""
    best: dict[str, float] = {}
    fresh = [q for q in quotes if now - q.time <= params.max_age_seconds and q.price > 0]
    for buy, sell in permutations(fresh, 2):
        symbol = f"{buy.base}/{params.canonical_quote(buy.quote)}"
        if buy.venue == sell.venue or symbol != f"{sell.base}/{params.canonical_quote(sell.quote)}":
            continue
        cost = buy.price * (1 + params.fee_bps(buy.venue) / 10_000)
        proceeds = sell.price * (1 - params.fee_bps(sell.venue) / 10_000)
        net = (proceeds / cost - 1) * 10_000
        if net > params.min_net_bps:
            best[symbol] = max(best.get(symbol, net), net)
    return best


VENUES = ["binance", "kraken", "coinbase", "bitstamp"]
generated_quote = st.builds(
    lambda i, venue, base, currency, price, age: Quote(i, venue, base, currency, price, NOW - age),
    st.integers(1, 10**6),
    st.sampled_from(VENUES),
    st.sampled_from(["BTC", "ETH"]),
    st.sampled_from(["USDT", "USD", "USDC"]),
    st.floats(95, 105),
    st.floats(-5, 200),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(generated_quote, max_size=25),
    st.sampled_from([{}, {"USDT": "USD", "USDC": "USD"}]),
    st.floats(-50, 50),
)
def test_the_detector_finds_the_best_pair_a_brute_force_finds(quotes, equivalents, min_net_bps):
    params = DetectionParams(
        min_net_bps=min_net_bps,
        max_age_seconds=120,
        fees_bps={"binance": 10, "kraken": 26},
        default_fee_bps=20,
        quote_equivalents=equivalents,
    )

    found = detect_opportunities(quotes, params, NOW)

    assert {o.symbol: pytest.approx(o.net_bps) for o in found} == brute_force(quotes, params, NOW)
    assert all(o.buy_venue != o.sell_venue for o in found)
