"""Names of the Channels groups that carry live market data. Pure: shared by publishers and consumers."""


def bars_group(instrument_id: int, timeframe: str) -> str:
    return f"bars.{instrument_id}.{timeframe}"
