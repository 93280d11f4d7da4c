"""The bundled sample data loads, and loading it again changes nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from market.models import Bar, Instrument

pytestmark = pytest.mark.django_db


def load() -> str:
    out = StringIO()
    call_command("load_sample_data", stdout=out)
    return out.getvalue()


def test_it_loads_the_sample_instruments_with_their_history_once():
    first = load()
    counts = {i.symbol: Bar.objects.filter(instrument=i).count() for i in Instrument.objects.all()}

    second = load()

    assert counts == {"XRP/ETH": 1022, "UNITTEST/BTC": 13681}
    assert "XRP/ETH on binance: 1022 bars inserted" in first
    assert "0 bars inserted, 0 updated, 13681 unchanged" in second
    assert Bar.objects.count() == sum(counts.values())
