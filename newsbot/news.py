"""News for a list of sources: from the shared cache, or fetched once for everyone.

However many chats and replicas ask for a source at once, one upstream request is made
per cache window: in a process, callers share one task; across replicas, a lock in
Redis lets one fetch while the others wait for its result in the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Sequence

from newsbot import filters, keys
from newsbot.config import Settings
from newsbot.errors import SourceError
from newsbot.metrics import CACHE_HITS, UPSTREAM_FETCHES
from newsbot.models import Item, Source, SourceNews
from newsbot.sources.download import Downloader, Validators
from newsbot.sources.guard import Guard
from newsbot.sources.reddit import Reddit
from newsbot.sources.rss import fetch_feed
from newsbot.store import CachedNews, Store

logger = logging.getLogger(__name__)
# How often a replica waiting for another's fetch looks at the cache.
WAIT_POLL_SECONDS = 0.05
# Items of a source kept in the shared cache: filters pick from the whole list, so a
# filtered source still fills NEWSBOT_ITEMS_PER_SOURCE (a reply cuts to that).
CACHED_ITEMS = 100


def source_digest(source: Source) -> str:
    """The cache key part for a source."""
    return hashlib.sha256(source.key.encode()).hexdigest()[:32]


class News:
    """Fetches sources through the shared cache."""

    def __init__(self, settings: Settings, store: Store, guard: Guard | None = None) -> None:
        self.settings = settings
        self.store = store
        self.feeds = Downloader(guard or Guard(settings.allow_private_urls),
                                timeout=settings.fetch_timeout)
        self.reddit = Reddit(settings, Downloader(timeout=settings.fetch_timeout))
        self.owner = uuid.uuid4().hex
        self._inflight: dict[str, asyncio.Task[CachedNews]] = {}

    def close(self) -> None:
        self.feeds.close()
        self.reddit.downloader.close()

    async def get(self, sources: Sequence[Source], whole: bool = False) -> list[SourceNews]:
        """News for every source, in order; a failing source carries its reason.

        Each source gives its first ``NEWSBOT_ITEMS_PER_SOURCE`` items, or with ``whole``
        every item the cache holds.
        """
        results = await asyncio.gather(*(self.get_one(source, whole) for source in sources))
        return list(results)

    async def for_chat(self, chat_id: int, sources: Sequence[Source]) -> list[SourceNews]:
        """A chat's news: each source's whole list through the chat's filters, then cut.

        The one place filters apply, so /fetch and digests cannot disagree.
        """
        news = await self.get(sources, whole=True)
        chat_rules = await self.store.get_filters(chat_id)
        return filters.apply(news, chat_rules, self.settings.items_per_source)

    async def get_one(self, source: Source, whole: bool = False) -> SourceNews:
        """News for one source, cached or freshly fetched."""
        limit = None if whole else self.settings.items_per_source
        digest = source_digest(source)
        asked = time.time()
        cached = await self.store.get_cached(digest)
        if cached is not None and self._fresh(cached, asked):
            CACHE_HITS.inc()
            return _news(source, cached, limit)
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.create_task(self._refresh(source, digest, cached, asked))
            self._inflight[digest] = task
            task.add_done_callback(lambda _: self._inflight.pop(digest, None))
        return _news(source, await asyncio.shield(task), limit)

    def _fresh(self, cached: CachedNews, now: float) -> bool:
        ttl = self.settings.cache_ttl
        if cached.error is not None:
            ttl = min(ttl, keys.ERROR_TTL_SECONDS)
        return now < cached.fetched_at + ttl

    async def _refresh(self, source: Source, digest: str, cached: CachedNews | None,
                       asked: float) -> CachedNews:
        """Fetch a source once for everyone who asked at ``asked`` or later."""
        deadline = time.monotonic() + keys.FETCH_LOCK_SECONDS
        while time.monotonic() < deadline:
            if await self.store.lock_fetch(digest, self.owner):
                try:
                    # Another replica may have stored a fetch between our look at the
                    # cache and taking the lock: that one is news enough.
                    latest = await self.store.get_cached(digest)
                    if latest is not None and self._answers(latest, asked):
                        CACHE_HITS.inc()
                        return latest
                    fresh = await asyncio.to_thread(self._download, source, latest or cached)
                    await self.store.put_cached(digest, fresh)
                    return fresh
                finally:
                    await self.store.unlock_fetch(digest, self.owner)
            # Another replica is fetching this source: wait for what it stores.
            await asyncio.sleep(WAIT_POLL_SECONDS)
            latest = await self.store.get_cached(digest)
            if latest is not None and self._answers(latest, asked):
                CACHE_HITS.inc()
                return latest
        return CachedNews(fetched_at=time.time(), error="timed out")

    def _answers(self, cached: CachedNews, asked: float) -> bool:
        """Tell whether a cache entry answers a request made at ``asked``."""
        return cached.fetched_at >= asked or self._fresh(cached, time.time())

    def _download(self, source: Source, cached: CachedNews | None) -> CachedNews:
        """Fetch a source upstream (blocking), reusing the cache's items on a 304."""
        UPSTREAM_FETCHES.labels(kind=source.kind).inc()
        validators = None
        if cached is not None and cached.error is None:
            validators = Validators(cached.etag, cached.last_modified)
        limit = max(CACHED_ITEMS, self.settings.items_per_source)
        items: list[Item] | None
        try:
            if source.kind == "reddit":
                items, validators = self.reddit.fetch(source.key[2:], limit, validators)
            else:
                download, items = fetch_feed(self.feeds, source.key, limit, validators)
                validators = download.validators
        except SourceError as error:
            return CachedNews(fetched_at=time.time(), error=str(error))
        except Exception:
            # One broken source must not break the others; the log keeps the traceback.
            logger.exception("fetching %s failed", source.key)
            return CachedNews(fetched_at=time.time(), error="could not be read")
        if items is None:  # 304 Not Modified
            items = list(cached.items) if cached is not None else []
        return CachedNews(fetched_at=time.time(), items=tuple(items),
                          etag=validators.etag if validators else None,
                          last_modified=validators.last_modified if validators else None)


def _news(source: Source, cached: CachedNews, limit: int | None) -> SourceNews:
    return SourceNews(source=source, items=cached.items[:limit], error=cached.error)
