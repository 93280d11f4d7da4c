"""Cross-exchange arbitrage detection: the pure core (no Django, no clock, no settings).

Input: the latest quote of each instrument (an asset pair on one venue): a price, and where the
source knows them the best bid and ask, with the time the price was observed, in epoch seconds.
Output: for each asset pair quoted on two or more venues, the best buy-here-sell-there pair whose
spread after both venues' taker fees clears the threshold.

    cost per unit bought on venue b   c = ask_b x (1 + fee_b)          (ask_b = price_b without a book)
    proceeds per unit sold on venue s p = bid_s x (1 - fee_s)          (bid_s = price_s without a book)
    gross spread bps = (bid_s / ask_b - 1) x 10,000
    net spread bps   = (p / c - 1) x 10,000

The net spread is the return of buying one unit on b and selling it on s, both as takers, per unit
of quote currency spent; it is what has to clear `min_net_bps`. Transfers between venues (withdrawal
fees, time) are not counted: docs/arbitrage.md says why and what that means.

Per pair group the best buy is the venue with the lowest `c` and the best sell the one with the
highest `p`; when both are the same venue, the better of (best buy, second-best sell) and (second-best
buy, best sell) is taken. Everything is done on numpy arrays: the strings are hashed into integer
codes, one sort of those codes (pair, venue, instrument) serves both sides, and each side's best two
venues are minima per group: O(n log n) for n quotes, no Python loop over quotes
(bench/bench_arbitrage.py measures it against a pandas self-merge of every venue pair).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

BPS = 10_000.0

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Quote:
    """The latest price of one instrument. `time` is when the price was observed, in epoch seconds
    (for a bar's close: the end of the bar). `bid`/`ask`: the best book prices, where recorded."""

    instrument_id: int
    venue: str
    base: str
    quote: str
    price: float
    time: float
    bid: float | None = None
    ask: float | None = None


@dataclass(frozen=True)
class DetectionParams:
    """`fees_bps`: taker fee per venue code, `default_fee_bps` for the others. `quote_equivalents`
    maps a quote currency to the one it counts as (`{"USDT": "USD", "USDC": "USD"}`): empty by
    default, since a stablecoin is not its currency (USDC traded at 0.88 USD in March 2023) and a
    "spread" between BTC/USDT and BTC/USDC may be the stablecoins' own price difference."""

    min_net_bps: float = 0.0
    max_age_seconds: float = 120.0
    default_fee_bps: float = 10.0
    fees_bps: Mapping[str, float] = field(default_factory=dict)
    quote_equivalents: Mapping[str, str] = field(default_factory=dict)

    def fee_bps(self, venue: str) -> float:
        return self.fees_bps.get(venue, self.default_fee_bps)

    def canonical_quote(self, quote: str) -> str:
        return self.quote_equivalents.get(quote, quote)


@dataclass(frozen=True)
class Opportunity:
    """Buy `base` on the buy venue, sell it on the sell venue. `quote` is the canonical quote
    currency (`USD` for BTC/USDT against BTC/USDC when those count as one). `observed_at`: the newer
    of the two quotes' times."""

    base: str
    quote: str
    buy_venue: str
    buy_instrument_id: int
    buy_price: float
    sell_venue: str
    sell_instrument_id: int
    sell_price: float
    gross_bps: float
    net_bps: float
    observed_at: float

    @property
    def symbol(self) -> str:
        return f"{self.base}/{self.quote}"


@dataclass(frozen=True)
class QuoteColumns:
    """Quotes as columns, what the detector works on (`quote_columns` builds them from `Quote`s; a
    database read can build them directly). `bid`/`ask` are NaN where unknown."""

    instrument_id: Ints
    venue: npt.NDArray[np.object_]
    base: npt.NDArray[np.object_]
    quote: npt.NDArray[np.object_]
    price: Floats
    time: Floats
    bid: Floats
    ask: Floats

    def __len__(self) -> int:
        return len(self.instrument_id)


def quote_columns(quotes: Sequence[Quote]) -> QuoteColumns:
    def text(values: list[str]) -> npt.NDArray[np.object_]:
        column = np.empty(len(values), dtype=object)
        column[:] = values
        return column

    def floats(values: list[float | None]) -> Floats:
        return np.array([np.nan if value is None else value for value in values], dtype=np.float64)

    return QuoteColumns(
        instrument_id=np.array([q.instrument_id for q in quotes], dtype=np.int64),
        venue=text([q.venue for q in quotes]),
        base=text([q.base for q in quotes]),
        quote=text([q.quote for q in quotes]),
        price=floats([q.price for q in quotes]),
        time=floats([q.time for q in quotes]),
        bid=floats([q.bid for q in quotes]),
        ask=floats([q.ask for q in quotes]),
    )


def detect_opportunities(
    quotes: Sequence[Quote] | QuoteColumns, params: DetectionParams, now: float
) -> list[Opportunity]:
    """The best opportunity of each pair group whose net spread is above `params.min_net_bps`,
    ordered by symbol. Quotes older than `max_age_seconds` at `now`, and quotes without a positive
    price, take no part."""
    columns = quotes if isinstance(quotes, QuoteColumns) else quote_columns(quotes)
    if len(columns) == 0:
        return []
    usable = _usable(columns, params, now)
    if not usable.any():
        return []
    return _detect(_take(columns, usable), params)


def _usable(columns: QuoteColumns, params: DetectionParams, now: float) -> npt.NDArray[np.bool_]:
    # A quote from the future (another machine's clock a little ahead) is fresh, not stale.
    fresh = (now - columns.time) <= params.max_age_seconds
    priced = (columns.price > 0) | ((columns.bid > 0) & (columns.ask > 0))
    return np.asarray(fresh & priced, dtype=np.bool_)


def _take(columns: QuoteColumns, mask: npt.NDArray[np.bool_]) -> QuoteColumns:
    return QuoteColumns(*(getattr(columns, name)[mask] for name in QuoteColumns.__dataclass_fields__))


def _detect(columns: QuoteColumns, params: DetectionParams) -> list[Opportunity]:
    group, base, quote = _pair_groups(columns, params)
    # Venue codes in name order: ties are broken by venue name then instrument id, so that the
    # answer never depends on the order of the input.
    venue, venue_names = _codes(columns.venue)
    fees = np.array([params.fee_bps(name) for name in venue_names], dtype=np.float64)[venue] / BPS
    # Where the book is known, one buys at the ask and sells at the bid; otherwise at the last price.
    ask = np.where(columns.ask > 0, columns.ask, columns.price)
    bid = np.where(columns.bid > 0, columns.bid, columns.price)
    cost = ask * (1 + fees)
    proceeds = bid * (1 - fees)
    groups = _Groups.of(group, venue, columns.instrument_id)
    buy_best, buy_second = _best_two_venues(groups, venue, cost)
    sell_best, sell_second = _best_two_venues(groups, venue, -proceeds)
    buy, sell = _pick_pairs(venue, cost, proceeds, buy_best, buy_second, sell_best, sell_second)
    found = buy >= 0
    buy, sell = buy[found], sell[found]
    net = (proceeds[sell] / cost[buy] - 1) * BPS
    above = net > params.min_net_bps
    buy, sell, net = buy[above], sell[above], net[above]
    gross = (bid[sell] / ask[buy] - 1) * BPS
    observed = np.maximum(columns.time[buy], columns.time[sell])
    opportunities = [
        Opportunity(
            base=base[b],
            quote=quote[b],
            buy_venue=str(columns.venue[b]),
            buy_instrument_id=int(columns.instrument_id[b]),
            buy_price=float(ask[b]),
            sell_venue=str(columns.venue[s]),
            sell_instrument_id=int(columns.instrument_id[s]),
            sell_price=float(bid[s]),
            gross_bps=float(g),
            net_bps=float(n),
            observed_at=float(t),
        )
        for b, s, g, n, t in zip(
            buy.tolist(), sell.tolist(), gross.tolist(), net.tolist(), observed.tolist(), strict=True
        )
    ]
    return sorted(opportunities, key=lambda o: o.symbol)


def _pair_groups(columns: QuoteColumns, params: DetectionParams) -> tuple[Ints, _Names, _Names]:
    """Each quote's pair group code (base and canonical quote), and views giving each quote's base
    and canonical quote as text. Hashing, not sorting, the strings: they are most of the input."""
    base_code, bases = _codes(columns.base)
    quote_code, quotes = _codes(columns.quote)
    canonical_code, canonical = _codes(np.array([params.canonical_quote(q) for q in quotes], dtype=object))
    pair = base_code * len(canonical) + canonical_code[quote_code]
    group, _ = pd.factorize(pair)
    return group.astype(np.int64), _Names(bases, base_code), _Names(canonical, canonical_code[quote_code])


class _Names:
    """The text of a coded column, row by row, without building the whole column."""

    def __init__(self, names: npt.NDArray[np.object_], codes: Ints) -> None:
        self.names, self.codes = names, codes

    def __getitem__(self, row: int) -> str:
        return str(self.names[self.codes[row]])


def _codes(values: npt.NDArray[np.object_]) -> tuple[Ints, npt.NDArray[np.object_]]:
    """Integer codes of the values, numbered in the values' sorted order, and the distinct values."""
    codes, names = pd.factorize(values, sort=True)
    return np.asarray(codes, dtype=np.int64), np.asarray(names, dtype=object)


@dataclass(frozen=True)
class _Groups:
    """Rows in group order (ties within a group by venue name, then instrument id): `order[i]` is
    the row at sorted position i, `ordinal[i]` its group's number (0, 1, ...), `starts` where each
    group begins. One sort of integers, shared by the buy and the sell side."""

    order: Ints
    ordinal: Ints
    starts: Ints

    @classmethod
    def of(cls, group: Ints, venue: Ints, instrument: Ints) -> _Groups:
        order = np.lexsort((instrument, venue, group))
        sorted_group = group[order]
        first = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
        return cls(order, np.cumsum(first) - 1, np.flatnonzero(first))


def _best_two_venues(groups: _Groups, venue: Ints, key: Floats) -> tuple[Ints, Ints]:
    """Per group (by ordinal): the row with the lowest `key`, and the row with the lowest `key` on
    another venue than that one (-1 where there is none). O(n) after the shared sort: a minimum per
    group, then the first row in group order that reaches it (which breaks ties the same way always)."""
    in_order = key[groups.order]
    venue_in_order = venue[groups.order]
    best = _first_minimum(in_order, groups)
    # Every row of the best row's venue is out of the running for second place.
    best_venue = venue_in_order[best][groups.ordinal]
    second = _first_minimum(np.where(venue_in_order == best_venue, np.inf, in_order), groups)
    return groups.order[best], np.where(second >= 0, groups.order[np.maximum(second, 0)], -1)


def _first_minimum(values: Floats, groups: _Groups) -> Ints:
    """Per group, the sorted position of its first finite minimum (-1 if it has no finite value)."""
    minimum = np.minimum.reduceat(values, groups.starts)
    hits = np.flatnonzero((values == minimum[groups.ordinal]) & np.isfinite(values))
    positions = np.full(len(groups.starts), -1, dtype=np.int64)
    if len(hits):
        hit_groups = groups.ordinal[hits]
        first = np.r_[True, hit_groups[1:] != hit_groups[:-1]]
        positions[hit_groups[first]] = hits[first]
    return positions


def _pick_pairs(
    venue: Ints,
    cost: Floats,
    proceeds: Floats,
    buy_best: Ints,
    buy_second: Ints,
    sell_best: Ints,
    sell_second: Ints,
) -> tuple[Ints, Ints]:
    """Per group, the (buy row, sell row) on two different venues with the highest proceeds / cost;
    (-1, -1) for a group quoted on one venue only."""
    buy, sell = buy_best.copy(), sell_best.copy()
    clash = venue[buy_best] == venue[sell_best]
    # Same venue best on both sides: the better of giving up the best sell or the best buy.
    with_second_sell = np.where(sell_second >= 0, proceeds[sell_second] / cost[buy_best], -np.inf)
    with_second_buy = np.where(buy_second >= 0, proceeds[sell_best] / cost[buy_second], -np.inf)
    take_second_sell = clash & (with_second_sell >= with_second_buy) & (sell_second >= 0)
    take_second_buy = clash & ~take_second_sell & (buy_second >= 0)
    sell[take_second_sell] = sell_second[take_second_sell]
    buy[take_second_buy] = buy_second[take_second_buy]
    alone = clash & ~take_second_sell & ~take_second_buy
    buy[alone] = sell[alone] = -1
    return buy, sell
