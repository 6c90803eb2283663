"""Instant alerts: each new item of a watched source, sent to each watching chat once.

``/alert SOURCE...`` records the items a source has now (through the shared cache) as
known to the chat, so nothing already there is sent. The watcher checks each watched
source once per ``NEWSBOT_CACHE_TTL``: sources sit in a sorted set by next-check time,
claimed by one replica at a time (the digests' claim script), each at its own offset in
the window so checks are spread over it, not made in one burst. A check reads the
source through ``News`` (one upstream fetch per window for every chat and replica) and,
per watching chat, sends the items it does not know yet: each its own message, more than
3 at once as one. The chat's filters apply (``filters.apply``, as for /fetch and
digests), an article the chat was already sent from another source is not announced (the
seen history, by article key), a stopped chat gets nothing, and in quiet hours the
messages are held (``held``).

Exactly once: per (chat, source) the hashes of the items the chat is up to date with are
stored after its delivery; the send goes under a scope named after that state, so a
retry after a crash mid-send (the claim runs out, another replica checks again) finds the
parts already sent and sends only the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from redis.exceptions import OutOfMemoryError
from telegram import Bot

from newsbot import filters, keys, render
from newsbot.cluster.ratelimit import SendDeferred
from newsbot.config import Settings
from newsbot.held import hold_if_quiet
from newsbot.merge import item_key
from newsbot.models import Item, Source, SourceNews
from newsbot.news import News, source_id
from newsbot.sender import send_messages
from newsbot.slots import run_in_slots
from newsbot.sources.parsing import parse_sources
from newsbot.sources.rss import MAX_ITEMS
from newsbot.store import Store, alert_member

logger = logging.getLogger(__name__)

# Sources one replica checks at once; each delivers to its chats CHATS_AT_ONCE at a time.
# Sending is paced by the shared rate limiter, so these only keep it busy.
ALERT_SLOTS = 16
CHATS_AT_ONCE = 32
# How long to wait before looking again when no source is due.
IDLE_SECONDS = 1.0
# The shortest window: with NEWSBOT_CACHE_TTL=0 a source is still checked only this often.
MIN_WINDOW_SECONDS = 1.0
# How long a delivery waits for another source's delivery to the same chat, and how
# often it looks; past that the chat gets it next window.
CHAT_WAIT_SECONDS = 10.0
CHAT_POLL_SECONDS = 0.05
# A check comes this long after the source's cache entry went stale, so it fetches anew
# (checked at its slot, an entry fetched a moment after the last slot is still fresh).
STALE_MARGIN_SECONDS = 0.05
# More new items of one source than this come as one message.
COALESCE_OVER = 3

GuardSources = Callable[[Sequence[Source]], Awaitable[tuple[list[Source], list[tuple[str, str]]]]]


# --- pure parts ----------------------------------------------------------------------


def window(cache_ttl: float) -> float:
    """How often a watched source is checked."""
    return max(float(cache_ttl), MIN_WINDOW_SECONDS)


def offset(digest: str, every: float) -> float:
    """A source's own place in the window, so checks are spread over it."""
    return int(digest[:8], 16) / 2**32 * every


def next_check(after: float, every: float, digest: str) -> float:
    """The first time after ``after`` at the source's offset in the window."""
    start = offset(digest, every)
    return start + (math.floor((after - start) / every) + 1) * every


def new_items(items: Sequence[Item], known: set[str]) -> list[Item]:
    """The items not known yet, oldest first (feeds list the newest first)."""
    return [item for item in reversed(items) if alert_member(item.id) not in known]


def render_alerts(source: Source, items: Sequence[Item]) -> list[str]:
    """One message per item; more than COALESCE_OVER come as one message."""
    if len(items) > COALESCE_OVER:
        return render.render_news(
            [SourceNews(source, tuple(items))], heading=f"{len(items)} new items"
        )
    return [
        message for item in items for message in render.render_news([SourceNews(source, (item,))])
    ]


def alert_scope(chat_id: int, digest: str, known: set[str]) -> str:
    """The delivery scope of one batch: the chat, the source and the state it starts from."""
    state = hashlib.sha1(",".join(sorted(known)).encode(), usedforsecurity=False).hexdigest()[:16]
    return f"alert:{chat_id}:{digest[:16]}:{state}"


# --- the command ---------------------------------------------------------------------


async def alert_only_count(store: Store, chat_id: int, source_keys: Sequence[str]) -> int:
    """How many of the chat's alert sources are not among ``source_keys`` (the limit)."""
    alerts = await store.get_alerts(chat_id)
    return len({source.key for source, _ in alerts.values()} - set(source_keys))


