"""What a channel-layer group member receives for bars, read back as the frames a WebSocket client gets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from market.services import batch_items


def bar_frames(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `bar` frames of the messages, in order: one per bar of a batch message (`bars.update`,
    with items or columns, as a web process's consumer reads it), one for a single-bar message
    (`bar.update`, the partial bars)."""
    frames: list[dict[str, Any]] = []
    for message in messages:
        items = batch_items(message)
        if items is not None:
            frames.extend(orjson.loads(item["text"]) for item in items)
        else:
            frames.append(orjson.loads(message["text"]))
    return frames
