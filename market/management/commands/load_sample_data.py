"""Create the sample exchanges and instruments and import their bundled history (idempotent)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from django.core.management.base import BaseCommand

from market.models import Exchange
from market.sample import SAMPLE_EXCHANGES, SAMPLE_INSTRUMENTS, sample_path
from market.services import ensure_instrument, store_bar_frame


def history_frame(path: str, days: float | None) -> pd.DataFrame:
    """A freqtrade OHLCV file as the bar store's columns, cut to its first `days` if given."""
    frame = pd.read_feather(sample_path(path)).rename(columns={"date": "time"})
    if days is not None:
        frame = frame[frame["time"] < frame["time"].iloc[0] + pd.Timedelta(days=days)]
    return frame


class Command(BaseCommand):
    help = "Create the sample exchanges/instruments and import their bundled history. Safe to run twice."

    def handle(self, *args: Any, **options: Any) -> None:
        for code, (name, classes) in SAMPLE_EXCHANGES.items():
            Exchange.objects.get_or_create(code=code, defaults={"name": name, "asset_classes": classes})
        for item in SAMPLE_INSTRUMENTS:
            instrument = ensure_instrument(item.exchange, item.symbol)
            if item.history is None:
                continue
            frame = history_frame(item.history, item.history_days)
            result = store_bar_frame(frame, instrument_id=instrument.pk, timeframe="1m")
            self.stdout.write(
                f"{instrument}: {result.inserted} bars inserted, {result.updated} updated, {result.unchanged} unchanged"
            )
