"""Scheduled digests: each due digest is claimed by one replica, built and sent once.

A digest holds only items the chat has not been sent before (by /fetch or an earlier
digest); with nothing new, nothing is sent. Claiming moves the chat's due time a little
into the future, so if this replica dies mid-digest another one sends it after that.

Digests flow rather than go in batches: a bounded pool of ``slots`` digests is kept
full, a new one claimed as soon as one finishes, so a digest waiting for a slow feed
holds one slot, not everyone. Ahead of that, the sources of the digests due in the next
minutes are fetched through the shared cache (``News`` fetches each once), so when a
digest is due its news is already there and the fan-out runs at Telegram's send limit.

An article comes once however many of the chat's sources carry it (``merge``), and counts
as seen by its canonical key, so a second source does not bring it back tomorrow. A digest
on a local schedule is next due at the chat's next local time (``schedule.next_run``); one
due in the chat's quiet hours is held (``held``), and the held batches whose window ended
are claimed and delivered here too, from the same pool of slots.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from redis.exceptions import OutOfMemoryError
from telegram import Bot

from newsbot import keys, render, schedule, source_health
from newsbot.held import deliver_held, hold_if_quiet
from newsbot.merge import MergedNews, drop_seen, merge_news
from newsbot.metrics import DIGESTS, DIGESTS_IN_HAND
from newsbot.models import Source, SourceNews
from newsbot.news import News
from newsbot.sender import send_messages
from newsbot.slots import run_in_slots
from newsbot.store import Store, digest_scope

logger = logging.getLogger(__name__)

# Digests one replica builds and sends at once. Sending is paced by the shared rate
# limiter (about 30 a second), so a slot is mostly spent waiting for its turn: 64 keep
# the limit busy with a second or two of waiting each, and with a few held by slow feeds.
DIGEST_SLOTS = 64
# How long to wait before looking again when nothing is due.
IDLE_SECONDS = 1.0
# Sources of the digests due this far ahead are fetched before they are due (at most
# half the cache TTL, so what was fetched is still fresh when the digest is built).
PREFETCH_SECONDS = 120.0
PREFETCH_EVERY_SECONDS = 15.0
# Sources fetched ahead at once, and due chats looked at per round: prefetching takes a
# share of the download pool, never all of it.
PREFETCH_SLOTS = 16
PREFETCH_CHATS = 5000


def only_new(news: list[SourceNews], unseen: set[str]) -> list[SourceNews]:
    """Keep the unseen items of each source; drop sources with nothing new."""
    kept = []
    for block in news:
        items = tuple(item for item in block.items if item.id in unseen)
        if items:
            kept.append(SourceNews(block.source, items))
    return kept


def fresh_entries(blocks: list[MergedNews], unseen: set[str]) -> list[MergedNews]:
    """Keep the articles not sent before; drop blocks with nothing new.

    An article was sent before if its key is not in ``unseen``, or the id of its item is
    not: marks made before articles counted by their key name items by id.
    """
    seen = {
        entry.key
        for block in blocks
        for entry in block.entries
        if entry.key not in unseen or entry.item.id not in unseen
    }
    return [block for block in drop_seen(blocks, seen) if block.entries]


def distinct_sources(chat_sources: dict[int, list[Source]]) -> list[Source]:
    """Every source of the given chats once, in the order the chats name them."""
    seen: dict[str, Source] = {}
    for sources in chat_sources.values():
        for source in sources:
            seen.setdefault(source.key, source)
    return list(seen.values())


class Digests:
    """Sends the digests that are due; timings and sizes are parameters for tests."""

    def __init__(
        self,
        store: Store,
        news: News,
        bot: Bot,
        *,
        slots: int = DIGEST_SLOTS,
        idle_seconds: float = IDLE_SECONDS,
        claim_seconds: float = keys.DIGEST_CLAIM_SECONDS,
        prefetch_seconds: float = PREFETCH_SECONDS,
        prefetch_every: float = PREFETCH_EVERY_SECONDS,
        prefetch_slots: int = PREFETCH_SLOTS,
    ) -> None:
        self.store = store
        self.news = news
        self.bot = bot
        self.slots = slots
        self.idle_seconds = idle_seconds
        self.claim_seconds = claim_seconds
        # Fetched ahead, a source must still be fresh when its digest is built.
        self.prefetch_seconds = min(prefetch_seconds, news.settings.cache_ttl / 2)
        self.prefetch_every = prefetch_every
        self.prefetch_slots = prefetch_slots
        self._in_hand: set[asyncio.Task[None]] = set()
        self._prefetched: dict[int, float] = {}  # chat id -> when fetched ahead

    async def run(self, stop: asyncio.Event) -> None:
        """Send due digests until ``stop`` is set; the digests in hand are finished.

        Cut off (or failed), the digests in hand stop too. Not rescheduled, each comes
        back when its claim runs out and is sent then, by whoever claims it.
        """
        prefetching = asyncio.create_task(self.prefetch(stop), name="digest prefetch")
        try:
            await run_in_slots(stop, self._fill, self._in_hand, self.slots, self.idle_seconds)
        finally:
            prefetching.cancel()
            await asyncio.gather(prefetching, return_exceptions=True)

    async def _fill(self) -> None:
        """Claim as many due digests as there are free slots, and start them."""
        free = self.slots - len(self._in_hand)
        if free <= 0:
            return
        try:
            chats: list[int] = await self.store.claim_due(time.time(), free, self.claim_seconds)
        except OutOfMemoryError:
            return  # Redis is full: said once by the readiness watch (service.Readiness)
        except Exception:
            # Redis away for a moment: claimed digests come back after their claim.
            logger.exception("claiming due digests failed")
            return
        for chat_id in chats:
            self._start(self.send_digest(chat_id), f"digest {chat_id}")
        free -= len(chats)
        if free <= 0:
            return  # full: held batches wait for the next free slot, as digests do
        try:
            # Quiet hours that ended: what they held goes out, from the same slots.
            ended = await self.store.claim_quiet_ends(time.time(), free, self.claim_seconds)
        except OutOfMemoryError:
            return  # as above: said once by the readiness watch
        except Exception:
            # Redis away for a moment: claimed batches come back after their claim.
            logger.exception("claiming held messages failed")
            return
        for chat_id in ended:
            self._start(deliver_held(self.bot, self.store, chat_id), f"held {chat_id}")

    def _start(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._in_hand.add(task)
        task.add_done_callback(self._done)
        DIGESTS_IN_HAND.set(len(self._in_hand))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_hand.discard(task)
        DIGESTS_IN_HAND.set(len(self._in_hand))

    async def run_once(self, now: float | None = None) -> int:
        """Claim the digests due now (up to ``slots``), send them; return how many.

        The batches of quiet hours that ended by ``now`` are delivered too (not counted).
        """
        chats = await self.store.claim_due(now or time.time(), self.slots, self.claim_seconds)
        ended = await self.store.claim_quiet_ends(
            now or time.time(), self.slots, self.claim_seconds
        )
        await asyncio.gather(
            *(self.send_digest(chat_id, now) for chat_id in chats),
            *(deliver_held(self.bot, self.store, chat_id, now) for chat_id in ended),
        )
        return len(chats)

    async def prefetch(self, stop: asyncio.Event) -> None:
        """Every little while, fetch the sources of digests due soon into the cache."""
        while not stop.is_set() and self.prefetch_seconds > 0:
            try:
                await self.prefetch_once()
            except OutOfMemoryError:
                pass  # Redis is full (said once by the readiness watch); a head start lost
            except Exception:
                # Only a head start is lost: each digest fetches what it needs itself.
                logger.exception("fetching the sources of due digests ahead failed")
            try:
                await asyncio.wait_for(stop.wait(), self.prefetch_every)
            except TimeoutError:
                pass  # the next round

    async def prefetch_once(self, now: float | None = None) -> int:
        """Fetch the sources of digests due within ``prefetch_seconds``; return how many."""
        now = now or time.time()
        # A chat prefetched less than a window ago is still fresh in the cache: skip it,
        # so a big fan-out does not read the same chats' sources every round.
        self._prefetched = {
            chat: at for chat, at in self._prefetched.items() if at > now - self.prefetch_seconds
        }
        due = await self.store.due_before(
            now + self.prefetch_seconds, PREFETCH_CHATS + len(self._prefetched)
        )
        chats = [chat for chat in due if chat not in self._prefetched][:PREFETCH_CHATS]
        if not chats:
            return 0
        sources = distinct_sources(await self.store.sources_of(chats))
        self._prefetched.update((chat, now) for chat in chats)
        queue: asyncio.Queue[Source] = asyncio.Queue()
        for source in sources:
            queue.put_nowait(source)

        async def worker() -> None:
            while not queue.empty():
                # A fresh cache entry costs one read; a stale one is fetched once,
                # shared with any digest or /fetch that asks meanwhile.
                await self.news.get_one(queue.get_nowait())

        workers = min(self.prefetch_slots, len(sources))
        await asyncio.gather(*(worker() for _ in range(workers)))
        return len(sources)

    async def send_digest(self, chat_id: int, now: float | None = None) -> None:
        """Build and send (or, in quiet hours, hold) one chat's digest; schedule the next.

        ``now`` is the clock's reading for tests; the real time without it.
        """
        try:
            plan = await self.store.get_schedule(chat_id)
            if plan is None:
                return  # unsubscribed while due
            news = await self.news.for_chat(chat_id, await self.store.get_sources(chat_id))
            merged = merge_news(news)
            entries = [entry for block in merged for entry in block.entries]
            unseen = await self.store.unseen(
                chat_id, [e.key for e in entries] + [e.item.id for e in entries]
            )
            fresh = fresh_entries(merged, unseen)
            if fresh:
                messages = render.render_merged(fresh, heading="Your digest")
                # Failing sources are named, not left out in silence.
                messages = source_health.with_failed_line(
                    messages, [block.source.label for block in news if block.error]
                )
                held = await hold_if_quiet(self.store, chat_id, messages, now)
                if held or await send_messages(
                    self.bot, self.store, chat_id, messages, scope=digest_scope(chat_id)
                ):
                    await self.store.mark_seen(
                        chat_id, [entry.key for block in fresh for entry in block.entries]
                    )
                DIGESTS.labels(outcome="held" if held else "sent").inc()
            else:
                DIGESTS.labels(outcome="nothing new").inc()
            zone = await self.store.get_zone(chat_id)
            after = time.time() if now is None else now
            await self.store.digest_done(chat_id, schedule.next_run(after, plan, zone))
        except Exception:
            # Not rescheduled: the claim runs out and the digest is tried again.
            DIGESTS.labels(outcome="failed").inc()
            logger.exception("digest for chat %s failed", chat_id)
