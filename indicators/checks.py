"""System check: the indicators have one engine, TA-Lib, and the product does not run without it.

pandas-ta decides whether it may use TA-Lib by `find_spec("talib")` when it is imported; without
TA-Lib it silently falls back to its pure-pandas mode, whose values are not the conventional ones
(docs/indicators.md). So a missing or broken TA-Lib is reported at start-up rather than served.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from typing import Any

from django.core import checks


@checks.register()
def check_talib_is_installed(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if find_spec("talib") is None:
        return [checks.Error("TA-Lib is not installed", hint="pip install TA-Lib (the wheel ships its C library)",
                             id="indicators.E001")]  # fmt: skip
    try:
        import_module("talib")
    except ImportError as error:
        return [checks.Error(f"TA-Lib does not load: {error}", id="indicators.E002")]
    return []
