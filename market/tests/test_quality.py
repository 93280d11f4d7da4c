"""Data quality: real data with real gaps, clean real data, and defects injected into real data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from django.core.management import call_command
from django.urls import reverse

from market.barstore import BarRow
from market.models import AssetClass, Exchange, Instrument, QualityFinding, QualityReport
from market.quality import Finding, check_day, day_spans
from market.quality_reports import check_quality, score_day
from market.services import store_bars
from market.sessions import session_on

FIVE = timedelta(minutes=5)


def candles(sample_data, name: str) -> pd.DataFrame:
    return pd.read_feather(sample_data / "freqtrade" / name).rename(columns={"date": "time"})


def day_of(frame: pd.DataFrame, day: str) -> tuple[pd.DataFrame, pd.DataFrame, datetime]:
    """(bars of `day`, bars of the day before, the day's start)."""
    start = pd.Timestamp(day, tz="UTC")
    today = frame[(frame["time"] >= start) & (frame["time"] < start + pd.Timedelta(days=1))]
    before = frame[(frame["time"] >= start - pd.Timedelta(days=1)) & (frame["time"] < start)]
    return today.reset_index(drop=True), before, start.to_pydatetime()


def hhmm(finding: Finding) -> str:
    return "" if finding.time is None else finding.time.strftime("%H:%M")


def check(frame: pd.DataFrame, history: pd.DataFrame, start: datetime, timeframe: str = "5m", **kwargs):
    now = kwargs.pop("now", start + timedelta(days=2))
    return check_day(frame, timeframe=timeframe, open_spans=day_spans(start), now=now, history=history, **kwargs)


@pytest.fixture
def ada(sample_data) -> pd.DataFrame:
    return candles(sample_data, "ADA_BTC-5m.feather")


# --- The pure checker ----------------------------------------------------------------------------


def test_real_gaps_in_ada_btc_are_found_run_by_run_and_cost_their_share(ada):
    bars, history, start = day_of(ada, "2018-01-15")

    quality = check(bars, history, start)

    gaps = [(hhmm(f), f.count) for f in quality.findings if f.kind == "gap"]
    assert gaps == [("10:10", 1), ("10:30", 1), ("11:10", 4), ("11:45", 1), ("12:00", 33)]
    assert [f.kind for f in quality.findings] == ["gap"] * 5
    assert (quality.bars, quality.expected) == (248, 288)
    assert quality.score == 86  # 100 - 100 * 40 / 288, rounded down


@pytest.mark.parametrize(
    ("name", "timeframe", "days"),
    [
        ("ADA_BTC-5m.feather", "5m", [f"2018-01-{d:02}" for d in range(11, 30) if d != 15]),
        ("UNITTEST_BTC-1m.feather", "1m", ["2017-11-12"]),
    ],
)
def test_clean_real_data_scores_100(sample_data, name, timeframe, days):
    frame = candles(sample_data, name)
    for day in days:
        bars, history, start = day_of(frame, day)

        quality = check(bars, history, start, timeframe)

        assert (day, quality.findings) == (day, ())
        assert quality.score == 100


def inject_defects(bars: pd.DataFrame) -> tuple[pd.DataFrame, set[tuple[str, str]]]:
    """Real bars of a clean day with one defect of every kind; returns them and (kind, HH:MM) expected."""
    at = {time.strftime("%H:%M"): index for index, time in enumerate(bars["time"])}
    values = {
        name: bars[name].to_numpy(dtype="float64", copy=True) for name in ("open", "high", "low", "close", "volume")
    }
    row = at["12:00"]
    values["high"][row], values["low"][row] = values["low"][row], values["high"][row]
    values["close"][at["13:00"]] *= -1
    values["volume"][at["14:00"]] = -5.0
    spike = at["15:00"]
    values["close"][spike] *= 1.5
    values["high"][spike] = values["close"][spike]
    values["volume"][at["16:00"]] *= 10_000
    frozen = [at[f"17:{minute:02}"] for minute in range(0, 45, 5)]
    for column in values.values():
        column[frozen] = column[frozen[0]]
    bad = bars.assign(**values)
    bad = pd.concat([bad, bad.iloc[[at["11:00"]]]])  # a duplicate
    bad = bad.drop(index=[at["10:00"], at["10:05"], at["10:10"]])  # a gap of three bars
    expected = {
        ("gap", "10:00"),
        ("duplicate", "11:00"),
        ("ohlc", "12:00"),
        ("non_positive_price", "13:00"),
        ("ohlc", "13:00"),  # a negative close is also below the low
        ("negative_volume", "14:00"),
        ("return_outlier", "15:00"),
        ("volume_outlier", "16:00"),
        ("stale", "17:00"),
    }
    return bad.sample(frac=1, random_state=4), expected  # order does not matter


def test_every_defect_injected_into_clean_real_data_is_found(ada):
    bars, history, start = day_of(ada, "2018-01-20")
    bad, expected = inject_defects(bars)

    quality = check(bad, history, start)

    assert {(f.kind, hhmm(f)) for f in quality.findings} == expected
    gap = next(f for f in quality.findings if f.kind == "gap")
    assert gap.count == 3
    assert next(f for f in quality.findings if f.kind == "stale").count == 9
    assert quality.score == 57  # 100 - 41 points for the bars - 100 * 3 / 288 for the gap, rounded down


def test_a_feed_that_stopped_today_is_stale_not_a_run_of_gaps(ada):
    bars, history, start = day_of(ada, "2018-01-20")
    until_ten = bars[bars["time"] < start + timedelta(hours=10)]
    now = start + timedelta(hours=12, minutes=2)

    quality = check(until_ten, history, start, now=now)

    assert [(f.kind, hhmm(f), f.count) for f in quality.findings] == [("stale", "10:00", 24)]
    assert quality.expected == 144  # only bars whose period has ended count


def test_closes_that_disagree_with_another_source_are_found(ada):
    bars, history, start = day_of(ada, "2018-01-20")
    other = bars.copy()
    window = (other["time"] >= start + timedelta(hours=6)) & (other["time"] < start + timedelta(hours=6, minutes=30))
    other.loc[window, "close"] *= 1.03

    quality = check(bars, history, start, reference=other)
    agreeing = check(bars, history, start, reference=bars.assign(close=bars["close"] * 1.001))

    assert [(f.kind, hhmm(f), f.count) for f in quality.findings] == [("source_disagreement", "06:00", 6)]
    assert agreeing.score == 100


def test_an_exchange_traded_day_expects_bars_only_while_the_session_is_open(ada):
    # Real ADA prices laid on the NYSE's Black Friday 2024 session (14:30 to 18:00 UTC), with pre-
    # and post-market bars around it and one bar missing inside.
    session = session_on("XNYS", date(2024, 11, 29))
    assert session is not None
    times = pd.date_range("2024-11-29 12:00", "2024-11-29 21:55", freq="5min", tz="UTC")
    bars = ada.iloc[: len(times)].assign(time=times)
    bars = bars[bars["time"] != pd.Timestamp("2024-11-29 15:00", tz="UTC")]

    quality = check_day(
        bars, timeframe="5m", open_spans=[(session.open, session.close)], now=session.close + timedelta(hours=6)
    )

    assert quality.expected == 42
    assert [(f.kind, hhmm(f)) for f in quality.findings] == [("gap", "15:00")]


# --- Reports in the database, the task, the API ---------------------------------------------------


def store(instrument_id: int, frame: pd.DataFrame, timeframe: str = "5m") -> None:
    rows = [
        BarRow(instrument_id, timeframe, t.to_pydatetime(), o, h, low, c, v, None, None, True)
        for t, o, h, low, c, v in frame[["time", "open", "high", "low", "close", "volume"]].itertuples(index=False)
    ]
    store_bars(rows, publish=False)


@pytest.fixture
def stored_ada(instrument, ada):
    store(instrument.pk, ada)
    return instrument


@pytest.mark.django_db
def test_scoring_a_day_records_the_report_and_its_findings_once(stored_ada):
    now = datetime(2018, 2, 1, tzinfo=UTC)

    report = score_day(stored_ada, "5m", date(2018, 1, 15), now)
    again = score_day(stored_ada, "5m", date(2018, 1, 15), now + timedelta(hours=1))
    assert report is not None
    assert again is not None

    assert report.score == 86
    assert report.findings.count() == 5
    assert again.pk == report.pk
    assert again.updated_at == now  # nothing changed, nothing was rewritten
    assert QualityFinding.objects.count() == 5


@pytest.mark.django_db
def test_the_task_scores_every_active_instrument_and_timeframe(stored_ada, settings):
    settings.QUALITY_TIMEFRAMES = ["5m"]

    result = check_quality(date(2018, 1, 20), datetime(2018, 2, 1, tzinfo=UTC))
    call_command("check_quality", "--day", "2018-01-15", "--timeframe", "5m", "--now", "2018-02-01")

    assert result.reports == 1
    scores = dict(QualityReport.objects.values_list("day", "score"))
    assert scores == {date(2018, 1, 20): 100, date(2018, 1, 15): 86}


@pytest.mark.django_db
def test_a_second_source_for_the_same_instrument_is_compared(stored_ada, ada):
    alpaca = Exchange.objects.create(code="alpaca", name="Alpaca")
    twin = Instrument.objects.create(exchange=alpaca, symbol="XRP/ETH", asset_class=AssetClass.CRYPTO)
    day = ada[(ada["time"] >= "2018-01-20") & (ada["time"] < "2018-01-21")]
    store(twin.pk, day.assign(close=day["close"] * 1.05, high=day["high"] * 1.05))

    report = score_day(stored_ada, "5m", date(2018, 1, 20), datetime(2018, 2, 1, tzinfo=UTC))
    assert report is not None

    assert {f.kind for f in report.findings.all()} == {"source_disagreement"}


@pytest.mark.django_db
def test_the_api_lists_reports_with_findings_filtered(viewer_client, stored_ada):
    now = datetime(2018, 2, 1, tzinfo=UTC)
    for day in (15, 20):
        score_day(stored_ada, "5m", date(2018, 1, day), now)

    everything = viewer_client.get("/api/v1/quality/").json()
    poor = viewer_client.get("/api/v1/quality/", {"instrument": stored_ada.pk, "max_score": 99}).json()
    by_day = viewer_client.get("/api/v1/quality/", {"day": "2018-01-20", "timeframe": "5m"}).json()

    assert everything["count"] == 2
    assert poor["count"] == 1
    report = poor["results"][0]
    assert (report["day"], report["score"], report["bars"], report["expected_bars"]) == ("2018-01-15", 86, 248, 288)
    assert report["instrument"] == stored_ada.pk
    assert report["symbol"] == "XRP/ETH"
    assert [(f["kind"], f["count"]) for f in report["findings"]][-1] == ("gap", 33)
    assert by_day["results"][0]["findings"] == []
    assert viewer_client.get("/api/v1/quality/", {"timeframe": "2m"}).status_code == 400
    # An empty value is a bad value too, not "not given"
    empty = viewer_client.get("/api/v1/quality/?timeframe=")
    assert (empty.status_code, list(empty.json()["error"]["fields"])) == (400, ["timeframe"])
    # Beyond a bigint: a 400 naming the filter, not a database error (SQLite cannot bind it).
    too_big = viewer_client.get("/api/v1/quality/", {"instrument": "99999999999999999999999"})
    assert (too_big.status_code, list(too_big.json()["error"]["fields"])) == (400, ["instrument"])


@pytest.mark.django_db
def test_reports_and_findings_are_in_the_admin(admin_client, stored_ada):
    report = score_day(stored_ada, "5m", date(2018, 1, 15), datetime(2018, 2, 1, tzinfo=UTC))
    assert report is not None

    listing = admin_client.get(reverse("admin:market_qualityreport_changelist"))
    detail = admin_client.get(reverse("admin:market_qualityreport_change", args=[report.pk]))

    assert listing.status_code == 200
    assert detail.status_code == 200
    assert b"33 bar(s) missing" in detail.content
