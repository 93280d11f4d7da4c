"""Webhook signatures: HMAC-SHA256 over the timestamp and the exact body. Pure: no Django, no clock.

Headers sent with every webhook:
  X-Cryptostock-Timestamp: <unix seconds>
  X-Cryptostock-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
The timestamp is signed too, so a receiver can refuse old requests replayed by someone who saw one.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Cryptostock-Timestamp"
SIGNATURE_HEADER = "X-Cryptostock-Signature"
DELIVERY_HEADER = "X-Cryptostock-Delivery"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify_signature(
    secret: str, timestamp: str, body: bytes, received: str, *, now: int, tolerance_seconds: int = 300
) -> bool:
    """What a receiver does: recompute, compare in constant time, and refuse stale timestamps."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature(secret, sent_at, body), received)
