"""Forms of the admin's bar pages: the list's filters, a bar's values, a new bar.

The value forms only parse input; whether a bar is valid is the bar store's call (market.barstore:
the same checks as every other writer), and its InvalidBars message becomes the form's error.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import ValidationError
from django.utils import timezone

from market.admin_bar_queries import BarFilters, BarPrimaryKey
from market.barstore import BarRow, InvalidBars
from market.models import TIMEFRAME_CHOICES, Bar, Exchange, Instrument
from market.services import store_bars

VALUE_FIELDS = ("open", "high", "low", "close", "volume", "trades", "vwap", "final")


def _help(name: str) -> str:
    return str(getattr(Bar._meta.get_field(name), "help_text", ""))


class BarValuesForm(forms.Form):
    """What may change of a stored bar: everything but its key."""

    open = forms.FloatField()
    high = forms.FloatField()
    low = forms.FloatField()
    close = forms.FloatField()
    volume = forms.FloatField(initial=0.0)
    trades = forms.IntegerField(required=False, help_text=_help("trades"))
    vwap = forms.FloatField(required=False, help_text=_help("vwap"))
    final = forms.BooleanField(required=False, initial=True, help_text=_help("final"))

    def row(self, key: BarPrimaryKey) -> BarRow:
        values = self.cleaned_data
        return BarRow(key.instrument_id, key.timeframe, key.time, *(values[name] for name in VALUE_FIELDS))

    def store(self, key: BarPrimaryKey) -> bool:
        """Store the bar through the bar store (which checks it, drops the cached API responses and
        publishes it once committed); False with the store's reason as the form's error if refused."""
        try:
            store_bars([self.row(key)])
        except InvalidBars as refused:
            self.add_error(None, str(refused))
            return False
        return True

    def disable(self) -> None:
        """For a user who may view bars but not change them."""
        for field in self.fields.values():
            field.disabled = True


def values_of(bar: Bar) -> dict[str, Any]:
    return {name: getattr(bar, name) for name in VALUE_FIELDS}


class NewBarForm(BarValuesForm):
    instrument = forms.ModelChoiceField(Instrument.objects.select_related("exchange"))
    timeframe = forms.ChoiceField(choices=TIMEFRAME_CHOICES)
    time = forms.SplitDateTimeField(widget=AdminSplitDateTime, label="Time (UTC)", help_text=_help("time"))

    field_order = ["instrument", "timeframe", "time", *VALUE_FIELDS]

    def clean_time(self) -> datetime:
        # The wall-clock time as typed is UTC whatever TIME_ZONE says: bars live in UTC.
        typed: datetime = self.cleaned_data["time"]
        return timezone.make_naive(typed).replace(tzinfo=UTC)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        if Bar.objects.filter(pk=tuple(self.key())).exists():
            raise ValidationError("A bar of this instrument, timeframe and time exists already: change that one.")
        return cleaned

    def key(self) -> BarPrimaryKey:
        values = self.cleaned_data
        return BarPrimaryKey(values["instrument"].pk, values["timeframe"], values["time"])


FINAL_CHOICES = [("", "All"), ("1", "Yes"), ("0", "No")]


class BarListForm(forms.Form):
    """The list's query string. Unknown exchanges, instruments, timeframes and malformed dates or
    cursors are errors shown on the page, not ignored."""

    q = forms.CharField(required=False, max_length=40, strip=True)
    exchange = forms.ModelChoiceField(Exchange.objects.all(), required=False)
    instrument = forms.ModelChoiceField(Instrument.objects.select_related("exchange"), required=False)
    timeframe = forms.ChoiceField(choices=[("", "All"), *TIMEFRAME_CHOICES], required=False)
    final = forms.TypedChoiceField(
        choices=FINAL_CHOICES, coerce=lambda value: value == "1", empty_value=None, required=False
    )
    since = forms.DateField(required=False, label="From (UTC date)")
    until = forms.DateField(required=False, label="To (UTC date, inclusive)")
    after = forms.CharField(required=False)

    def clean_after(self) -> BarPrimaryKey | None:
        text = self.cleaned_data["after"]
        if not text:
            return None
        try:
            return BarPrimaryKey.from_text(text)
        except ValueError as error:
            raise ValidationError(f"Not a page cursor: {error}") from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            raise ValidationError("The first day is after the last one.")
        return cleaned

    def filters(self) -> BarFilters:
        values = self.cleaned_data
        since, until = values["since"], values["until"]
        return BarFilters(
            exchange_id=values["exchange"].pk if values["exchange"] else None,
            instrument_id=values["instrument"].pk if values["instrument"] else None,
            symbol=values["q"],
            timeframe=values["timeframe"] or None,
            final=values["final"],
            since=datetime.combine(since, time(), UTC) if since else None,
            until=datetime.combine(until, time(), UTC) + timedelta(days=1) if until else None,
        )
