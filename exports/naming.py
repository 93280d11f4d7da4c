"""Names of export files: what a download is called. Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from exports.writers import EXTENSIONS

_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def download_name(
    exchange: str, symbol: str, timeframe: str, start: datetime | None, end: datetime | None, fmt: str
) -> str:
    """`binance_BTC-USDT_1m_20240101T0000Z_20240102T0000Z.csv`: safe in any file system and header
    (only letters, digits, `.`, `-` and `_`); an open end is `first` or `last`."""
    parts = [exchange, symbol, timeframe, _moment(start, "first"), _moment(end, "last")]
    stem = "_".join(_UNSAFE.sub("-", part).strip("-.") or "x" for part in parts)
    return f"{stem}.{EXTENSIONS[fmt]}"


def _moment(moment: datetime | None, open_end: str) -> str:
    return open_end if moment is None else moment.astimezone(UTC).strftime("%Y%m%dT%H%MZ")
