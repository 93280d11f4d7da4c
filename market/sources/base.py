"""The one interface every data source speaks. Pure: no Django imports.

A source turns some outside stream (an exchange websocket, a REST poll, a recording) into an async
stream of normalized events. It does network or file I/O only: bars are built, stored and published
by the collector, the same way for every source.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from market.bars import Trade


@dataclass(frozen=True, slots=True)
class TradeEvent:
    symbol: str
    trade: Trade


@dataclass(frozen=True, slots=True)
class ClockEvent:
    """The source's clock has reached `time_ms`: bars that ended before it can close."""

    time_ms: int


SourceEvent = TradeEvent | ClockEvent


class Source(abc.ABC):
    #: The name used on the command line (`collect --source NAME`).
    name: str
    #: The exchange code whose instruments this source feeds.
    exchange: str

    @abc.abstractmethod
    def stream(self, symbols: Mapping[str, int | None]) -> AsyncIterator[SourceEvent]:
        """Events for `symbols`, each mapped to the time (epoch ms) to resume after, or None."""
