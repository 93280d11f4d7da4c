"""Names of the Channels groups that carry live market data. Pure: shared by publishers and consumers."""

# Topics a WebSocket client subscribes to by name: {"action": "subscribe", "channel": "collectors"}.
COLLECTORS_GROUP = "collectors"
ARBITRAGE_GROUP = "arbitrage"
TOPIC_GROUPS = {"collectors": COLLECTORS_GROUP, "arbitrage": ARBITRAGE_GROUP}


def bars_group(instrument_id: int, timeframe: str) -> str:
    return f"bars.{instrument_id}.{timeframe}"
