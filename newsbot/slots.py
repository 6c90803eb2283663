"""Claimed work in slots: the loop digests and alerts share.

``fill`` claims as much due work as there are free slots and starts a task for each into
``in_hand``. While every slot is busy the loop waits for the first to free one, not for
the slowest; with room to spare nothing more is due, so it looks again after
``idle_seconds``. At ``stop`` the work in hand is finished; cut off (cancelled, or
failed), it is cancelled too and comes back when its claim in Redis runs out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def run_in_slots(
    stop: asyncio.Event,
    fill: Callable[[], Awaitable[None]],
    in_hand: set[asyncio.Task[None]],
    slots: int,
    idle_seconds: float,
) -> None:
    """Fill free slots with claimed work until ``stop``; then finish the work in hand."""
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            await fill()
            if len(in_hand) >= slots:
                await asyncio.wait({*in_hand, stopping}, return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.wait([stopping], timeout=idle_seconds)
        if in_hand:
            await asyncio.wait(in_hand)
    finally:
        for task in (*in_hand, stopping):
            task.cancel()
        await asyncio.gather(*in_hand, stopping, return_exceptions=True)
