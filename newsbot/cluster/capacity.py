"""A consumer's capacity: handlers that work count, handlers that only wait do not.

A replica runs at most so many handlers at once. A handler waiting for its chat's
rate-limit slot or out a ``retry_after`` uses nothing but time, so while it waits it
gives its share to other chats (``waiting``), and a replica that stops may interrupt it
there: the update stays pending and is answered by the replica that claims it. The
step that must not be cut off half-way, the HTTP call itself, is marked ``committing``;
once one has completed, the handler is not interrupted at all (it would repeat it).

The handler's slot travels in a context variable, so the rate limiter deep below a
handler (python-telegram-bot's seam, see app.WaitingRateLimiter) can mark its waits
without being handed anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass
class Slot:
    """One handler at work: whether it holds a share now, and may be interrupted now."""

    capacity: Capacity
    task: asyncio.Task[object]
    holding: bool = False
    # True until it starts working (it waits for its chat's previous update, or for a
    # share), and again inside ``waiting``.
    interruptible: bool = True
    # Inside ``committing`` now; and whether a committing step has completed. After one
    # has (a part of the reply went out), the handler is never interrupted: handled
    # again elsewhere, it would send that part twice.
    committing: bool = False
    committed: bool = False

    async def start_working(self) -> None:
        """Wait for a share of the capacity; from now on a stop lets it finish."""
        await self.capacity.semaphore.acquire()
        self.holding = True
        self.interruptible = False


_current: contextvars.ContextVar[Slot | None] = contextvars.ContextVar(
    "newsbot_slot", default=None
)


class Capacity:
    """At most ``limit`` handlers working at once; waiting ones do not count."""

    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self._slots: dict[str, Slot] = {}

    @contextlib.asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[Slot]:
        """A slot for the handler of ``key`` in the current task; its share freed after."""
        task = asyncio.current_task()
        assert task is not None
        slot = Slot(self, task)
        self._slots[key] = slot
        token = _current.set(slot)
        try:
            yield slot
        finally:
            _current.reset(token)
            self._slots.pop(key, None)
            if slot.holding:
                self.semaphore.release()

    def interrupt_waiting(self) -> int:
        """Cancel the handlers that only wait now; return how many."""
        waiting = [slot for slot in self._slots.values() if slot.interruptible]
        for slot in waiting:
            slot.task.cancel()
        return len(waiting)


@contextlib.asynccontextmanager
async def waiting() -> AsyncIterator[None]:
    """Mark a handler as only waiting: others may work meanwhile; a stop may interrupt it.

    Wrap a wait that changes nothing (a rate-limit slot, a ``retry_after``). Outside a
    consumer's handler, or inside ``committing``, it does nothing; after a committing
    step completed it frees the share but cannot be interrupted.
    """
    slot = _current.get()
    if slot is None or slot.committing:
        yield
        return
    was_interruptible, was_holding = slot.interruptible, slot.holding
    if was_holding:
        slot.capacity.semaphore.release()
        slot.holding = False
    slot.interruptible = not slot.committed
    try:
        yield
    finally:
        slot.interruptible = was_interruptible and not slot.committed
        if was_holding:
            # Cancelled while waiting for the share again: holding stays False, so the
            # slot does not give back a share it does not have.
            await slot.capacity.semaphore.acquire()
            slot.holding = True


@contextlib.asynccontextmanager
async def committing() -> AsyncIterator[None]:
    """Mark a step that must not be cut off half-way (a send), even inside ``waiting``.

    Once it has completed, the handler is not interrupted any more.
    """
    slot = _current.get()
    if slot is None or slot.committing:
        yield
        return
    was_interruptible = slot.interruptible
    slot.committing, slot.interruptible = True, False
    try:
        yield
        slot.committed = True
    finally:
        slot.committing = False
        slot.interruptible = was_interruptible and not slot.committed
