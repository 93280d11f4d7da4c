"""What one WebSocket connection still has to send, and how fast its client may talk. Pure: no Django.

`Outbox` is a connection's ordered queue of pre-encoded text frames, drained by one writer task. A
client that reads slowly only makes its own queue grow, never anyone else's: while a partial bar of
a series waits unsent, a newer partial of that series replaces it in place (the chart only ever
shows the newest), and a final bar drops the waiting partials of the same or older bars. Final bars,
snapshots, alerts and everything else are never dropped.

`TokenBucket` counts a client's inbound messages: `rate` per second on average, bursts of `burst`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

SeriesKey = tuple[int, str]  # (instrument id, timeframe)


Payload = str | bytes  # JSON text, or that text already framed for the wire (text_frame)


def text_frame(text: str) -> bytes:
    """An unmasked, unfragmented WebSocket text frame (RFC 6455, 5.2): what a server sends. The same
    bytes go to every client of a broadcast, so they are built once per broadcast."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 65536:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload


@dataclass(slots=True)
class Frame:
    text: Payload | None  # None: dropped after it was queued (superseded)
    series: SeriesKey | None = None  # set for partial bars only: the ones that may be coalesced
    bar_time: int = 0
    close_code: int | None = None  # close the connection with this code once the frames before went


class Outbox:
    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        close: Callable[[int], Awaitable[None]],
        writable: asyncio.Event | None = None,
        write: Callable[[bytes], None] | None = None,
    ) -> None:
        """`writable`, if given, is cleared while the client does not keep up: frames stay queued (and
        partial bars coalesce) until it is set again. `write`, if given, puts framed bytes straight
        on the connection's transport (no await): then every frame goes that way, and a frame that
        finds the outbox empty and the client keeping up is written at once, without waking the
        writer task (the common case, and the one a burst of broadcasts is made of)."""
        self._send = send
        self._close = close
        self._writable = writable
        self._write = write
        self._draining = False
        self._frames: deque[Frame] = deque()
        self._waiting_partials: dict[SeriesKey, Frame] = {}
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.dropped_partials = 0

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_forever())

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    def __len__(self) -> int:
        return sum(1 for frame in self._frames if frame.text is not None)

    def put(self, text: Payload) -> None:
        """A frame that is always delivered, in order."""
        self._append(Frame(text))

    def put_close(self, code: int) -> None:
        """Close the connection after the frames queued so far (an error saying why, typically)."""
        self._append(Frame(None, close_code=code))

    def put_partial(self, series: SeriesKey, bar_time: int, text: Payload) -> None:
        waiting = self._waiting_partials.get(series)
        if waiting is not None and waiting.text is not None and waiting.bar_time <= bar_time:
            waiting.text, waiting.bar_time = self._framed(text), bar_time
            self.dropped_partials += 1
            return
        frame = Frame(text, series, bar_time)
        if self._append(frame):
            self._waiting_partials[series] = frame

    def put_final(self, series: SeriesKey, bar_time: int, text: Payload) -> None:
        waiting = self._waiting_partials.get(series)
        if waiting is not None and waiting.text is not None and waiting.bar_time <= bar_time:
            # The final bar says everything the waiting partial of that bar would have said.
            waiting.text = None
            self.dropped_partials += 1
            del self._waiting_partials[series]
        self._append(Frame(text))

    def _framed(self, text: Payload) -> Payload:
        return text_frame(text) if self._write is not None and isinstance(text, str) else text

    def _append(self, frame: Frame) -> bool:
        """Queue the frame, or write it at once; whether it was queued."""
        if frame.text is not None:
            frame.text = self._framed(frame.text)
        if self._write is not None and isinstance(frame.text, bytes) and self._idle():
            self._write(frame.text)
            return False
        self._frames.append(frame)
        self._wakeup.set()
        return True

    def _idle(self) -> bool:
        writable = self._writable is None or self._writable.is_set()
        return writable and not self._frames and not self._draining

    async def _write_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            self._draining = True
            try:
                if not await self._drain():
                    return
            finally:
                self._draining = False

    async def _drain(self) -> bool:
        """Send what is queued; False once the connection was closed."""
        while self._frames:
            if self._writable is not None and not self._writable.is_set():
                await self._writable.wait()
            frame = self._frames.popleft()
            if frame.series is not None and self._waiting_partials.get(frame.series) is frame:
                del self._waiting_partials[frame.series]
            if isinstance(frame.text, bytes) and self._write is not None:
                self._write(frame.text)
            elif isinstance(frame.text, str):
                await self._send(frame.text)
            elif frame.close_code is not None:
                self._frames.clear()
                await self._close(frame.close_code)
                return False
        return True


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> bool:
        """Whether one more message is allowed now."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
