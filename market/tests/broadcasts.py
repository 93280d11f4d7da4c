"""What a channel-layer group member receives for bars, read back as the frames a WebSocket client gets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson


def bar_frames(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `bar` frames of the messages, in order: one per bar of a batch message (`bars.update`),
    one for a single-bar message (`bar.update`, the partial bars)."""
    frames: list[dict[str, Any]] = []
    for message in messages:
        if "bars" in message:
            frames.extend(orjson.loads(item["text"]) for item in message["bars"])
        else:
            frames.append(orjson.loads(message["text"]))
    return frames
