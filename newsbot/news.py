"""News for a list of sources: from the shared cache, or fetched once for everyone.

However many chats and replicas ask for a source at once, one upstream request is made
per cache window: in a process, callers share one task; across replicas, a lock in
Redis lets one fetch while the others wait for its result in the cache.

A request reads all its sources' cache entries in one round trip, then fetches only the
missing or stale ones, on the sources' own thread pool (see sources.download) and
within ``NEWSBOT_FETCH_TIMEOUT`` each: a chat's slow sources delay only that chat's
reply, and only that long. The cache keeps a source's whole item list (up to 100, for
filters); a request gets the first ``NEWSBOT_ITEMS_PER_SOURCE`` of them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Sequence
from urllib.parse import urlsplit

from newsbot import filters, keys, source_health
from newsbot.config import Settings
from newsbot.errors import SourceError
from newsbot.metrics import CACHE_HITS, UPSTREAM_FETCHES
from newsbot.models import Item, Source, SourceNews
from newsbot.sources.download import GRACE_SECONDS, Downloader, FetchPool, Validators
from newsbot.sources.guard import Guard
from newsbot.sources.reddit import Reddit
from newsbot.sources.rss import MAX_ITEMS, fetch_feed
from newsbot.store import CachedNews, Store, feed_digest

logger = logging.getLogger(__name__)
# How often a replica waiting for another's fetch looks at the cache.
WAIT_POLL_SECONDS = 0.05


def source_digest(source: Source) -> str:
    """The cache key part for a source."""
    return feed_digest(source.key)


class News:
    """Fetches sources through the shared cache."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        guard: Guard | None = None,
        pool: FetchPool | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self._own_guard = guard is None
        self.guard = guard or Guard(settings.allow_private_urls)
        self.pool = pool or FetchPool()
        # The lock must outlive the fetch it guards, or a second replica would fetch
        # the same source at once.
        self.fetch_seconds = min(
            settings.fetch_timeout, keys.FETCH_LOCK_SECONDS - 4 * GRACE_SECONDS
        )
        self.feeds = Downloader(self.guard, timeout=self.fetch_seconds)
        # Reddit resolves its (operator-chosen) name on a resolver of its own, so that
        # users' dead feed names never queue in front of it.
        self.reddit = Reddit(settings, Downloader(timeout=self.fetch_seconds))
        self.owner = uuid.uuid4().hex
        self._inflight: dict[str, asyncio.Task[CachedNews]] = {}

    def close(self) -> None:
        self.pool.close()
        self.feeds.close()
        self.reddit.downloader.close()
        if self._own_guard:
            self.guard.close()

    async def get(self, sources: Sequence[Source], limit: int | None = None) -> list[SourceNews]:
        """News for every source, in order; a failing source carries its reason.

        Each source gives at most ``limit`` items (default NEWSBOT_ITEMS_PER_SOURCE).
        """
        limit = self.settings.items_per_source if limit is None else limit
        digests = [source_digest(source) for source in sources]
        asked = time.time()
        cached = await self.store.get_cached_many(digests)
        entries = await asyncio.gather(
            *(
                self._entry(source, digest, entry, asked)
                for source, digest, entry in zip(sources, digests, cached, strict=False)
            )
        )
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

    async def get_one(self, source: Source) -> SourceNews:
        """News for one source, cached or freshly fetched."""
        (news,) = await self.get([source])
        return news

    async def _entry(
        self, source: Source, digest: str, cached: CachedNews | None, asked: float
    ) -> CachedNews:
        """A source's cache entry if it is fresh, else the one fetch under way for it."""
        if cached is not None and self._fresh(cached, asked):
            CACHE_HITS.inc()
            return cached
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.create_task(self._refresh(source, digest, cached, asked))
            self._inflight[digest] = task
            task.add_done_callback(lambda _: self._inflight.pop(digest, None))
        return await asyncio.shield(task)

    def _fresh(self, cached: CachedNews, now: float) -> bool:
        ttl = self.settings.cache_ttl
        if cached.error is not None:
            # A failure answers for a while, the longer the more often the source failed.
            ttl = source_health.retry_after(cached.failures, ttl)
        return now < cached.fetched_at + ttl

    async def _refresh(
        self, source: Source, digest: str, cached: CachedNews | None, asked: float
    ) -> CachedNews:
        """Fetch a source once for everyone who asked at ``asked`` or later."""
        # Another replica's fetch ends at its deadline: waiting longer is pointless.
        wait = min(keys.FETCH_LOCK_SECONDS, self.fetch_seconds + 2 * GRACE_SECONDS)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if await self.store.lock_fetch(digest, self.owner):
                try:
                    # Another replica may have stored a fetch between our look at the
                    # cache and taking the lock: that one is news enough.
                    latest = await self.store.get_cached(digest)
                    if latest is not None and self._answers(latest, asked):
                        CACHE_HITS.inc()
                        return latest
                    fresh = await self._fetch(source, latest or cached)
                    return await self._store(source, digest, latest or cached, fresh)
                finally:
                    await self.store.unlock_fetch(digest, self.owner)
            # Another replica is fetching this source: wait for what it stores.
            await asyncio.sleep(WAIT_POLL_SECONDS)
            latest = await self.store.get_cached(digest)
            if latest is not None and self._answers(latest, asked):
                CACHE_HITS.inc()
                return latest
        return CachedNews(fetched_at=time.time(), error="timed out")

    async def _store(
        self, source: Source, digest: str, previous: CachedNews | None, fetched: CachedNews
    ) -> CachedNews:
        """Store a fetch with the source's failure streak; queue the notice of a transition.

        Called under the fetch lock: one replica sees each transition.
        """
        entry, transition = source_health.follow(
            previous, fetched, self.settings.dead_source_after
        )
        await self.store.put_cached(digest, entry)
        notice = None
        if transition is not None:
            # A transition is named by the streak it ends or makes dead: its start.
            streak = entry if transition == source_health.DEAD else previous
            since = (streak.failing_since if streak else None) or entry.fetched_at
            notice = source_health.notice_id(digest, transition, since)
            logger.info("source %s is %s (failing since %s)", source.key, transition, since)
        if entry.error is not None or (previous is not None and previous.error is not None):
            # A source that was and is fine costs no write here.
            await self.store.note_source_health(digest, source.key, entry, transition, notice)
        return entry

    def _answers(self, cached: CachedNews, asked: float) -> bool:
        """Tell whether a cache entry answers a request made at ``asked``."""
        return cached.fetched_at >= asked or self._fresh(cached, time.time())

    async def _fetch(self, source: Source, cached: CachedNews | None) -> CachedNews:
        """Fetch a source upstream on the pool, within the fetch timeout."""
        expires = time.monotonic() + self.fetch_seconds
        url = self.settings.reddit_url if source.kind == "reddit" else source.key
        downloader = self.reddit.downloader if source.kind == "reddit" else self.feeds
        host, port = _address(url)
        try:
            # The name first, on the event loop: no download thread waits for DNS, so
            # dead names cannot take the pool. The download then finds it resolved.
            await downloader.resolver.resolve_async(host, port, expires - time.monotonic())
            return await self.pool.run(
                host, expires, functools.partial(self._download, source, cached, expires)
            )
        except SourceError as error:  # no answer, no slot in time, or closing down
            return CachedNews(fetched_at=time.time(), error=str(error))

    def _download(self, source: Source, cached: CachedNews | None, expires: float) -> CachedNews:
        """Fetch a source upstream (blocking), reusing the cache's items on a 304."""
        UPSTREAM_FETCHES.labels(kind=source.kind).inc()
        validators = None
        if cached is not None and cached.error is None:
            validators = Validators(cached.etag, cached.last_modified)
        items: list[Item] | None
        try:
            if source.kind == "reddit":
                items, validators = self.reddit.fetch(
                    source.key[2:], MAX_ITEMS, validators, expires
                )
            else:
                download, items = fetch_feed(
                    self.feeds, source.key, MAX_ITEMS, validators, expires
                )
                validators = download.validators
        except SourceError as error:
            return CachedNews(fetched_at=time.time(), error=str(error))
        except Exception:
            # One broken source must not break the others; the log keeps the traceback.
            logger.exception("fetching %s failed", source.key)
            return CachedNews(fetched_at=time.time(), error="could not be read")
        if items is None:  # 304 Not Modified
            items = list(cached.items) if cached is not None else []
        return CachedNews(
            fetched_at=time.time(),
            items=tuple(items),
            etag=validators.etag if validators else None,
            last_modified=validators.last_modified if validators else None,
        )


def _address(url: str) -> tuple[str, int]:
    """The host (lower case) and port a URL names."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0  # the download refuses the URL with its reason
    return (parts.hostname or url).lower(), port


def _news(source: Source, cached: CachedNews, limit: int) -> SourceNews:
    return SourceNews(source=source, items=cached.items[:limit], error=cached.error)
