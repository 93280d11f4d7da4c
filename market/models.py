"""Market data: where it comes from (exchanges), what it is about (instruments) and the bars.

Prices and volumes are stored as double precision floats (`FloatField`, PostgreSQL `float8`), not
`numeric`. Why: a float8 carries 15-17 significant digits, more than any exchange quotes (Binance
prices have at most 8 decimals and rarely more than 7 integer digits; that fits exactly to the
nearest representable value and prints back the same); every consumer of bars (pandas, TA-Lib,
numpy, JSON) works in float64 anyway; and `numeric(28,10)` costs 1.5-2x on every write and read path
plus a Decimal conversion per value. Money that must add up to the cent (fills, balances) is not
stored here; if it ever is, it gets `DecimalField`.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from market.timeframes import TIMEFRAMES


class AssetClass(models.TextChoices):
    CRYPTO = "crypto", "Crypto"
    STOCK = "stock", "Stock"
    INDEX = "index", "Index"
    FX = "fx", "FX"


class Exchange(models.Model):
    """A venue or data source whose instruments we track (binance, alpaca, yahoo)."""

    code = models.SlugField(max_length=32, unique=True, help_text="Short lowercase name, e.g. binance")
    name = models.CharField(max_length=100)
    asset_classes = models.CharField(max_length=100, blank=True, help_text="Comma separated, informative only")
    timezone = models.CharField(max_length=64, default="UTC", help_text="Exchange's local time zone")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class InstrumentQuerySet(models.QuerySet["Instrument"]):
    def active(self) -> InstrumentQuerySet:
        return self.filter(active=True, exchange__active=True)

    def search(self, text: str) -> InstrumentQuerySet:
        return self.filter(Q(symbol__icontains=text) | Q(name__icontains=text))


class Instrument(models.Model):
    """A tradable thing as the user knows it: `BTC/USDT` on binance, `AAPL` on alpaca."""

    exchange = models.ForeignKey(Exchange, on_delete=models.PROTECT, related_name="instruments")
    symbol = models.CharField(max_length=40, help_text="As the user knows it: BTC/USDT, AAPL, ^GSPC")
    name = models.CharField(max_length=200, blank=True)
    asset_class = models.CharField(max_length=10, choices=AssetClass.choices, default=AssetClass.CRYPTO)
    base = models.CharField(max_length=20, blank=True, help_text="Base asset, e.g. BTC in BTC/USDT")
    quote = models.CharField(max_length=20, blank=True, help_text="Quote currency, e.g. USDT in BTC/USDT")
    active = models.BooleanField(default=True, help_text="Collectors stream only active instruments")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InstrumentQuerySet.as_manager()

    class Meta:
        ordering = ["exchange__code", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol"], name="instrument_unique_symbol_per_exchange"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} on {self.exchange.code}"

    def save(self, *args: object, **kwargs: object) -> None:
        if "/" in self.symbol and not (self.base and self.quote):
            base, _, quote = self.symbol.partition("/")
            self.base = self.base or base
            self.quote = self.quote or quote
        super().save(*args, **kwargs)  # type: ignore[arg-type]


TIMEFRAME_CHOICES = [(tf, tf) for tf in TIMEFRAMES]


class BarQuerySet(models.QuerySet["Bar"]):
    def for_series(self, instrument_id: int, timeframe: str) -> BarQuerySet:
        return self.filter(instrument_id=instrument_id, timeframe=timeframe)


class Bar(models.Model):
    """One OHLCV bar; (instrument, timeframe, time) is unique, so a bar exists once.

    `time` is the UTC open time of the bar. `final` is False while the bar's period is still open;
    a non-final bar may be replaced by a later write. Prices: see the module docstring.

    The surrogate `id` exists because the admin cannot show models with a composite primary key;
    every lookup goes through the unique (instrument, timeframe, time) index.
    """

    id = models.BigAutoField(primary_key=True)
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="bars", db_index=False)
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES)
    time = models.DateTimeField(help_text="Open time of the bar, UTC")
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField(default=0.0)
    trades = models.IntegerField(null=True, blank=True, help_text="Number of trades, where known")
    vwap = models.FloatField(null=True, blank=True, help_text="Volume-weighted average price, where known")
    final = models.BooleanField(default=True, help_text="False while the bar's period is still open")

    objects = BarQuerySet.as_manager()

    class Meta:
        # No default ordering: every bar query states its own, and an implicit ORDER BY is not free.
        constraints = [
            models.UniqueConstraint(fields=["instrument", "timeframe", "time"], name="bar_unique_series_time"),
            models.CheckConstraint(condition=Q(low__lte=F("high")), name="bar_low_le_high"),
            models.CheckConstraint(condition=Q(open__gte=F("low"), open__lte=F("high")), name="bar_open_within_range"),
            models.CheckConstraint(
                condition=Q(close__gte=F("low"), close__lte=F("high")), name="bar_close_within_range"
            ),
            models.CheckConstraint(condition=Q(low__gt=0), name="bar_prices_positive"),
            models.CheckConstraint(condition=Q(volume__gte=0), name="bar_volume_not_negative"),
            models.CheckConstraint(condition=Q(trades__isnull=True) | Q(trades__gte=0), name="bar_trades_not_negative"),
            models.CheckConstraint(condition=Q(timeframe__in=list(TIMEFRAMES)), name="bar_timeframe_known"),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.timeframe} {self.time:%Y-%m-%d %H:%M}"
