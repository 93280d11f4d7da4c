"""Small builders shared by the market tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from market.models import Exchange, Instrument

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture
def sample_data() -> Path:
    return SAMPLE_DATA


@pytest.fixture
def exchange(db) -> Exchange:
    return Exchange.objects.create(code="binance", name="Binance", asset_classes="crypto")


@pytest.fixture
def instrument(exchange: Exchange) -> Instrument:
    return Instrument.objects.create(exchange=exchange, symbol="XRP/ETH")


@pytest.fixture
async def close_thread_connections():
    """Async tests reach the database from asgiref's worker thread; close its connections afterwards
    so the test database can be dropped."""
    yield
    await sync_to_async(connections.close_all)()
