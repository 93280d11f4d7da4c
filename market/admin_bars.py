"""The admin's pages for bars: list, add, change and delete, inside the Django admin's site.

Django's admin refuses models with a composite primary key, and a bar's key is (instrument,
timeframe, time) (market.models.Bar), so these pages are not a ModelAdmin: the project's AdminSite
(cryptostock.admin_site) adds their URLs and the *Bars* entry of the index. They do what a
ModelAdmin would: the model permissions view/add/change/delete_bar decide (staff only, through
AdminSite.admin_view), every add, change and delete is logged as a LogEntry (object_id is the key
as text, BarPrimaryKey.text), and writes go through the services: `store_bars` (the bar store's
checks, cache invalidation, publishing) and `delete_bars`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.admin.utils import construct_change_message, unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from market.admin_bar_forms import BarListForm, BarValuesForm, NewBarForm, values_of
from market.admin_bar_list import list_context
from market.admin_bar_queries import BarPrimaryKey, find_bar, find_bars, newest_bars
from market.models import Bar
from market.services import delete_bars

PAGE_SIZE = 100
ACTIONS = ("view", "add", "change", "delete")


def may(request: HttpRequest, action: str) -> bool:
    return request.user.has_perm(f"market.{action}_bar")


def require(request: HttpRequest, *actions: str) -> None:
    """403 unless the user has one of these bar permissions (as ModelAdmin's has_*_permission)."""
    if not any(may(request, action) for action in actions):
        raise PermissionDenied


def describe(bar: Bar) -> str:
    return f"{bar.instrument} {bar.timeframe} {bar.time:%Y-%m-%d %H:%M:%S} UTC"


def change_url(key: BarPrimaryKey) -> str:
    return reverse("admin:market_bar_change", args=key.url_args)


def key_or_404(text: str) -> BarPrimaryKey:
    """The key from its text (`BarPrimaryKey.text`: instrument/timeframe/time, as the URLs have it
    too), or 404 naming what is wrong with it."""
    try:
        return BarPrimaryKey.from_text(text)
    except ValueError as error:
        raise Http404(f"No such bar: {error}") from None


def bar_or_404(key: BarPrimaryKey) -> Bar:
    bar = find_bar(key)
    if bar is None:
        raise Http404(f"No bar {key.text}")
    return bar


def log(request: HttpRequest, bars: Sequence[Bar], flag: int, message: list[dict[str, Any]] | None = None) -> None:
    """LogEntry rows as ModelAdmin writes them (log_addition, log_change, log_deletions)."""
    user_id = request.user.pk
    if user_id is None:  # admin_view lets staff in only: never
        raise PermissionDenied
    content_type = ContentType.objects.get_for_model(Bar)
    LogEntry.objects.bulk_create(
        LogEntry(
            user_id=user_id,
            content_type=content_type,
            object_id=BarPrimaryKey.of(bar).text,
            object_repr=describe(bar)[:200],
            action_flag=flag,
            change_message=json.dumps(message) if message else "",
        )
        for bar in bars
    )


def store_and_log(request: HttpRequest, form: BarValuesForm, key: BarPrimaryKey, flag: int) -> Bar | None:
    """Store the form's bar and log it; None (and the store's reason on the form) if refused."""
    if not form.store(key):
        return None
    bar = bar_or_404(key)
    log(request, [bar], flag, construct_change_message(form, [], add=flag == ADDITION))
    return bar


@dataclass
class BarAdminPages:
    site: AdminSite

    def urls(self) -> list[URLPattern]:
        key = "<int:instrument_id>/<str:timeframe>/<str:time>"
        view = self.site.admin_view
        return [
            path("market/bar/", view(self.changelist), name="market_bar_changelist"),
            path("market/bar/add/", view(self.add), name="market_bar_add"),
            path(f"market/bar/{key}/change/", view(self.change), name="market_bar_change"),
            path(f"market/bar/{key}/delete/", view(self.delete), name="market_bar_delete"),
            # LogEntry.get_admin_url() (the index's recent actions) reverses the change URL with one
            # argument, the quoted object_id: this second pattern of the same name takes it.
            path("market/bar/<str:object_id>/change/", view(self.change_by_object_id), name="market_bar_change"),
        ]

    def render(self, request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
        request.current_app = self.site.name
        permissions = {f"has_{action}_permission": may(request, action) for action in ACTIONS}
        base = {**self.site.each_context(request), "opts": Bar._meta, **permissions}
        return TemplateResponse(request, f"admin/market/bar/{template}", {**base, **context}, status=status)

    def changelist(self, request: HttpRequest) -> HttpResponse:
        require(request, "view", "change")
        if request.method == "POST":
            return self.run_action(request)
        form = BarListForm(request.GET)
        title = "Select bar to change" if may(request, "change") else "Select bar to view"
        if not form.is_valid():
            context = {"title": title, **list_context(request, form, [])}
            return self.render(request, "change_list.html", context, status=400)
        bars = newest_bars(form.filters(), after=form.cleaned_data["after"], limit=PAGE_SIZE + 1)
        context = list_context(request, form, bars[:PAGE_SIZE], more=len(bars) > PAGE_SIZE)
        return self.render(request, "change_list.html", {"title": title, **context})

    def run_action(self, request: HttpRequest) -> HttpResponse:
        """The list's one action, delete_selected: a confirmation page, then (with post=yes) the delete."""
        back = request.get_full_path()
        if request.POST.get("action") != "delete_selected":
            messages.warning(request, "No action selected.")
            return HttpResponseRedirect(back)
        require(request, "delete")
        bars = find_bars([key_or_404(text) for text in request.POST.getlist("_selected_action")])
        if not bars:
            messages.warning(request, "Items must be selected in order to perform actions on them.")
            return HttpResponseRedirect(back)
        if request.POST.get("post") != "yes":
            selected = [BarPrimaryKey.of(bar).text for bar in bars]
            context = {"title": "Delete bars", "bars": bars, "keys": selected}
            return self.render(request, "delete_confirmation.html", context)
        with transaction.atomic():
            log(request, bars, DELETION)
            deleted = delete_bars([BarPrimaryKey.of(bar) for bar in bars])
        messages.success(request, f"Successfully deleted {deleted} bar{'' if deleted == 1 else 's'}.")
        return HttpResponseRedirect(back)

    def add(self, request: HttpRequest) -> HttpResponse:
        require(request, "add")
        form = NewBarForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            key = form.key()
            with transaction.atomic():
                bar = store_and_log(request, form, key, ADDITION)
            if bar is not None:
                messages.success(request, f"The bar “{describe(bar)}” was added successfully.")
                return HttpResponseRedirect(change_url(key) if "_continue" in request.POST else self.list_url())
        return self.render(request, "change_form.html", {"title": "Add bar", "form": form, "add": True})

    def change(self, request: HttpRequest, instrument_id: int, timeframe: str, time: str) -> HttpResponse:
        require(request, "view", "change")
        if request.method == "POST":
            require(request, "change")
        key = key_or_404(f"{instrument_id}/{timeframe}/{time}")
        bar = bar_or_404(key)
        form = BarValuesForm(request.POST if request.method == "POST" else None, initial=values_of(bar))
        if request.method == "POST" and form.is_valid():
            with transaction.atomic():
                stored = store_and_log(request, form, key, CHANGE)
            if stored is not None:
                messages.success(request, f"The bar “{describe(bar)}” was changed successfully.")
                return HttpResponseRedirect(change_url(key) if "_continue" in request.POST else self.list_url())
        if not may(request, "change"):
            form.disable()
        title = "Change bar" if may(request, "change") else "View bar"
        context = {"title": title, "form": form, "bar": bar, "key": key, "delete_url": self.delete_url(key)}
        return self.render(request, "change_form.html", context)

    def change_by_object_id(self, request: HttpRequest, object_id: str) -> HttpResponse:
        require(request, "view", "change")
        return HttpResponseRedirect(change_url(key_or_404(unquote(object_id))))

    def delete(self, request: HttpRequest, instrument_id: int, timeframe: str, time: str) -> HttpResponse:
        require(request, "delete")
        key = key_or_404(f"{instrument_id}/{timeframe}/{time}")
        bar = bar_or_404(key)
        if request.method != "POST" or request.POST.get("post") != "yes":
            context = {"title": "Delete bar", "bars": [bar], "key": key, "single": True}
            return self.render(request, "delete_confirmation.html", context)
        with transaction.atomic():
            log(request, [bar], DELETION)
            delete_bars([key])
        messages.success(request, f"The bar “{describe(bar)}” was deleted successfully.")
        return HttpResponseRedirect(self.list_url())

    def list_url(self) -> str:
        return reverse("admin:market_bar_changelist", current_app=self.site.name)

    def delete_url(self, key: BarPrimaryKey) -> str:
        return reverse("admin:market_bar_delete", args=key.url_args, current_app=self.site.name)


def bars_entry(request: HttpRequest, site: AdminSite) -> dict[str, Any] | None:
    """The index's row for bars, shaped as AdminSite._build_app_dict shapes a model's; None without
    any bar permission."""
    perms = {action: may(request, action) for action in ACTIONS}
    if not any(perms.values()):
        return None
    entry: dict[str, Any] = {
        "model": Bar,
        "name": str(Bar._meta.verbose_name_plural).capitalize(),
        "object_name": Bar._meta.object_name,
        "perms": perms,
        "admin_url": None,
        "add_url": None,
    }
    if perms["view"] or perms["change"]:
        entry["view_only"] = not perms["change"]
        entry["admin_url"] = reverse("admin:market_bar_changelist", current_app=site.name)
    if perms["add"]:
        entry["add_url"] = reverse("admin:market_bar_add", current_app=site.name)
    return entry


def with_bars(app_list: list[dict[str, Any]], request: HttpRequest, site: AdminSite) -> list[dict[str, Any]]:
    """The app list with Bars under Market (which is added if the user sees nothing else of it)."""
    entry = bars_entry(request, site)
    if entry is None:
        return app_list
    market = next((app for app in app_list if app["app_label"] == "market"), None)
    if market is None:
        market = {
            "name": apps.get_app_config("market").verbose_name,
            "app_label": "market",
            "app_url": reverse("admin:app_list", kwargs={"app_label": "market"}, current_app=site.name),
            "has_module_perms": True,
            "models": [],
        }
        app_list = sorted([*app_list, market], key=lambda app: app["name"].lower())
    market["models"] = sorted([*market["models"], entry], key=lambda model: model["name"])
    return app_list
