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

from datetime import datetime, timedelta

from django.conf import settings
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

    The primary key is the bar's identity, (instrument, timeframe, time): no surrogate id. On
    plain PostgreSQL the table is partitioned by timeframe and the key's index holds the columns
    in the order (instrument, time, timeframe) (migration 0012, docs/barstore.md). A bar
    table is written far more than anything else, and an identity column with its own index cost a
    third of every insert (docs/barstore.md). Django's admin refuses composite primary keys, so bars
    have their own admin pages (market/admin_bars.py).
    """

    pk = models.CompositePrimaryKey("instrument_id", "timeframe", "time")
    # No database-level foreign key: PostgreSQL checks one per inserted row at commit, which halves
    # the bar store's write rate (measured: 1M rows 4.1 s without, 8.7 s with). The bar store refuses
    # bars of unknown instruments before writing, and deleting an instrument still deletes its bars
    # (Django's CASCADE issues the DELETE). db_index=False: the primary key (instrument, timeframe,
    # time) serves every lookup by instrument.
    instrument = models.ForeignKey(
        Instrument, on_delete=models.CASCADE, related_name="bars", db_index=False, db_constraint=False
    )
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


# --- Scheduled work: roll-up backlog, backfill checkpoints, quality reports (docs/scheduled.md) ---


class PendingRollup(models.Model):
    """A span of 1m bars written since the last roll-up: the roll-up's to-do list.

    Rows are added by database triggers on the bar table (migration 0004), so every writer (the
    collector, imports, backfills, the admin, raw SQL) is covered without having to remember it;
    the bar store adds them itself where it writes past the triggers (big appends, and on plain
    PostgreSQL its writes into a timeframe's partition: docs/barstore.md). `market.rollup` claims
    and deletes them. No foreign key: the triggers sit on the bar write path
    and must stay cheap, and a row for a deleted instrument simply rolls up nothing.
    """

    id = models.BigAutoField(primary_key=True)
    instrument_id = models.BigIntegerField()
    first_time = models.DateTimeField()
    last_time = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.first_time:%Y-%m-%d %H:%M}..{self.last_time:%H:%M}"


class HistorySource(models.TextChoices):
    BINANCE = "binance", "Binance (ccxt)"
    BINANCE_FUTURES = "binance-futures", "Binance USDⓈ-M futures (fapi)"
    ALPACA = "alpaca", "Alpaca (alpaca-py)"
    YAHOO = "yahoo", "Yahoo Finance (yfinance)"


class BackfillStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class BackfillJob(models.Model):
    """One backfill of [start, end) of a series from a history source, with its checkpoint.

    Everything before `cursor` is stored; `page_token` is the source's own cursor for the next page,
    where it has one. Each page's bars and the checkpoint are written in one transaction, so an
    interrupted job resumes exactly after the last stored page.
    """

    source = models.CharField(max_length=16, choices=HistorySource.choices)
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="backfill_jobs")
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES)
    start = models.DateTimeField(help_text="First bar time wanted (inclusive)")
    end = models.DateTimeField(help_text="Bars before this time (exclusive)")
    gap_fill = models.BooleanField(default=False, help_text="Started to fill a gap after a collector restart")
    cursor = models.DateTimeField(help_text="Everything before this is stored")
    page_token = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=BackfillStatus.choices, default=BackfillStatus.PENDING)
    pages = models.PositiveIntegerField(default=0)
    bars = models.PositiveBigIntegerField(default=0, help_text="Bars received from the source")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "instrument", "timeframe", "start", "end"], name="backfill_unique_span"
            ),
            models.CheckConstraint(condition=Q(start__lt=F("end")), name="backfill_start_before_end"),
            models.CheckConstraint(
                condition=Q(cursor__gte=F("start"), cursor__lte=F("end")), name="backfill_cursor_within_span"
            ),
        ]

    def __str__(self) -> str:
        span = f"{self.start:%Y-%m-%d %H:%M}..{self.end:%Y-%m-%d %H:%M}"
        return f"{self.source} {self.instrument_id} {self.timeframe} {span}"


class FindingKind(models.TextChoices):
    GAP = "gap", "Missing bars while the market was open"
    DUPLICATE = "duplicate", "Duplicate bar time"
    OHLC = "ohlc", "OHLC invariant violated"
    NON_POSITIVE_PRICE = "non_positive_price", "Price zero or negative"
    NEGATIVE_VOLUME = "negative_volume", "Negative volume"
    RETURN_OUTLIER = "return_outlier", "Return outlier (robust z-score)"
    VOLUME_OUTLIER = "volume_outlier", "Volume outlier (robust z-score)"
    STALE = "stale", "Stale feed"
    SOURCE_DISAGREEMENT = "source_disagreement", "Disagrees with another source"


class QualityReport(models.Model):
    """The data-quality score (0..100) of one instrument, timeframe and day, with its findings.

    The day is the UTC date for 24/7 markets and the session date for exchange-traded ones.
    """

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="quality_reports")
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES)
    day = models.DateField()
    score = models.PositiveSmallIntegerField()
    bars = models.PositiveIntegerField(help_text="Bars found")
    expected_bars = models.PositiveIntegerField(help_text="Bars expected while the market was open")
    updated_at = models.DateTimeField(help_text="When the score or findings last changed")

    class Meta:
        ordering = ["-day", "instrument_id", "timeframe"]
        constraints = [
            models.UniqueConstraint(fields=["instrument", "timeframe", "day"], name="quality_unique_series_day"),
            models.CheckConstraint(condition=Q(score__lte=100), name="quality_score_at_most_100"),
        ]
        indexes = [models.Index(fields=["day", "score"], name="quality_day_score_idx")]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.timeframe} {self.day}: {self.score}"


class QualityFinding(models.Model):
    report = models.ForeignKey(QualityReport, on_delete=models.CASCADE, related_name="findings")
    kind = models.CharField(max_length=24, choices=FindingKind.choices)
    time = models.DateTimeField(null=True, blank=True, help_text="First bar concerned, if any")
    count = models.PositiveIntegerField(default=1, help_text="Bars concerned")
    penalty = models.FloatField(help_text="Points taken off the score")
    detail = models.CharField(max_length=300)

    class Meta:
        ordering = ["report_id", "time", "kind"]

    def __str__(self) -> str:
        return f"{self.kind} {self.detail}"


# --- Collectors: the health of each running `collect` process (docs/collectors.md) ---


class CollectorState(models.TextChoices):
    STARTING = "starting", "Starting"
    CONNECTING = "connecting", "Connecting"
    STREAMING = "streaming", "Streaming"
    BACKOFF = "backoff", "Waiting to reconnect"
    BREAKER_OPEN = "breaker-open", "Circuit open"
    IDLE = "idle", "Idle (market closed or no instruments)"
    STOPPED = "stopped", "Stopped"


class CollectorStatusQuerySet(models.QuerySet["CollectorStatus"]):
    def stale(self, now: datetime, max_age_seconds: float) -> CollectorStatusQuerySet:
        """Collectors that should be running but have not reported for `max_age_seconds`
        (`CollectorStatus.is_stale` in SQL)."""
        return self.exclude(state=CollectorState.STOPPED).filter(updated_at__lt=stale_before(now, max_age_seconds))


def stale_before(now: datetime, max_age_seconds: float) -> datetime:
    """A running collector whose last report is older than this is stale."""
    return now - timedelta(seconds=max_age_seconds)


class CollectorStatus(models.Model):
    """One collector process's health, written by the collector every few seconds (one row per
    collector name). A row whose `updated_at` is old while its state is not `stopped` belongs to a
    collector that died without saying so: /ready reports it until it reports again or the row is
    deleted (a collector that was retired on purpose)."""

    name = models.SlugField(max_length=64, unique=True, help_text="binance, or binance-1of4 for a symbol shard")
    source = models.CharField(max_length=32)
    state = models.CharField(max_length=16, choices=CollectorState.choices, default=CollectorState.STARTING)
    breaker_state = models.CharField(max_length=10, default="closed", help_text="closed, open or half-open")
    last_message_at = models.DateTimeField(null=True, blank=True, help_text="Last message from the source")
    messages_per_second = models.FloatField(default=0.0, help_text="Since the previous report")
    messages = models.BigIntegerField(default=0, help_text="Messages received from the source")
    trades = models.BigIntegerField(default=0)
    bars_stored = models.BigIntegerField(default=0, help_text="Final bars written")
    buffered_bars = models.IntegerField(default=0, help_text="Final bars waiting for the database")
    reconnects = models.IntegerField(default=0)
    rejected = models.BigIntegerField(default=0, help_text="Messages and trades refused, all reasons")
    rejected_reasons = models.JSONField(default=dict, blank=True, help_text="Refused, by reason")
    counters = models.JSONField(default=dict, blank=True, help_text="Corrections, reconciliation, gaps, ...")
    symbols = models.IntegerField(default=0, help_text="Instruments being collected")
    last_error = models.CharField(max_length=500, blank=True)
    host = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    objects = CollectorStatusQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "collector statuses"
        constraints = [
            models.CheckConstraint(condition=Q(messages__gte=0, rejected__gte=0), name="collector_counts_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.name}: {self.state}"

    def is_stale(self, now: datetime, max_age_seconds: float) -> bool:
        """Should be running (not stopped) but has not reported for `max_age_seconds`: what /ready
        and /api/v1/collectors/ call stale (`CollectorStatusQuerySet.stale` in Python)."""
        return self.state != CollectorState.STOPPED and self.updated_at < stale_before(now, max_age_seconds)


# --- Watchlists: the instruments each user follows on the overview page ---


class WatchlistEntry(models.Model):
    """One instrument on one user's watchlist, at a position the user chose (0 first)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watchlist_entries")
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="watchlist_entries")
    position = models.PositiveIntegerField(default=0)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user_id", "position", "id"]
        verbose_name_plural = "watchlist entries"
        constraints = [
            models.UniqueConstraint(fields=["user", "instrument"], name="watchlist_instrument_once_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.instrument_id} at {self.position}"


# --- Arbitrage: price differences of one asset pair across venues (docs/arbitrage.md) ---


class ArbitrageOpportunityQuerySet(models.QuerySet["ArbitrageOpportunity"]):
    def open(self) -> ArbitrageOpportunityQuerySet:
        return self.filter(closed_at__isnull=True)


class ArbitrageOpportunity(models.Model):
    """One asset pair's cross-venue opportunity, from the detection that first found its best net
    spread above the threshold (`opened_at`) to the first that no longer did (`closed_at`, null while
    open). At most one open row per pair (base, quote).

    The pair's best venues may change while it stays open (another venue becomes the cheapest): the
    `buy_*`/`sell_*` fields are those of the latest detection, the `*_at_max` ones those of the
    largest net spread seen. `quote` is the canonical quote currency (docs/arbitrage.md, quote
    equivalence). Spreads are in basis points, floats like every price (see the module docstring).
    """

    base = models.CharField(max_length=20)
    quote = models.CharField(max_length=20)
    symbol = models.CharField(max_length=41, help_text="BASE/QUOTE, for lookups")
    buy_instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="+")
    sell_instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="+")
    buy_price = models.FloatField(help_text="Latest price paid on the buy venue")
    sell_price = models.FloatField(help_text="Latest price received on the sell venue")
    first_net_bps = models.FloatField()
    last_net_bps = models.FloatField()
    last_gross_bps = models.FloatField()
    max_net_bps = models.FloatField()
    max_gross_bps = models.FloatField(help_text="Gross spread at the largest net spread")
    max_buy_instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="+")
    max_sell_instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="+")
    buy_price_at_max = models.FloatField()
    sell_price_at_max = models.FloatField()
    max_at = models.DateTimeField(help_text="When the largest net spread was observed")
    opened_at = models.DateTimeField(help_text="Observation time of the detection that found it")
    last_seen_at = models.DateTimeField(help_text="Observation time of the latest detection that found it")
    closed_at = models.DateTimeField(null=True, blank=True, help_text="Detection time that no longer found it")
    updates = models.PositiveIntegerField(default=0, help_text="New observations after the first")

    objects = ArbitrageOpportunityQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        verbose_name_plural = "arbitrage opportunities"
        constraints = [
            models.UniqueConstraint(
                fields=["base", "quote"], condition=Q(closed_at__isnull=True), name="arbitrage_one_open_per_pair"
            ),
            models.CheckConstraint(
                condition=Q(closed_at__isnull=True) | Q(closed_at__gte=F("opened_at")),
                name="arbitrage_closed_after_opened",
            ),
            models.CheckConstraint(
                condition=Q(max_net_bps__gte=F("first_net_bps")) & Q(max_net_bps__gte=F("last_net_bps")),
                name="arbitrage_max_is_max",
            ),
            models.CheckConstraint(
                condition=Q(buy_price__gt=0, sell_price__gt=0, buy_price_at_max__gt=0, sell_price_at_max__gt=0),
                name="arbitrage_prices_positive",
            ),
        ]
        indexes = [
            models.Index(fields=["symbol", "-opened_at"], name="arbitrage_symbol_opened_idx"),
            models.Index(fields=["-last_seen_at"], name="arbitrage_last_seen_idx"),
        ]

    def __str__(self) -> str:
        state = "open" if self.closed_at is None else "closed"
        return f"{self.symbol} {self.max_net_bps:.1f} bps ({state})"