async def alert_command(
    settings: Settings,
    store: Store,
    news: News,
    guard_sources: GuardSources,
    chat_id: int,
    thread_id: int | None,
    text: str,
) -> tuple[str, list[tuple[str, str]]]:
    """Answer /alert [off] SOURCE...: the reply's head and the refused words."""
    alerts = await store.get_alerts(chat_id)
    words = text.split(maxsplit=1)
    if not words:
        return _listing(alerts), []
    if words[0].lower() == "off":
        gone, refused = parse_sources(words[1] if len(words) > 1 else "")
        digests = [source_id(source) for source in gone]
        refused += [
            (source.label, "no alert on it")
            for source, digest in zip(gone, digests, strict=False)
            if digest not in alerts
        ]
        await store.remove_alerts(chat_id, [d for d in digests if d in alerts])
        for digest in digests:
            alerts.pop(digest, None)
        return _listing(alerts), refused
    sources, refused = parse_sources(text)
    sources = [s for s in {s.key: s for s in sources}.values() if source_id(s) not in alerts]
    watched = {source.key for source in await store.get_sources(chat_id)}
    watched |= {source.key for source, _ in alerts.values()}
    total = len(watched | {source.key for source in sources})
    if total > settings.max_sources:
        refused.append(
            (
                "",
                (
                    f"at most {settings.max_sources} sources and alerts together; "
                    f"you have {len(watched)}"
                ),
            )
        )
        sources = []
    sources, more_refused = await guard_sources(sources)
    refused += more_refused
    # What is there now is not news: read through the shared cache, it becomes known.
    now_there = await news.get(sources, limit=MAX_ITEMS)
    every = window(settings.cache_ttl)
    digests = [source_id(source) for source in sources]
    known: dict[str, list[str] | None] = {
        digest: None if block.error is not None else [item.id for item in block.items]
        for digest, block in zip(digests, now_there, strict=False)
    }
    now = time.time()
    await store.add_alerts(
        chat_id,
        list(zip(digests, sources, strict=False)),
        thread_id,
        known,
        {digest: next_check(now, every, digest) for digest in digests},
    )
    for digest, source in zip(digests, sources, strict=False):
        alerts[digest] = (source, thread_id)
    head = _listing(alerts)
    if sources:
        head += "\nNew items come here as they appear."
    return head, refused


def _listing(alerts: dict[str, tuple[Source, int | None]]) -> str:
    if not alerts:
        return "No alerts. For example: /alert r/python sends each new post as it appears."
    return "Alerts on:\n" + render.bullet_list(source.label for source, _ in alerts.values())


# --- the watcher ---------------------------------------------------------------------


