"""What the bar list's template shows besides the bars: the filter sidebar (as the admin's
filter.html takes it), the search and date-range forms, and the paging links.

Every link keeps the other filters and drops the cursor (`after`): a changed filter starts again at
the newest bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, QueryDict
from django.urls import reverse

from market.admin_bar_forms import FINAL_CHOICES, BarListForm
from market.admin_bar_queries import BarFilters, BarPrimaryKey, matching_instruments
from market.models import Bar, Exchange
from market.timeframes import TIMEFRAMES

# Instruments offered under "By instrument" once a symbol is searched: a short list to pick from.
INSTRUMENT_CHOICES = 20
FILTER_NAMES = ("q", "exchange", "instrument", "timeframe", "final", "since", "until")


def query(params: QueryDict, **changes: str | None) -> str:
    """The list's query string with `changes` applied (None removes a parameter), without `after`."""
    kept = {name: value for name, value in params.items() if name in FILTER_NAMES and value}
    for name, value in changes.items():
        if value is None:
            kept.pop(name, None)
        else:
            kept[name] = value
    return "?" + urlencode(sorted(kept.items()))


def kept_filters(params: QueryDict, *replaced: str) -> list[tuple[str, Any]]:
    """The filters set now, but those a form replaces: the hidden fields that keep them."""
    return [
        (name, value)
        for name, value in sorted(params.items())
        if name in FILTER_NAMES and name not in replaced and value
    ]


def choice(params: QueryDict, name: str, value: str, display: str) -> dict[str, Any]:
    return {
        "display": display,
        "query_string": query(params, **{name: value or None}),
        "selected": params.get(name, "") == value,
    }


def filter_specs(params: QueryDict) -> list[dict[str, Any]]:
    exchanges = [("", "All"), *((str(exchange.pk), exchange.code) for exchange in Exchange.objects.all())]
    timeframes = [("", "All"), *((name, name) for name in TIMEFRAMES)]
    specs = [
        ("exchange", "exchange", exchanges),
        ("timeframe", "timeframe", timeframes),
        ("final", "final", FINAL_CHOICES),
    ]
    return [
        {"title": title, "choices": [choice(params, name, value, display) for value, display in values]}
        for title, name, values in specs
    ]


def instrument_choices(params: QueryDict, form: BarListForm) -> list[dict[str, Any]]:
    """All, the chosen instrument, and the instruments whose symbol contains the search text."""
    cleaned = getattr(form, "cleaned_data", {})
    choices = [
        {"display": "All", "query_string": query(params, instrument=None), "selected": not params.get("instrument")}
    ]
    if chosen := cleaned.get("instrument"):
        choices.append({"display": str(chosen), "query_string": query(params), "selected": True})
    if symbol := cleaned.get("q"):
        exchange = cleaned.get("exchange")
        found = matching_instruments(BarFilters(exchange_id=exchange.pk if exchange else None, symbol=symbol))
        if chosen:
            found = found.exclude(pk=chosen.pk)
        for instrument in found.select_related("exchange")[:INSTRUMENT_CHOICES]:
            choices.append(
                {
                    "display": str(instrument),
                    "query_string": query(params, instrument=str(instrument.pk), q=None),
                    "selected": False,
                }
            )
    return choices


def list_context(request: HttpRequest, form: BarListForm, bars: Sequence[Bar], *, more: bool = False) -> dict[str, Any]:
    params = request.GET
    rows: list[dict[str, Any]] = []
    for bar in bars:
        key = BarPrimaryKey.of(bar)
        rows.append({"bar": bar, "key": key.text, "url": reverse("admin:market_bar_change", args=key.url_args)})
    next_url = query(params, after=rows[-1]["key"]) if more and rows else None
    return {
        "form": form,
        "rows": rows,
        "filter_specs": filter_specs(params),
        "instrument_choices": instrument_choices(params, form),
        "search_text": params.get("q", ""),
        "search_keeps": kept_filters(params, "q"),
        "range_keeps": kept_filters(params, "since", "until"),
        "since": params.get("since", ""),
        "until": params.get("until", ""),
        "has_active_filters": any(params.get(name) for name in FILTER_NAMES),
        "clear_all_url": "?",
        "newest_url": query(params) if params.get("after") else None,
        "next_url": next_url,
    }
