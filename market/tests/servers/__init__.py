"""Local servers that speak the real wire formats of Binance, Alpaca and Yahoo Finance, replaying
recorded real payloads, with scripted faults. Tests point the adapters' URLs at them (127.0.0.1)."""
