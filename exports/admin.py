from django.contrib import admin

from exports.models import Export


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin[Export]):
    list_display = [
        "id",
        "owner",
        "instrument",
        "timeframe",
        "format",
        "status",
        "rows",
        "bytes",
        "created_at",
        "expires_at",
    ]
    list_filter = ["status", "format", "timeframe"]
    search_fields = ["owner__username", "instrument__symbol", "error"]
    date_hierarchy = "created_at"
    list_select_related = ["owner", "instrument__exchange"]
    raw_id_fields = ["owner", "instrument"]
    readonly_fields = ["status", "rows", "bytes", "error", "file", "created_at", "started_at", "finished_at"]
