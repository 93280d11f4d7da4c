from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from market.models import (
    ArbitrageOpportunity,
    BackfillJob,
    CollectorStatus,
    Exchange,
    Instrument,
    PendingRollup,
    QualityFinding,
    QualityReport,
)
from market.services import bars_changed


class ChangesBars:
    """Admin pages whose saves and deletes change stored bars (a bar edited, an instrument deleted
    with its bars): the cached API responses of those instruments are dropped once the change commits.
    `instrument_ids` names the instruments of the objects touched."""

    def instrument_ids(self, objects: Iterable[Any]) -> list[int]:
        raise NotImplementedError

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm[Any], change: bool) -> None:
        # As stored before the edit too: a bar moved to another instrument leaves the first one.
        before = self.instrument_ids(type(obj)._default_manager.filter(pk=obj.pk)) if change else []
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        bars_changed([*before, *self.instrument_ids([obj])])

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        changed = self.instrument_ids([obj])
        super().delete_model(request, obj)  # type: ignore[misc]
        bars_changed(changed)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        changed = self.instrument_ids(queryset)
        super().delete_queryset(request, queryset)  # type: ignore[misc]
        bars_changed(changed)


@admin.register(Exchange)
class ExchangeAdmin(admin.ModelAdmin[Exchange]):
    list_display = ["code", "name", "asset_classes", "timezone", "active"]
    list_filter = ["active"]
    search_fields = ["code", "name"]


@admin.register(Instrument)
class InstrumentAdmin(ChangesBars, admin.ModelAdmin[Instrument]):
    list_display = ["symbol", "exchange", "asset_class", "base", "quote", "active", "updated_at"]
    list_filter = ["active", "asset_class", "exchange"]
    search_fields = ["symbol", "name", "base", "quote"]
    list_editable = ["active"]
    list_select_related = ["exchange"]

    def instrument_ids(self, objects: Iterable[Instrument]) -> list[int]:
        return [instrument.pk for instrument in objects]


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


# --- Arbitrage (docs/arbitrage.md) ---


class OpenOpportunityFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "open"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("1", "Open"), ("0", "Closed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("0", "1"):
            return queryset.filter(closed_at__isnull=self.value() == "1")
        return queryset


@admin.register(ArbitrageOpportunity)
class ArbitrageOpportunityAdmin(admin.ModelAdmin[ArbitrageOpportunity]):
    """Read-only: the detection task opens, updates and closes them (market.arbitrage_services)."""

    list_display = [
        "symbol",
        "buy_instrument",
        "sell_instrument",
        "last_net_bps",
        "max_net_bps",
        "opened_at",
        "last_seen_at",
        "closed_at",
        "updates",
    ]
    list_filter = [
        OpenOpportunityFilter,
        "quote",
        ("buy_instrument__exchange", admin.RelatedOnlyFieldListFilter),
        ("sell_instrument__exchange", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["symbol", "base"]
    list_select_related = ["buy_instrument__exchange", "sell_instrument__exchange"]
    date_hierarchy = "opened_at"
    readonly_fields = [field.name for field in ArbitrageOpportunity._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ArbitrageOpportunity | None = None) -> bool:
        return False
