"""The product has one indicator engine, TA-Lib (docs/indicators.md, "Modes"): it does not start
without it, and never lets pandas-ta fall back to its pure-pandas values."""

from __future__ import annotations

import numpy as np
import pandas_ta
import pytest
import talib

from indicators import checks as indicator_checks
from indicators.catalogue import IndicatorSpec, default_specs
from indicators.compute import EngineMissing, compute


def test_the_system_check_finds_talib():
    assert indicator_checks.check_talib_is_installed() == []


def test_without_talib_the_system_check_reports_an_error(monkeypatch):
    # Given an environment where TA-Lib cannot be found
    monkeypatch.setattr(indicator_checks, "find_spec", lambda name: None)
    # Then the start-up check fails, naming it
    errors = indicator_checks.check_talib_is_installed()
    assert [error.id for error in errors] == ["indicators.E001"]
    assert "TA-Lib" in errors[0].msg


def test_cci_goes_through_pandas_ta_and_equals_talib(btc_1m):
    cci = compute(IndicatorSpec.build("cci", {"length": 20}), btc_1m)["cci"]
    reference = talib.CCI(btc_1m.high, btc_1m.low, btc_1m.close, 20)
    np.testing.assert_array_equal(np.isnan(cci), np.isnan(reference))
    np.testing.assert_allclose(cci, reference, rtol=1e-9, equal_nan=True)


def test_when_pandas_ta_does_not_see_talib_cci_is_refused_not_computed_its_own_way(monkeypatch, btc_1m):
    # Given pandas-ta believing TA-Lib is absent (its pure mode would misplace CCI's bracket)
    monkeypatch.setitem(pandas_ta.Imports, "talib", False)
    # Then CCI is refused with a clear error rather than computed in pandas-ta's pure mode
    with pytest.raises(EngineMissing, match="TA-Lib"):
        compute(IndicatorSpec.build("cci"), btc_1m)


def test_cci_on_fewer_bars_than_its_length_has_no_value_yet(btc_1m):
    assert np.isnan(compute(IndicatorSpec.build("cci", {"length": 20}), btc_1m.slice(0, 10))["cci"]).all()


def test_every_output_is_a_writable_array_of_its_own(btc_1m):
    for spec in default_specs():
        for name, values in compute(spec, btc_1m.slice(0, 500)).items():
            assert values.flags.writeable, f"{spec.key}.{name}"
            assert values.flags.owndata, f"{spec.key}.{name}"
