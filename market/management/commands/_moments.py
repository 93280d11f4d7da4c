"""Moments on the command line: `2024-01-01`, `2024-01-01T12:30`, `2024-01-01T12:30:00+02:00`.

A date or a datetime without a zone is UTC: the product stores and shows UTC throughout.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def parse_moment(text: str) -> datetime:
    """An aware datetime; for argparse `type=` (a bad value is a clear usage error)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date or time (use e.g. 2024-01-01 or 2024-01-01T12:30)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
