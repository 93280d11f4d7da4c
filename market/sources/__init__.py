"""Data sources, one small adapter each behind `market.sources.base.Source`."""

from __future__ import annotations

from market.sources.base import Source

SOURCE_NAMES = ("replay",)


def build_source(name: str, *, speed: float, loop: bool) -> Source:
    if name == "replay":
        from market.sample import replay_recordings
        from market.sources.replay import ReplaySource

        return ReplaySource(recordings=replay_recordings(), speed=speed, loop=loop)
    raise ValueError(f"unknown source {name!r}; available: {', '.join(SOURCE_NAMES)}")
