"""Scheduled digests: each due digest is claimed by one replica, built and sent once.

A digest holds only items the chat has not been sent before (by /fetch or an earlier
digest); with nothing new, nothing is sent. Claiming moves the chat's due time a little
into the future, so if this replica dies mid-digest another one sends it after that.
"""

from __future__ import annotations

import asyncio
import logging
import time

from telegram import Bot

from newsbot import render, schedule
from newsbot.metrics import DIGESTS
from newsbot.models import SourceNews
from newsbot.news import News
from newsbot.sender import send_messages
from newsbot.store import Store, digest_scope

logger = logging.getLogger(__name__)

# Digests one replica builds at a time; sending is paced by the shared rate limiter.
CONCURRENCY = 16
IDLE_SECONDS = 1.0


def only_new(news: list[SourceNews], unseen: set[str]) -> list[SourceNews]:
    """Keep the unseen items of each source; drop sources with nothing new."""
    kept = []
    for block in news:
        items = tuple(item for item in block.items if item.id in unseen)
        if items:
            kept.append(SourceNews(block.source, items))
    return kept


class Digests:
    """Sends the digests that are due."""

    def __init__(self, store: Store, news: News, bot: Bot) -> None:
        self.store = store
        self.news = news
        self.bot = bot

    async def run(self, stop: asyncio.Event) -> None:
        """Send due digests until ``stop`` is set; the digests in hand are finished."""
        while not stop.is_set():
            try:
                sent = await self.run_once()
            except Exception:
                # Redis away for a moment: claimed digests come back after their claim.
                logger.exception("sending digests failed")
                sent = 0
            if not sent:
                try:
                    await asyncio.wait_for(stop.wait(), IDLE_SECONDS)
                except TimeoutError:
                    pass  # nothing was due; look again

    async def run_once(self, now: float | None = None) -> int:
        """Claim the digests due now and send them; return how many were claimed."""
        chats = await self.store.claim_due(now or time.time(), CONCURRENCY)
        await asyncio.gather(*(self.send_digest(chat_id) for chat_id in chats))
        return len(chats)

    async def send_digest(self, chat_id: int) -> None:
        """Build and send one chat's digest, then schedule the next."""
        try:
            interval = await self.store.get_interval(chat_id)
            if interval is None:
                return  # unsubscribed while due
            news = await self.news.get(await self.store.get_sources(chat_id))
            unseen = await self.store.unseen(chat_id, [i.id for n in news for i in n.items])
            fresh = only_new(news, unseen)
            if fresh:
                messages = render.render_news(fresh, heading="Your digest")
                if await send_messages(self.bot, self.store, chat_id, messages,
                                       scope=digest_scope(chat_id)):
                    await self.store.mark_seen(chat_id, unseen)
                DIGESTS.labels(outcome="sent").inc()
            else:
                DIGESTS.labels(outcome="nothing new").inc()
            await self.store.reschedule(chat_id, schedule.next_due(time.time(), interval))
        except Exception:
            # Not rescheduled: the claim runs out and the digest is tried again.
            DIGESTS.labels(outcome="failed").inc()
            logger.exception("digest for chat %s failed", chat_id)
