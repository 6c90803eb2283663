"""Source notices: telling each chat once that one of its sources died, or came back.

The replica that fetched a source and saw it become dead (or a dead one answer) queues
one notice in Redis (``Store.note_source_health``). Every replica runs this loop: it
claims queued notices like digests (one replica takes each; if it dies, another takes
the notice after the claim), sends it to each chat that uses the source (the index
source -> chats) and marks each chat told, so a notice taken over part-way reaches only
the chats it had not reached. The loop also sets the ``newsbot_failing_sources`` gauge.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import OutOfMemoryError
from telegram import Bot

from newsbot import keys, source_health
from newsbot.metrics import FAILING_SOURCES, SOURCE_NOTICES
from newsbot.sender import send_messages
from newsbot.store import Store

logger = logging.getLogger(__name__)

# How often a replica looks for notices to send; a notice is about a day-long outage,
# so a few seconds late is on time.
EVERY_SECONDS = 5.0
# Notices one replica claims at once.
BATCH = 16


class SourceNotices:
    """Sends the queued dead/recovered notices; timings are parameters for tests."""

    def __init__(
        self,
        store: Store,
        bot: Bot,
        *,
        every: float = EVERY_SECONDS,
        claim_seconds: float = keys.DIGEST_CLAIM_SECONDS,
    ) -> None:
        self.store = store
        self.bot = bot
        self.every = every
        self.claim_seconds = claim_seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Send notices until ``stop`` is set."""
        try:
            built = await self.store.build_source_index()
            if built:
                logger.info("indexed the sources of %s chats for source notices", built)
        except Exception:
            # Only chats that never change their sources go untold; the loop goes on.
            logger.exception("indexing the chats' sources failed")
        while not stop.is_set():
            try:
                await self.run_once()
            except OutOfMemoryError:
                pass  # Redis is full: said once by the readiness watch (service.Readiness)
            except Exception:
                # A claimed notice comes back after its claim; the next round goes on.
                logger.exception("sending source notices failed")
            try:
                await asyncio.wait_for(stop.wait(), self.every)
            except TimeoutError:
                pass  # the next round

    async def run_once(self, now: float | None = None) -> int:
        """Claim the notices due, send each to its chats; return how many were claimed."""
        now = time.time() if now is None else now
        FAILING_SOURCES.set(await self.store.count_failing(now))
        notices = await self.store.claim_source_notices(now, BATCH, self.claim_seconds)
        for notice in notices:
            await self.deliver(notice)
        return len(notices)

    async def deliver(self, notice: str) -> None:
        """Send one notice to every chat using its source that was not sent it yet."""
        data = await self.store.get_source_notice(notice)
        if not data:
            await self.store.done_source_notice(notice)  # expired: stale news
            return
        key, kind = data["key"], data["kind"]
        told = await self.store.told_of_notice(notice)
        chats = [chat for chat in await self.store.chats_using(key) if chat not in told]
        sources = await self.store.sources_of(chats)
        for chat_id in chats:
            # The index is kept in step with the chat's list; the list has the label.
            label = next((s.label for s in sources[chat_id] if s.key == key), None)
            if label is None:
                await self.store.unindex_chat(key, chat_id)  # the index was behind
                continue
            if await self.store.is_stopped(chat_id):
                continue  # asked for silence
            if kind == source_health.DEAD:
                zone = await self.store.get_zone(chat_id)
                text = source_health.dead_notice(
                    label, data.get("reason", ""), float(data["since"]), zone
                )
            else:
                text = source_health.recovered_notice(label)
            # An error here leaves the notice claimed: it comes back for the chats left.
            await send_messages(self.bot, self.store, chat_id, [text])
            await self.store.mark_told_of_notice(notice, chat_id)
            SOURCE_NOTICES.labels(kind=kind).inc()
        await self.store.done_source_notice(notice)