class Alerts:
    """Checks watched sources and sends what is new; timings are parameters for tests."""

    def __init__(
        self,
        store: Store,
        news: News,
        bot: Bot,
        *,
        slots: int = ALERT_SLOTS,
        chats_at_once: int = CHATS_AT_ONCE,
        idle_seconds: float = IDLE_SECONDS,
        claim_seconds: float = keys.ALERT_CLAIM_SECONDS,
    ) -> None:
        self.store = store
        self.news = news
        self.bot = bot
        self.slots = slots
        self.chats_at_once = chats_at_once
        self.idle_seconds = idle_seconds
        self.claim_seconds = claim_seconds
        self.every = window(news.settings.cache_ttl)
        self.owner = uuid.uuid4().hex
        self._in_hand: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Check due sources until ``stop`` is set; the checks in hand are finished.

        Cut off, a check in hand comes back when its claim runs out; what it delivered
        is recorded per chat and not sent again.
        """
        await run_in_slots(stop, self._fill, self._in_hand, self.slots, self.idle_seconds)

    async def _fill(self) -> None:
        free = self.slots - len(self._in_hand)
        if free <= 0:
            return
        try:
            due = await self.store.claim_alert_checks(time.time(), free, self.claim_seconds)
        except OutOfMemoryError:
            return  # Redis is full: said once by the readiness watch (service.Readiness)
        except Exception:
            # Redis away for a moment: claimed checks come back after their claim.
            logger.exception("claiming alert checks failed")
            return
        for digest in due:
            self._start(self.check_source(digest), f"alert {digest[:8]}")

    def _start(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._in_hand.add(task)
        task.add_done_callback(self._in_hand.discard)

    async def run_once(self, now: float | None = None) -> int:
        """Claim the sources due a check at ``now`` (up to ``slots``), check them; how many."""
        now = time.time() if now is None else now
        due = await self.store.claim_alert_checks(now, self.slots, self.claim_seconds)
        await asyncio.gather(*(self.check_source(digest, now) for digest in due))
        return len(due)

    async def check_source(self, digest: str, now: float | None = None) -> None:
        """Read one watched source and bring each watching chat up to date; reschedule."""
        try:
            source, chats = await self.store.alert_source(digest)
            if (source is None or not chats) and await self.store.drop_alert_source(digest):
                return
            if source is not None and chats:
                (block,) = await self.news.get([source], limit=MAX_ITEMS)
                if block.error is None:
                    await self._deliver_all(digest, block, chats, now)
            # The next check at the source's offset in the window, but not before its
            # cache entry is stale: then each check makes the window's one fetch.
            after = time.time() if now is None else now
            due = next_check(after, self.every, digest)
            cached = await self.store.get_cached(digest)
            if cached is not None and cached.error is None:
                due = max(
                    due, cached.fetched_at + self.news.settings.cache_ttl + STALE_MARGIN_SECONDS
                )
            await self.store.reschedule_alert_check(digest, due)
        except Exception:
            # Not rescheduled: the claim runs out and the source is checked again.
            logger.exception("checking alert source %s failed", digest[:8])

    async def _deliver_all(
        self, digest: str, block: SourceNews, chats: Sequence[int], now: float | None
    ) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for chat_id in chats:
            queue.put_nowait(chat_id)
        touched = [time.monotonic()]

        async def worker() -> None:
            while not queue.empty():
                chat_id = queue.get_nowait()
                try:
                    await self.deliver(chat_id, digest, block, now)
                except SendDeferred as deferred:
                    # A long wait for Telegram's limit: this chat gets it next window.
                    logger.info("alert for chat %s deferred: %s", chat_id, deferred)
                except Exception:
                    # One chat's failure must not hold the others; it is tried next window.
                    logger.exception("alert for chat %s failed", chat_id)
                if time.monotonic() - touched[0] > self.claim_seconds / 3:
                    # A big fan-out outlasts the claim: keep it, or another replica
                    # would deliver to the same chats at once.
                    touched[0] = time.monotonic()
                    await self.store.reschedule_alert_check(
                        digest, time.time() + self.claim_seconds
                    )

        await asyncio.gather(*(worker() for _ in range(min(self.chats_at_once, len(chats)))))

    async def deliver(
        self, chat_id: int, digest: str, block: SourceNews, now: float | None = None
    ) -> None:
        """Send (or hold) one chat's new items of a source, then record them as known.

        One delivery to a chat at a time, across sources and replicas: the seen history
        read and written around the send is the chat's, not the source's.
        """
        deadline = time.monotonic() + CHAT_WAIT_SECONDS
        while not await self.store.lock_alert_chat(chat_id, self.owner):
            if time.monotonic() > deadline:
                logger.info("alert for chat %s waits for the next window", chat_id)
                return
            await asyncio.sleep(CHAT_POLL_SECONDS)
        try:
            await self._deliver(chat_id, digest, block, now)
        finally:
            await self.store.unlock_alert_chat(chat_id, self.owner)

    async def _deliver(
        self, chat_id: int, digest: str, block: SourceNews, now: float | None
    ) -> None:
        watching, thread_id, known = await self.store.alert_state(chat_id, digest)
        if not watching:
            return
        current = [item.id for item in block.items]
        if known is None:
            # The source could not be read at /alert time: what is there now is old.
            await self.store.set_alert_known(chat_id, digest, current)
            return
        fresh = new_items(block.items, known)
        if not fresh:
            return
        if not await self.store.is_stopped(chat_id):
            (shown,) = filters.apply(
                [SourceNews(block.source, tuple(fresh))],
                await self.store.get_filters(chat_id),
                len(fresh),
            )
            article = {item.id: item_key(block.source, item) for item in shown.items}
            unseen = await self.store.unseen(chat_id, list(article.values()))
            items = [item for item in shown.items if article[item.id] in unseen]
            if items:
                messages = render_alerts(block.source, items)
                held = await hold_if_quiet(self.store, chat_id, messages, now)
                if not held and not await send_messages(
                    self.bot,
                    self.store,
                    chat_id,
                    messages,
                    scope=alert_scope(chat_id, digest, known),
                    thread_id=thread_id,
                ):
                    return  # the chat is gone, its alerts with it
                await self.store.mark_seen(chat_id, [article[item.id] for item in items])
        # Stopped chats too: silence means what came meanwhile is not sent after /start.
        await self.store.set_alert_known(chat_id, digest, current)
