"""WebSocket consumer for live market data at /ws/v1/market/. The protocol: docs/websocket.md.

Thin: authentication and limits at the door, then subscriptions. Broadcasts (bars, collectors,
arbitrage) reach it through the process's hub (market.live_hub) already encoded, and leave through
the connection's outbox (market.live_outbox), which coalesces stale partial bars for a slow client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from accounts.capabilities import has_capability
from accounts.roles import READ_MARKET_DATA
from alerts.groups import user_group
from cryptostock.websocket_transport import WRITABLE_EXTENSION, WRITE_FRAME_EXTENSION
from market.groups import TOPIC_GROUPS, bars_group
from market.live_hub import LiveHub, hub_for
from market.live_outbox import Outbox, Payload, TokenBucket, text_frame
from market.queries import latest_bars_payload
from market.services import batch_items, encode_frame
from market.timeframes import TIMEFRAMES

log = logging.getLogger(__name__)

SNAPSHOT_BARS = 500

# Close codes (docs/websocket.md). 4000-4999 are the application's own.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_SLOW = 4408
CLOSE_TOO_MANY_MESSAGES = 4429


@database_sync_to_async
def _snapshot(instrument_id: int, timeframe: str) -> list[dict[str, Any]] | None:
    return latest_bars_payload(instrument_id, timeframe, SNAPSHOT_BARS)


@database_sync_to_async
def _user_from_token(raw_token: str) -> Any:
    """The active user a simplejwt access token belongs to, or None (bad, expired or revoked token)."""
    from rest_framework_simplejwt.authentication import JWTAuthentication
    from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken

    authentication = JWTAuthentication()
    try:
        return authentication.get_user(authentication.get_validated_token(raw_token.encode()))
    except (InvalidToken, AuthenticationFailed):
        return None


@database_sync_to_async
def _may_read_market_data(user: Any) -> bool:
    return user.is_authenticated and has_capability(user, READ_MARKET_DATA)


def _query_token(scope: dict[str, Any]) -> str | None:
    tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return tokens[0] if tokens else None


class MarketConsumer(AsyncWebsocketConsumer):
    hub: LiveHub | None = None

    async def connect(self) -> None:
        self.bar_series: set[tuple[int, str]] = set()
        self.topics: set[str] = set()
        self.user_group: str | None = None
        extensions = self.scope.get("extensions") or {}
        self._write_frame = extensions.get(WRITE_FRAME_EXTENSION)
        self.outbox = Outbox(self._send_frame, self._close_with, extensions.get(WRITABLE_EXTENSION), self._write_frame)
        self._bucket = TokenBucket(settings.WS_MESSAGES_PER_SECOND, settings.WS_MESSAGE_BURST)
        self._refused_in_a_row = 0
        self._closing = False
        user = await self._authenticate()
        if user is not None:
            # Public data needs no trip to the database thread (shared by every connection's snapshots).
            self.may_read_market_data = settings.PUBLIC_MARKET_DATA or await _may_read_market_data(user)
        if user is not None and user.is_authenticated:
            # Joined before the handshake completes: an alert fired once the client sees the socket
            # open must reach it (joined after, one fired in between was lost)
            self.user_group = user_group(user.pk)
            await self.channel_layer.group_add(self.user_group, self.channel_name)
        await self.accept()
        self.outbox.start()
        if user is None:
            self._refuse("unauthenticated", "sign in, or pass a valid access token as ?token=", CLOSE_UNAUTHENTICATED)

    async def _authenticate(self) -> Any | None:
        """The session's user, else the `?token=` access token's user, else AnonymousUser if anonymous
        access is on; None: refuse. A token that does not check out is refused even when anonymous
        access is on, so that a client with an expired token learns it."""
        user = self.scope.get("user") or AnonymousUser()
        if user.is_authenticated:
            return user
        token = _query_token(self.scope)
        if token is not None:
            return await _user_from_token(token)
        return user if settings.PUBLIC_MARKET_DATA else None

    async def disconnect(self, code: int) -> None:
        if getattr(self, "user_group", None) is not None:
            await self.channel_layer.group_discard(self.user_group, self.channel_name)
        if self.hub is not None:
            for group in self._hub_groups():
                await self.hub.leave(group, self)
        if hasattr(self, "outbox"):
            await self.outbox.stop()

    def _hub_groups(self) -> list[str]:
        return [bars_group(*series) for series in self.bar_series] + [TOPIC_GROUPS[t] for t in self.topics]

    # --- inbound ---------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closing:
            return
        if not self._within_rate():
            return
        if text_data is None:
            self._error("bad_message", "send JSON text frames, not binary ones")
            return
        if len(text_data) > settings.WS_MAX_MESSAGE_BYTES:
            self._error("message_too_large", f"messages are at most {settings.WS_MAX_MESSAGE_BYTES} bytes")
            return
        try:
            content = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            self._error("bad_json", "messages must be JSON")
            return
        if not isinstance(content, dict):
            self._error("bad_message", "messages must be JSON objects")
            return
        await self._act(content)

    def _within_rate(self) -> bool:
        if self._bucket.take():
            self._refused_in_a_row = 0
            return True
        self._refused_in_a_row += 1
        if self._refused_in_a_row >= settings.WS_CLOSE_AFTER_REFUSED:
            self._refuse("rate_limited", "too many messages; closing", CLOSE_TOO_MANY_MESSAGES)
        elif self._refused_in_a_row == 1:  # one error per run of refusals, not one per message
            rate = settings.WS_MESSAGES_PER_SECOND
            self._error("rate_limited", f"at most {rate:g} messages per second; messages are being dropped")
        return False

    async def _act(self, content: dict[str, Any]) -> None:
        action = content.get("action")
        if action == "ping":
            self.outbox.put('{"type":"pong"}')
        elif action in ("subscribe", "unsubscribe") and "channel" in content:
            await self._change_topic(action, content["channel"])
        elif action in ("subscribe", "unsubscribe"):
            series = self._parse_series(content)
            if series is not None:
                await (self._subscribe if action == "subscribe" else self._unsubscribe)(*series)
        else:
            self._error("unknown_action", f"unknown action {action!r}; use subscribe, unsubscribe or ping")

    def _parse_series(self, content: dict[str, Any]) -> tuple[int, str] | None:
        instrument = content.get("instrument")
        timeframe = content.get("timeframe", "1m")
        if not isinstance(instrument, int) or isinstance(instrument, bool):
            self._error("bad_message", "instrument must be an instrument id (integer)")
            return None
        if timeframe not in TIMEFRAMES:
            self._error("bad_timeframe", f"unknown timeframe {timeframe!r}; use one of {', '.join(TIMEFRAMES)}")
            return None
        return instrument, timeframe

    def _subscriptions_full(self) -> bool:
        if len(self.bar_series) + len(self.topics) < settings.WS_MAX_SUBSCRIPTIONS:
            return False
        self._error("too_many_subscriptions", f"at most {settings.WS_MAX_SUBSCRIPTIONS} subscriptions per connection")
        return True

    async def _subscribe(self, instrument_id: int, timeframe: str) -> None:
        if not self.may_read_market_data:
            self._error("forbidden", "your role does not allow reading market data")
            return
        if (instrument_id, timeframe) in self.bar_series:
            self._error("already_subscribed", f"already subscribed to {instrument_id} {timeframe}")
            return
        if self._subscriptions_full():
            return
        # Join before reading the snapshot, so that no bar falls between the two; a bar may then
        # arrive before the snapshot or repeat its last bar: clients apply bars by time.
        self.bar_series.add((instrument_id, timeframe))
        await self._hub().join(bars_group(instrument_id, timeframe), self)
        bars = await _snapshot(instrument_id, timeframe)
        if bars is None:
            self.bar_series.discard((instrument_id, timeframe))
            await self._hub().leave(bars_group(instrument_id, timeframe), self)
            self._error("unknown_instrument", f"no instrument with id {instrument_id}")
            return
        snapshot = {"type": "snapshot", "instrument": instrument_id, "timeframe": timeframe, "bars": bars}
        self.outbox.put(encode_frame(snapshot))

    async def _unsubscribe(self, instrument_id: int, timeframe: str) -> None:
        if (instrument_id, timeframe) in self.bar_series:
            self.bar_series.discard((instrument_id, timeframe))
            await self._hub().leave(bars_group(instrument_id, timeframe), self)
        self.outbox.put(encode_frame({"type": "unsubscribed", "instrument": instrument_id, "timeframe": timeframe}))

    async def _change_topic(self, action: str, topic: Any) -> None:
        if topic not in TOPIC_GROUPS:
            self._error("unknown_channel", f"unknown channel {topic!r}; use one of {', '.join(TOPIC_GROUPS)}")
            return
        if action == "subscribe":
            if not self.may_read_market_data:
                self._error("forbidden", "your role does not allow reading market data")
                return
            if topic not in self.topics:
                if self._subscriptions_full():
                    return
                self.topics.add(topic)
                await self._hub().join(TOPIC_GROUPS[topic], self)
            self.outbox.put(encode_frame({"type": "subscribed", "channel": topic}))
        else:
            if topic in self.topics:
                self.topics.discard(topic)
                await self._hub().leave(TOPIC_GROUPS[topic], self)
            self.outbox.put(encode_frame({"type": "unsubscribed", "channel": topic}))

    def _hub(self) -> LiveHub:
        if self.hub is None:
            self.hub = hub_for(self.channel_layer)
        return self.hub

    # --- outbound --------------------------------------------------------------------------------

    def deliver(self, message: dict[str, Any]) -> None:
        """A broadcast from the hub (no await: the hub hands one message to every local subscriber)."""
        if self._closing:
            return
        bars = batch_items(message)
        if bars is not None:  # a batch of one series (market.services): a frame per bar, in order
            series = (message["instrument"], message["timeframe"])
            for item in bars:
                if item["final"]:
                    self.outbox.put_final(series, item["time"], self._payload(item))
                else:
                    self.outbox.put_partial(series, item["time"], self._payload(item))
        else:
            payload = self._payload(message)
            bar = message.get("bar")
            if bar is None:
                self.outbox.put(payload)
            elif bar["final"]:
                self.outbox.put_final((message["instrument"], message["timeframe"]), bar["time"], payload)
            else:
                self.outbox.put_partial((message["instrument"], message["timeframe"]), bar["time"], payload)
        if len(self.outbox) > settings.WS_MAX_QUEUED_FRAMES and not self._closing:
            # Not through the outbox: it is what does not drain. The client reconnects and resyncs.
            self._closing = True
            log.info("closing a WebSocket whose client does not read (%d frames queued)", len(self.outbox))
            self._background_close = asyncio.get_running_loop().create_task(self._close_with(CLOSE_TOO_SLOW))

    def _payload(self, message: dict[str, Any]) -> Payload:
        """The broadcast's text, or its wire frame when this connection takes frames: framed by the
        first subscriber, kept on the message or batch item (which the hub hands to every
        subscriber) for the rest."""
        if self._write_frame is None:
            return message["text"]
        frame = message.get("wire_frame")
        if frame is None:
            frame = message["wire_frame"] = text_frame(message["text"])
        return frame

    async def alert_fired(self, event: dict[str, Any]) -> None:
        """One of the signed-in user's alert rules fired (alerts.delivery pushes to `user.<id>`)."""
        self.outbox.put(encode_frame({"type": "alert", **event["alert"]}))

    async def _send_frame(self, text: str) -> None:
        await self.send(text_data=text)

    async def _close_with(self, code: int) -> None:
        await self.close(code=code)

    def _error(self, code: str, message: str) -> None:
        self.outbox.put(encode_frame({"type": "error", "code": code, "message": message}))

    def _refuse(self, code: str, message: str, close_code: int) -> None:
        """Say why, then close: the error frame goes out first, through the outbox."""
        if self._closing:
            return
        self._closing = True
        self._error(code, message)
        self.outbox.put_close(close_code)
