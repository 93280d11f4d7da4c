"""WebSocket consumer for live market data at /ws/v1/market/.

Protocol (JSON text frames):
  client -> {"action": "subscribe", "instrument": 1, "timeframe": "1m"}
  server <- {"type": "snapshot", "instrument": 1, "timeframe": "1m", "bars": [...]}
  server <- {"type": "bar", "instrument": 1, "timeframe": "1m", "bar": {...}}   (partial or final)
  client -> {"action": "unsubscribe", "instrument": 1, "timeframe": "1m"}
  client -> {"action": "ping"}  server <- {"type": "pong"}
  server <- {"type": "error", "message": "..."}   (the connection stays open)
  server <- {"type": "alert", "id": 7, "rule": {...}, "message": "...", ...}   (signed-in users: their alerts)
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from alerts.groups import user_group
from market.groups import bars_group
from market.queries import latest_bars_payload
from market.timeframes import TIMEFRAMES

SNAPSHOT_BARS = 500
MAX_SUBSCRIPTIONS = 50


@database_sync_to_async
def _snapshot(instrument_id: int, timeframe: str) -> list[dict[str, Any]] | None:
    return latest_bars_payload(instrument_id, timeframe, SNAPSHOT_BARS)


class MarketConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.subscriptions: set[tuple[int, str]] = set()
        user = self.scope.get("user")
        self.user_group = user_group(user.pk) if user is not None and user.is_authenticated else None
        if self.user_group is not None:
            await self.channel_layer.group_add(self.user_group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "user_group", None) is not None:
            await self.channel_layer.group_discard(self.user_group, self.channel_name)
        for instrument_id, timeframe in list(getattr(self, "subscriptions", ())):
            await self.channel_layer.group_discard(bars_group(instrument_id, timeframe), self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self._error("messages must be JSON objects")
            return
        action = content.get("action")
        if action == "ping":
            await self.send_json({"type": "pong"})
        elif action in ("subscribe", "unsubscribe"):
            target = await self._parse_target(content)
            if target is not None:
                await (self._subscribe if action == "subscribe" else self._unsubscribe)(*target)
        else:
            await self._error(f"unknown action {action!r}; use subscribe, unsubscribe or ping")

    async def decode_json(self, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None  # receive_json answers with an error message instead of closing

    async def _parse_target(self, content: dict[str, Any]) -> tuple[int, str] | None:
        instrument = content.get("instrument")
        timeframe = content.get("timeframe", "1m")
        if not isinstance(instrument, int) or isinstance(instrument, bool):
            await self._error("instrument must be an instrument id (integer)")
            return None
        if timeframe not in TIMEFRAMES:
            await self._error(f"unknown timeframe {timeframe!r}; use one of {', '.join(TIMEFRAMES)}")
            return None
        return instrument, timeframe

    async def _subscribe(self, instrument_id: int, timeframe: str) -> None:
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            await self._error(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
            return
        bars = await _snapshot(instrument_id, timeframe)
        if bars is None:
            await self._error(f"no instrument with id {instrument_id}")
            return
        await self.channel_layer.group_add(bars_group(instrument_id, timeframe), self.channel_name)
        self.subscriptions.add((instrument_id, timeframe))
        await self.send_json({"type": "snapshot", "instrument": instrument_id, "timeframe": timeframe, "bars": bars})

    async def _unsubscribe(self, instrument_id: int, timeframe: str) -> None:
        self.subscriptions.discard((instrument_id, timeframe))
        await self.channel_layer.group_discard(bars_group(instrument_id, timeframe), self.channel_name)
        await self.send_json({"type": "unsubscribed", "instrument": instrument_id, "timeframe": timeframe})

    async def _error(self, message: str) -> None:
        await self.send_json({"type": "error", "message": message})

    async def bar_update(self, event: dict[str, Any]) -> None:
        """A bar published to a group this connection subscribed to."""
        message = {
            "type": "bar",
            "instrument": event["instrument"],
            "timeframe": event["timeframe"],
            "bar": event["bar"],
        }
        if "indicators" in event:  # final bars carry the latest indicator values
            message["indicators"] = event["indicators"]
        await self.send_json(message)

    async def alert_fired(self, event: dict[str, Any]) -> None:
        """One of the signed-in user's alert rules fired (alerts.delivery pushes to `user.<id>`)."""
        await self.send_json({"type": "alert", **event["alert"]})
