from django.contrib import admin

from market.models import Bar, Exchange, Instrument


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
