from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from alerts.models import AlertFiring, AlertRule, Delivery, Notification


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin[AlertRule]):
    list_display = ["__str__", "owner", "instrument", "timeframe", "condition", "frequency", "active", "fire_count"]
    list_filter = ["active", "condition", "frequency", "timeframe"]
    search_fields = ["name", "owner__username", "instrument__symbol"]
    list_select_related = ["owner", "instrument__exchange"]
    raw_id_fields = ["owner", "instrument"]
    readonly_fields = ["webhook_secret", "last_fired_at", "last_fired_bar_time", "fire_count", "created_at"]


class DeliveryInline(admin.TabularInline[Delivery, AlertFiring]):
    model = Delivery
    extra = 0
    can_delete = False
    fields = readonly_fields = ("channel", "status", "attempts", "response_code", "last_error", "sent_at", "updated_at")


@admin.register(AlertFiring)
class AlertFiringAdmin(admin.ModelAdmin[AlertFiring]):
    list_display = ["rule", "bar_time", "fired_at", "intrabar", "value", "close", "delivery_status"]
    list_filter = ["intrabar", "rule__condition"]
    search_fields = ["rule__name", "rule__owner__username", "rule__instrument__symbol", "message"]
    date_hierarchy = "fired_at"
    list_select_related = ["rule"]
    raw_id_fields = ["rule"]
    inlines = [DeliveryInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertFiring]:
        return super().get_queryset(request).prefetch_related("deliveries")

    @admin.display(description="Deliveries")
    def delivery_status(self, firing: AlertFiring) -> str:
        """Each channel's status at a glance, e.g. "in_app sent, webhook failed (3 attempts)"."""
        return ", ".join(
            f"{d.channel} {d.status}" + (f" ({d.attempts} attempts)" if d.attempts > 1 else "")
            for d in firing.deliveries.all()
        )


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin[Delivery]):
    """Where failed deliveries are found: filter by status and channel."""

    list_display = ["firing", "channel", "status", "attempts", "response_code", "last_error", "updated_at"]
    list_filter = ["status", "channel"]
    list_select_related = ["firing__rule"]
    raw_id_fields = ["firing"]


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin[Notification]):
    list_display = ["user", "message", "created_at", "read_at"]
    list_filter = ["read_at"]
    search_fields = ["user__username", "message"]
    raw_id_fields = ["user", "firing"]
