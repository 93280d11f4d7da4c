"""Rule parameters, message templates and webhook signatures: pure checks, no database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.messages import render_message, template_errors
from alerts.rules import Condition, Operand, RuleSpec, describe, rule_errors
from alerts.signing import signature, signature_headers, verify_signature


def test_a_comparison_needs_a_level_or_a_target_but_not_both():
    assert rule_errors("crossing_up", level=10) == {}
    assert rule_errors("crossing_up", source={"indicator": "ema", "length": 20}, target={"indicator": "ema"}) == {}
    assert "level" in rule_errors("crossing_up")
    assert rule_errors("crossing_up", level=1, target={"indicator": "sma"}) == {
        "level": "give either a level or a target indicator, not both"
    }


@pytest.mark.parametrize(
    ("condition", "params", "field"),
    [
        ("entering_channel", {"level": 2.0, "upper": 1.0}, "upper"),
        ("exiting_channel", {"level": 2.0}, "upper"),
        ("exiting_channel", {"upper": 2.0}, "level"),
        ("moving_up_percent", {"percent": 0, "bars": 3}, "percent"),
        ("moving_down_percent", {"percent": 100, "bars": 3}, "percent"),
        ("moving_up_percent", {"percent": 2}, "bars"),
        ("volume_spike", {"bars": 20}, "multiplier"),
        ("volume_spike", {"multiplier": 3, "bars": 20, "source": {"indicator": "rsi"}}, "source"),
        ("collector_down", {}, "bars"),
        ("greater_than", {"level": 1, "percent": 3}, "percent"),
        ("nonsense", {}, "condition"),
    ],
)
def test_it_names_the_field_of_each_bad_parameter(condition, params, field):
    assert field in rule_errors(condition, **params)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"indicator": "bogus"}, "unknown indicator 'bogus'"),
        ({"indicator": "rsi", "length": 1}, "rsi length: must be between 2 and 100000"),
        ({"indicator": "rsi", "period": 14}, "rsi period: rsi has no parameter 'period'"),
        ({"indicator": "macd", "output": "nope"}, "macd has no output 'nope'"),
        ({"indicator": "close", "length": 3}, "close takes no parameters"),
        ({"indicator": "obv"}, "obv cannot be used in alerts"),
        ({"indicator": "ema", "length": 5000}, "needs more than 5000 bars"),
    ],
)
def test_operands_are_checked_against_the_indicators_catalogue(raw, message):
    with pytest.raises(ValueError, match=message):
        Operand.parse(raw)


def test_operands_fill_in_defaults_and_describe_themselves():
    signal = Operand.parse({"indicator": "macd", "output": "signal"})
    assert signal.as_dict() == {
        "indicator": "macd",
        "output": "signal",
        "fast": 12,
        "slow": 26,
        "signal": 9,
        "source": "close",
    }
    spec = RuleSpec(1, 1, "1m", Condition.CROSSING_UP, source=Operand.parse({"indicator": "macd"}), target=signal)
    assert describe(spec) == "MACD(12, 26, 9) crossing up MACD(12, 26, 9).signal"
    spike = RuleSpec(2, 1, "1m", Condition.VOLUME_SPIKE, multiplier=3, bars=20)
    assert describe(spike) == "volume above 3x its 20-bar average"


def test_templates_accept_the_documented_placeholders_only():
    assert template_errors("{{ticker}} on {{exchange}} {{timeframe}}: {{close}} {{volume}} {{time}} {{ value }}") == []
    assert template_errors("{{price}} is up") == [
        "unknown placeholder {{price}}; use {{ticker}}, {{exchange}}, {{timeframe}}, {{close}}, {{volume}}, "
        "{{time}}, {{value}}"
    ]
    assert template_errors("{{ticker} is up") == ["unbalanced {{ or }}: write placeholders as {{name}}"]


def test_rendering_fills_every_placeholder():
    text = render_message(
        "{{ticker}}@{{exchange}} {{timeframe}} close {{close}} vol {{volume}} at {{time}}: {{value}}",
        {
            "ticker": "BTC/USDT",
            "exchange": "binance",
            "timeframe": "1m",
            "close": 27950.01,
            "volume": 12.5,
            "time": datetime(2023, 5, 8, 14, 56, tzinfo=UTC),
            "value": 71.90450712,
        },
    )
    assert text == "BTC/USDT@binance 1m close 27950.01 vol 12.5 at 2023-05-08T14:56:00Z: 71.90450712"


def test_a_receiver_verifies_the_signature_and_refuses_tampering_or_stale_requests():
    body = b'{"id":1}'
    headers = signature_headers("s3cret", 1_700_000_000, body)
    received = headers["X-Cryptostock-Signature"]
    assert received == signature("s3cret", 1_700_000_000, body)
    assert verify_signature("s3cret", "1700000000", body, received, now=1_700_000_010)
    assert not verify_signature("s3cret", "1700000000", b'{"id":2}', received, now=1_700_000_010)
    assert not verify_signature("other", "1700000000", body, received, now=1_700_000_010)
    assert not verify_signature("s3cret", "1700000000", body, received, now=1_700_001_000)
