"""Alert message templates: `{{placeholder}}` text, validated when a rule is saved. Pure: no Django.

Only the placeholders in PLACEHOLDERS exist; anything else between double braces, or a stray `{{`
or `}}`, is an error rather than text sent verbatim, so a typo shows up when the rule is saved and
not when the alert fires.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

PLACEHOLDERS: dict[str, str] = {
    "ticker": "the instrument's symbol, e.g. BTC/USDT",
    "exchange": "the exchange code, e.g. binance",
    "timeframe": "the bar length, e.g. 1m",
    "close": "the close (last price) of the bar",
    "volume": "the bar's volume",
    "time": "the bar's open time, UTC, ISO 8601",
    "value": "the rule's source value (the indicator, the price, or the move in percent)",
}
DEFAULT_TEMPLATE = "{{ticker}} ({{exchange}}, {{timeframe}}): {rule} at {{time}}; close {{close}}, value {{value}}"
EVENT_TEMPLATE = "{{ticker}} ({{exchange}}, {{timeframe}}): {rule} at {{time}}"
MAX_LENGTH = 2000

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def template_errors(template: str) -> list[str]:
    """Every problem with a template (empty: valid)."""
    errors = []
    if len(template) > MAX_LENGTH:
        errors.append(f"at most {MAX_LENGTH} characters")
    unknown = sorted({name for name in _PLACEHOLDER.findall(template) if name not in PLACEHOLDERS})
    if unknown:
        names = ", ".join("{{" + name + "}}" for name in unknown)
        known = ", ".join("{{" + name + "}}" for name in PLACEHOLDERS)
        errors.append(f"unknown placeholder {names}; use {known}")
    rest = _PLACEHOLDER.sub("", template)
    if "{{" in rest or "}}" in rest:
        errors.append("unbalanced {{ or }}: write placeholders as {{name}}")
    return errors


def default_template(rule_description: str, *, event: bool = False) -> str:
    """The message of a rule without one; for event rules (no bar of their own: no close) the
    rule and the time only, followed by what was found."""
    # The description is fixed text; braces in it must not look like placeholders.
    safe = rule_description.replace("{", "(").replace("}", ")")
    return (EVENT_TEMPLATE if event else DEFAULT_TEMPLATE).replace("{rule}", safe)


def format_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def render_message(template: str, context: Mapping[str, object]) -> str:
    """The template with each placeholder replaced; the template is assumed valid."""
    return _PLACEHOLDER.sub(lambda match: format_value(context.get(match.group(1))), template)
