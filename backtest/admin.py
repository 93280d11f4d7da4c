from django.contrib import admin
from django.http import HttpRequest

from backtest.models import Backtest


@admin.register(Backtest)
class BacktestAdmin(admin.ModelAdmin[Backtest]):
    """Backtests of every user: find failed ones, compare results. Runs are created through the API or
    `manage.py backtest --user`; here they are read, and deleted (their result goes with them)."""

    list_display = [
        "id",
        "owner",
        "instrument",
        "timeframe",
        "strategy",
        "status",
        "total_return",
        "trades",
        "bars_used",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "strategy", "timeframe"]
    search_fields = ["owner__username", "instrument__symbol", "error"]
    date_hierarchy = "created_at"
    list_select_related = ["owner", "instrument__exchange"]
    raw_id_fields = ["owner", "instrument"]
    readonly_fields = [
        "status",
        "error",
        "metrics",
        "bars_used",
        "first_bar_time",
        "last_bar_time",
        "created_at",
        "started_at",
        "finished_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a backtest row without its run would stay pending forever

    @admin.display(description="Total return")
    def total_return(self, backtest: Backtest) -> str:
        value = (backtest.metrics or {}).get("total_return")
        return "" if value is None else f"{value:.2%}"

    @admin.display(description="Trades")
    def trades(self, backtest: Backtest) -> str:
        value = (backtest.metrics or {}).get("trades")
        return "" if value is None else str(value)
