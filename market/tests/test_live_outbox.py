"""The per-connection outbox and the inbound token bucket: pure, no Django."""

from __future__ import annotations

import asyncio

from market.live_outbox import Outbox, TokenBucket, text_frame

SERIES = (1, "1m")


async def drained(outbox: Outbox, sent: list[str]) -> list[str]:
    outbox.start()
    for _ in range(10):
        await asyncio.sleep(0)
    await outbox.stop()
    return sent


def outbox_recording() -> tuple[Outbox, list[str]]:
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    async def close(code: int) -> None:
        sent.append(f"close {code}")

    return Outbox(send, close), sent


async def test_a_newer_partial_replaces_the_unsent_one_of_its_series_in_place():
    outbox, sent = outbox_recording()
    outbox.put_partial(SERIES, 60, "p1")
    outbox.put("alert")
    outbox.put_partial(SERIES, 60, "p2")
    outbox.put_partial((2, "1m"), 60, "other")
    assert await drained(outbox, sent) == ["p2", "alert", "other"]
    assert outbox.dropped_partials == 1


async def test_a_final_drops_the_waiting_partial_of_its_bar_but_not_of_a_later_one():
    outbox, sent = outbox_recording()
    outbox.put_partial(SERIES, 60, "partial 60")
    outbox.put_final(SERIES, 60, "final 60")
    outbox.put_partial((2, "1m"), 120, "other partial 120")
    outbox.put_final((2, "1m"), 60, "other final 60")
    assert await drained(outbox, sent) == ["final 60", "other partial 120", "other final 60"]


async def test_finals_are_never_dropped():
    outbox, sent = outbox_recording()
    for minute in range(5):
        outbox.put_final(SERIES, minute * 60, f"final {minute}")
    assert await drained(outbox, sent) == [f"final {minute}" for minute in range(5)]


async def test_a_partial_after_a_sent_one_is_sent_too():
    outbox, sent = outbox_recording()
    outbox.start()
    outbox.put_partial(SERIES, 60, "p1")
    await asyncio.sleep(0.01)
    outbox.put_partial(SERIES, 60, "p2")
    await asyncio.sleep(0.01)
    await outbox.stop()
    assert sent == ["p1", "p2"]


async def test_a_close_goes_after_the_frames_before_it_and_nothing_after():
    outbox, sent = outbox_recording()
    outbox.put("why")
    outbox.put_close(4429)
    outbox.put("never")
    assert await drained(outbox, sent) == ["why", "close 4429"]


def test_the_bucket_allows_a_burst_then_the_rate():
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.5  # one token back
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] = 100.0  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 3


def test_a_text_frame_is_an_unmasked_final_text_frame_with_the_length_in_the_right_width():
    for size, header in (
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (70_000, b"\x81\x7f" + (70_000).to_bytes(8, "big")),
    ):
        frame = text_frame("é" * (size // 2) + "x" * (size % 2))
        assert frame.startswith(header)
        assert frame[len(header) :].decode() == "é" * (size // 2) + "x" * (size % 2)


async def test_with_a_frame_writer_frames_are_written_at_once_while_the_client_keeps_up_and_queued_when_not():
    written: list[bytes] = []
    writable = asyncio.Event()
    writable.set()

    async def never(*_):
        raise AssertionError("text frames go through the frame writer")

    outbox = Outbox(never, never, writable, written.append)
    outbox.put("a")  # no writer task running: written at once all the same
    assert written == [text_frame("a")]
    writable.clear()
    outbox.put_partial(SERIES, 60, "p1")
    outbox.put_partial(SERIES, 60, "p2")
    assert len(written) == 1
    outbox.start()
    writable.set()
    await asyncio.sleep(0.01)
    await outbox.stop()
    assert written == [text_frame("a"), text_frame("p2")]
