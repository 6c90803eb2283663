"""News for a list of sources: from the shared cache, or fetched once for everyone.

However many chats and replicas ask for a source at once, one upstream request is made
per cache window: in a process, callers share one task; across replicas, a lock in
Redis lets one fetch while the others wait for its result in the cache.

A request reads all its sources' cache entries in one round trip, then fetches only the
missing or stale ones, on the sources' own thread pool (see sources.download) and
within ``NEWSBOT_FETCH_TIMEOUT`` each: a chat's slow sources delay only that chat's
reply, and only that long. The cache keeps a source's whole item list (up to 100, for
filters); a request gets the first ``NEWSBOT_ITEMS_PER_SOURCE`` of them.

What to fetch a source with is the fetcher of its kind (sources.fetcher): News never
asks which kind a source is, and maps every fetcher's failure to a reason in one place.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Mapping, Sequence

from newsbot import filters, keys, source_health
from newsbot.config import Settings
from newsbot.errors import SourceError
from newsbot.metrics import CACHE_HITS, UPSTREAM_FETCHES
from newsbot.models import Source, SourceNews
from newsbot.sources.discovery import WebPage
from newsbot.sources.download import GRACE_SECONDS, FetchPool, Validators
from newsbot.sources.fetcher import MAX_ITEMS, Fetched, Fetcher, fetch_seconds
from newsbot.sources.guard import Guard
from newsbot.sources.kinds import default_fetchers
from newsbot.store import CachedNews, Store
from newsbot.store import feed_digest as key_hash

logger = logging.getLogger(__name__)
# How often a replica waiting for another's fetch looks at the cache.
WAIT_POLL_SECONDS = 0.05


def source_id(source: Source) -> str:
    """The hash that names a source in its Redis keys: cache entry, fetch lock, health."""
    return key_hash(source.key)


# The old name, for the modules outside news.py that still import it.


class News:
    """Fetches sources through the shared cache."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        guard: Guard | None = None,
        pool: FetchPool | None = None,
        *,
        fetchers: Mapping[str, Fetcher] | None = None,
    ) -> None:
        """Fetch through ``fetchers`` (by source kind; default: kinds.default_fetchers).

        A guard or fetchers given are the caller's to close; those built here are closed
        by ``close``, as is the pool.
        """
        self.settings = settings
        self.store = store
        self._own_guard = guard is None
        self.guard = guard or Guard(settings.allow_private_urls)
        self.pool = pool or FetchPool()
        self.fetch_seconds = fetch_seconds(settings)
        self._own_fetchers = fetchers is None
        self.fetchers: Mapping[str, Fetcher] = (
            default_fetchers(settings, self.guard, self.fetch_seconds)
            if fetchers is None
            else fetchers
        )
        self.owner = uuid.uuid4().hex
        self._inflight: dict[str, asyncio.Task[CachedNews]] = {}

    def close(self) -> None:
        self.pool.close()
        if self._own_fetchers:
            for fetcher in self.fetchers.values():
                fetcher.close()
        if self._own_guard:
            self.guard.close()

    async def get(self, sources: Sequence[Source], limit: int | None = None) -> list[SourceNews]:
        """News for every source, in order; a failing source carries its reason.

        Each source gives at most ``limit`` items (default NEWSBOT_ITEMS_PER_SOURCE).
        """
        limit = self.settings.items_per_source if limit is None else limit
        entries = await self.entries(sources)
        return [
            _news(source, entry, limit) for source, entry in zip(sources, entries, strict=False)
        ]

    async def for_chat(self, chat_id: int, sources: Sequence[Source]) -> list[SourceNews]:
        """A chat's news: each source's whole list through the chat's filters, then cut.

        The one place filters apply, so /fetch and digests cannot disagree.
        """
        # The cache holds up to MAX_ITEMS a source: filters pick from all of them.
        news = await self.get(sources, limit=max(MAX_ITEMS, self.settings.items_per_source))
        chat_rules = await self.store.get_filters(chat_id)
        return filters.apply(news, chat_rules, self.settings.items_per_source)

    async def entries(self, sources: Sequence[Source]) -> list[CachedNews]:
        """Each source's cache entry, fetched once for everyone if missing or stale.

        What /source and /add look at: a web page's discovered feed, a feed's new home.
        """
        sids = [source_id(source) for source in sources]
        asked = time.time()
        cached = await self.store.get_cached_many(sids)
        return list(
            await asyncio.gather(
                *(
                    self._entry(source, sid, entry, asked)
                    for source, sid, entry in zip(sources, sids, cached, strict=False)
                )
            )
        )

    async def get_one(self, source: Source) -> SourceNews:
        """News for one source, cached or freshly fetched."""
        (news,) = await self.get([source])
        return news

    async def _entry(
        self, source: Source, sid: str, cached: CachedNews | None, asked: float
    ) -> CachedNews:
        """A source's cache entry if it is fresh, else the one fetch under way for it."""
        if cached is not None and self._fresh(cached, asked):
            CACHE_HITS.inc()
            return cached
        task = self._inflight.get(sid)
        if task is None:
            task = asyncio.create_task(self._refresh(source, sid, cached, asked))
            self._inflight[sid] = task
            task.add_done_callback(lambda _: self._inflight.pop(sid, None))
        return await asyncio.shield(task)

    def _fresh(self, cached: CachedNews, now: float) -> bool:
        ttl = self.settings.cache_ttl
        if cached.error is not None:
            # A failure answers for a while, the longer the more often the source failed.
            ttl = source_health.retry_after(cached.failures, ttl)
        return now < cached.fetched_at + ttl

    async def _refresh(
        self, source: Source, sid: str, cached: CachedNews | None, asked: float
    ) -> CachedNews:
        """Fetch a source once for everyone who asked at ``asked`` or later."""
        # Another replica's fetch ends at its deadline: waiting longer is pointless.
        wait = min(keys.FETCH_LOCK_SECONDS, self.fetch_seconds + 2 * GRACE_SECONDS)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if await self.store.lock_fetch(sid, self.owner):
                try:
                    # Another replica may have stored a fetch between our look at the
                    # cache and taking the lock: that one is news enough.
                    latest = await self.store.get_cached(sid)
                    if latest is not None and self._answers(latest, asked):
                        CACHE_HITS.inc()
                        return latest
                    fresh = await self._fetch(source, latest or cached)
                    return await self._store(source, sid, latest or cached, fresh)
                finally:
                    await self.store.unlock_fetch(sid, self.owner)
            # Another replica is fetching this source: wait for what it stores.
            await asyncio.sleep(WAIT_POLL_SECONDS)
            latest = await self.store.get_cached(sid)
            if latest is not None and self._answers(latest, asked):
                CACHE_HITS.inc()
                return latest
        return CachedNews(fetched_at=time.time(), error="timed out")

    async def _store(
        self, source: Source, sid: str, previous: CachedNews | None, fetched: CachedNews
    ) -> CachedNews:
        """Store a fetch with the source's failure streak; queue the notice of a transition.

        Called under the fetch lock: one replica sees each transition.
        """
        entry, transition = source_health.follow(
            previous, fetched, self.settings.dead_source_after
        )
        await self.store.put_cached(sid, entry)
        notice = None
        if transition is not None:
            # A transition is named by the streak it ends or makes dead: its start.
            streak = entry if transition == source_health.DEAD else previous
            since = (streak.failing_since if streak else None) or entry.fetched_at
            notice = source_health.notice_id(sid, transition, since)
            logger.info("source %s is %s (failing since %s)", source.key, transition, since)
        if entry.error is not None or (previous is not None and previous.error is not None):
            # A source that was and is fine costs no write here.
            await self.store.note_source_health(sid, source.key, entry, transition, notice)
        return entry

    def _answers(self, cached: CachedNews, asked: float) -> bool:
        """Tell whether a cache entry answers a request made at ``asked``."""
        return cached.fetched_at >= asked or self._fresh(cached, time.time())

    async def _fetch(self, source: Source, cached: CachedNews | None) -> CachedNews:
        """Fetch a source upstream on the pool, within the fetch timeout.

        Reuses the cache's items on a 304; every failure, whatever raised it, becomes
        the source's error here (see ``failure``).
        """
        expires = time.monotonic() + self.fetch_seconds
        validators = None
        if cached is not None and cached.error is None:
            validators = Validators(cached.etag, cached.last_modified)
        try:
            fetcher = self.fetchers[source.kind]
            host, _ = fetcher.address(source)
            # The name first, on the event loop: no download thread waits for DNS, so
            # dead names cannot take the pool. The download then finds it resolved.
            await fetcher.resolve(source, expires)
            fetched = await self.pool.run(
                host, expires, functools.partial(_download, fetcher, source, validators, expires)
            )
        except Exception as error:  # one broken source must not break the others
            return failure(source, error)
        items = fetched.items
        if items is None:  # 304 Not Modified
            items = cached.items if cached is not None else ()
        fresh = CachedNews(
            fetched_at=time.time(),
            items=items,
            etag=fetched.validators.etag if fetched.validators else None,
            last_modified=fetched.validators.last_modified if fetched.validators else None,
            moved_to=fetched.moved_to,
        )
        if fresh.moved_to is not None:
            # Once per fetch, not per chat: chats follow it when next read.
            await self.store.record_move(source.key, fresh.moved_to)
        return fresh


def _download(
    fetcher: Fetcher, source: Source, validators: Validators | None, expires: float
) -> Fetched:
    """Fetch a source upstream (blocking, on the pool): its whole list, for filters."""
    UPSTREAM_FETCHES.labels(kind=source.kind).inc()
    return fetcher.fetch(source, MAX_ITEMS, validators, expires)


def failure(source: Source, error: Exception) -> CachedNews:
    """What a failed fetch leaves in the cache: the one mapping of errors to reasons.

    A web page carries the feed it names; a SourceError its reason (no answer, no pool
    slot in time, closing down, a refusal of the guard, a bad feed); anything else is a
    bug, logged with its traceback, and the chat reads "could not be read".
    """
    if isinstance(error, WebPage):
        return CachedNews(
            fetched_at=time.time(),
            error=str(error),
            discovered=error.feeds[0] if error.feeds else None,
        )
    if isinstance(error, SourceError):
        return CachedNews(fetched_at=time.time(), error=str(error))
    logger.error("fetching %s failed", source.key, exc_info=error)
    return CachedNews(fetched_at=time.time(), error="could not be read")


def _news(source: Source, cached: CachedNews, limit: int) -> SourceNews:
    return SourceNews(source=source, items=cached.items[:limit], error=cached.error)
