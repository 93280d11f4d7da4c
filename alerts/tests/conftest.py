"""Small builders for the alerts tests: real bars, a bar-by-bar replay of the engine, stored feeds,
users, eager Celery and a local HTTP server that records what it receives."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from alerts.engine import Bars, compile_rules, evaluate
from alerts.rules import RuleSpec

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"
FEED = (1, "1m")
NEVER = 4_102_444_800.0  # 2100-01-01: a `now` before every expiry date in these tests


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def minutes(times: Sequence[int]) -> list[str]:
    """Epoch seconds as 'YYYY-MM-DD HH:MM' (UTC), the way the literal expectations are written."""
    return [datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M") for t in times]


def btc_frame(rows: int = 3000) -> pd.DataFrame:
    """Real Binance 1m candles (freqtrade's UNITTEST/BTC), 2017-11-04 23:02 onwards, with real gaps."""
    return pd.read_feather(SAMPLE_DATA / "freqtrade" / "UNITTEST_BTC-1m.feather").head(rows)


def frequi_frame() -> pd.DataFrame:
    """500 real BTC/USDT 1m candles with freqtrade's own rsi, ema20 and ema50 columns."""
    raw = json.loads((SAMPLE_DATA / "frequi" / "pair_candles_btc_1m.json").read_text())
    frame = pd.DataFrame(raw["data"], columns=raw["columns"])
    frame["date"] = pd.to_datetime(frame["date"], utc=True)
    return frame


def bars_of(frame: pd.DataFrame) -> Bars:
    return Bars.from_columns(
        epoch_seconds(frame), frame["open"], frame["high"], frame["low"], frame["close"], frame["volume"]
    )


def epoch_seconds(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    return frame["date"].dt.as_unit("s").astype("int64").to_numpy()


def replay(
    specs: Sequence[RuleSpec], frame: pd.DataFrame, *, start: int = 1, now: float = NEVER
) -> dict[int, list[int]]:
    """Feed the engine one closing bar at a time, as the live path does (a window of the bars up to
    it, as long as the rules need), remembering each rule's last firing. Rule id -> firing times."""
    book = compile_rules(specs)
    bars = bars_of(frame)
    lookback = max(book.lookback.values())
    last = np.full(len(book), np.nan)
    position = {int(rule_id): i for i, rule_id in enumerate(book.rule_ids)}
    fired: dict[int, list[int]] = {spec.id: [] for spec in specs}
    for end in range(start + 1, len(frame) + 1):
        window = window_of(bars, end, lookback)
        for firing in evaluate(book, {FEED: window}, now=now, last_fired=last):
            fired[firing.rule_id].append(firing.bar_time)
            last[position[firing.rule_id]] = firing.bar_time
    return fired


def window_of(bars: Bars, end: int, length: int, *, final: bool = True) -> Bars:
    """The `length` bars ending just before index `end`."""
    start = max(0, end - length)
    return Bars(
        bars.time[start:end],
        bars.open[start:end],
        bars.high[start:end],
        bars.low[start:end],
        bars.close[start:end],
        bars.volume[start:end],
        final,
    )


# --- Database builders ---------------------------------------------------------------------------


@pytest.fixture
def analyst(make_user):
    user = make_user("analyst", username="ana")
    user.email = "ana@example.com"
    user.save()
    return user


@pytest.fixture
def btc(db):
    from market.models import Exchange, Instrument

    exchange = Exchange.objects.create(code="binance", name="Binance")
    return Instrument.objects.create(exchange=exchange, symbol="UNITTEST/BTC")


def store_frame(instrument, frame: pd.DataFrame, *, timeframe: str = "1m", publish: bool = False) -> None:
    from market.barstore import BarRow
    from market.services import store_bars

    rows = [
        BarRow(instrument.pk, timeframe, t.to_pydatetime(), o, h, low, c, v, None, None, True)
        for t, o, h, low, c, v in frame[["date", "open", "high", "low", "close", "volume"]].itertuples(index=False)
    ]
    store_bars(rows, publish=publish)


@pytest.fixture
def make_rule(analyst, btc):
    from alerts.models import AlertRule

    def make(**fields):
        values = {"owner": analyst, "instrument": btc, "timeframe": "1m", "channels": ["in_app"], **fields}
        rule = AlertRule(**values)
        rule.full_clean()
        rule.save()
        return rule

    return make


@pytest.fixture
def fire(django_capture_on_commit_callbacks):
    """Fire a rule on the real 04:32 bar of 2017-11-06 and run its deliveries, as after the commit."""
    from alerts import services

    def fire(rule):
        candidate = services.Candidate(rule, utc("2017-11-06 04:32"), 0.00190091, 0.00190091, 193.000282)
        with django_capture_on_commit_callbacks(execute=True):
            [firing] = services.record_firings([candidate])
        return firing

    return fire


@pytest.fixture
def fired(make_rule, fire):
    """A price rule (in-app and email) that fired on the 04:32 bar, its deliveries run."""
    rule = make_rule(condition="crossing_up", level=0.0019, channels=["in_app", "email"], name="Over 0.0019")
    fire(rule)
    return rule


@pytest.fixture(autouse=True)
def eager_celery(settings):
    """Tasks run in-process even when REDIS_URL is set (no worker in tests); retries back off 0 s."""
    settings.ALERTS_DELIVERY_BACKOFF_SECONDS = 0
    settings.ALERTS_DELIVERY_MAX_RETRIES = 2
    settings.ALERTS_HTTP_TIMEOUT = 5
    # Through Django's settings, which Celery reads live: writing app.conf directly would pin the
    # value for every later test of the session, even after "restoring" it.
    settings.CELERY_TASK_ALWAYS_EAGER = True


@pytest.fixture
async def close_thread_connections():
    yield
    await sync_to_async(connections.close_all)()


# --- A local HTTP server that answers from a script and records every request ---------------------


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class LocalServer:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    # (status, JSON body) answered in turn; the last one repeats.
    answers: list[tuple[int, object]] = field(default_factory=lambda: [(200, {"ok": True})])


@pytest.fixture
def local_server(settings) -> Iterator[LocalServer]:
    # Alerts refuse private and loopback destinations unless told otherwise: this one is on 127.0.0.1.
    settings.ALERTS_WEBHOOK_ALLOW_PRIVATE = True
    state = LocalServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(Recorded(self.path, dict(self.headers.items()), body))
            index = min(len(state.requests), len(state.answers)) - 1
            status, answer = state.answers[index]
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def dead_url(settings) -> str:
    """A local port nobody listens on: connections are refused at once."""
    settings.ALERTS_WEBHOOK_ALLOW_PRIVATE = True
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
