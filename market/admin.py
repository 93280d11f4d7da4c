from django.contrib import admin
from django.http import HttpRequest

from market.models import (
    BackfillJob,
    Bar,
    CollectorStatus,
    Exchange,
    Instrument,
    PendingRollup,
    QualityFinding,
    QualityReport,
)


@admin.register(Exchange)
class ExchangeAdmin(admin.ModelAdmin[Exchange]):
    list_display = ["code", "name", "asset_classes", "timezone", "active"]
    list_filter = ["active"]
    search_fields = ["code", "name"]


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin[Instrument]):
    list_display = ["symbol", "exchange", "asset_class", "base", "quote", "active", "updated_at"]
    list_filter = ["active", "asset_class", "exchange"]
    search_fields = ["symbol", "name", "base", "quote"]
    list_editable = ["active"]
    list_select_related = ["exchange"]


@admin.register(Bar)
class BarAdmin(admin.ModelAdmin[Bar]):
    list_display = ["instrument", "timeframe", "time", "open", "high", "low", "close", "volume", "trades", "final"]
    list_filter = ["timeframe", "final", "instrument__exchange"]
    search_fields = ["instrument__symbol"]
    date_hierarchy = "time"
    list_select_related = ["instrument__exchange"]
    # Bar tables hold millions of rows: an exact COUNT(*) per page view would be the slowest query.
    show_full_result_count = False


@admin.register(CollectorStatus)
class CollectorStatusAdmin(admin.ModelAdmin[CollectorStatus]):
    """Read-only: collectors write their own status; deleting a row retires a collector for /ready."""

    list_display = [
        "name",
        "state",
        "breaker_state",
        "last_message_at",
        "messages_per_second",
        "reconnects",
        "rejected",
        "buffered_bars",
        "symbols",
        "updated_at",
    ]
    list_filter = ["state", "source"]
    search_fields = ["name", "source", "host"]
    readonly_fields = [field.name for field in CollectorStatus._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CollectorStatus | None = None) -> bool:
        return False


# --- Scheduled work: backfill jobs, roll-up backlog, data quality (docs/scheduled.md) ---


@admin.register(BackfillJob)
class BackfillJobAdmin(admin.ModelAdmin[BackfillJob]):
    """Read-only: jobs are started by `manage.py backfill` or the gap-fill task, and checkpoint themselves."""

    list_display = ["__str__", "status", "gap_fill", "cursor", "pages", "bars", "updated_at", "finished_at"]
    list_filter = ["status", "source", "timeframe", "gap_fill"]
    search_fields = ["instrument__symbol"]
    list_select_related = ["instrument"]
    readonly_fields = [field.name for field in BackfillJob._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: BackfillJob | None = None) -> bool:
        return False


@admin.register(PendingRollup)
class PendingRollupAdmin(admin.ModelAdmin[PendingRollup]):
    """The roll-up's backlog: empty most of the time; rows pile up only if the roll-up task is not running."""

    list_display = ["instrument_id", "first_time", "last_time"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: PendingRollup | None = None) -> bool:
        return False


class QualityFindingInline(admin.TabularInline[QualityFinding, QualityReport]):
    model = QualityFinding
    fields = ["kind", "time", "count", "penalty", "detail"]
    readonly_fields = ["kind", "time", "count", "penalty", "detail"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: QualityReport | None = None) -> bool:
        return False


@admin.register(QualityReport)
class QualityReportAdmin(admin.ModelAdmin[QualityReport]):
    list_display = ["instrument", "timeframe", "day", "score", "bars", "expected_bars", "updated_at"]
    list_filter = ["timeframe", "day", "instrument__exchange"]
    search_fields = ["instrument__symbol"]
    list_select_related = ["instrument__exchange"]
    date_hierarchy = "day"
    ordering = ["score", "-day"]
    readonly_fields = ["instrument", "timeframe", "day", "score", "bars", "expected_bars", "updated_at"]
    inlines = [QualityFindingInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
