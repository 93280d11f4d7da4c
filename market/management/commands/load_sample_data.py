"""Create the sample exchanges and instruments and import their bundled history (idempotent)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from django.core.management.base import BaseCommand

from market.barstore import BarRow
from market.models import Exchange, Instrument
from market.sample import SAMPLE_EXCHANGES, SAMPLE_INSTRUMENTS, sample_path
from market.services import store_bars


def history_rows(instrument_id: int, path: str, days: float | None) -> list[BarRow]:
    frame = pd.read_feather(sample_path(path))
    if days is not None:
        frame = frame[frame["date"] < frame["date"].iloc[0] + pd.Timedelta(days=days)]
    return [
        BarRow(instrument_id, "1m", t.to_pydatetime(), o, h, low, c, v, None, None, True)
        for t, o, h, low, c, v in zip(
            frame["date"], frame["open"], frame["high"], frame["low"], frame["close"], frame["volume"], strict=True
        )
    ]


class Command(BaseCommand):
    help = "Create the sample exchanges/instruments and import their bundled history. Safe to run twice."

    def handle(self, *args: Any, **options: Any) -> None:
        for code, (name, classes) in SAMPLE_EXCHANGES.items():
            Exchange.objects.get_or_create(code=code, defaults={"name": name, "asset_classes": classes})
        for item in SAMPLE_INSTRUMENTS:
            instrument, _ = Instrument.objects.get_or_create(
                exchange=Exchange.objects.get(code=item.exchange), symbol=item.symbol
            )
            if item.history is None:
                continue
            result = store_bars(history_rows(instrument.pk, item.history, item.history_days), publish=False)
            self.stdout.write(
                f"{instrument}: {result.inserted} bars inserted, {result.updated} updated, {result.unchanged} unchanged"
            )
