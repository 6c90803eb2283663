"""The fetch cache: a source's last fetch (``CachedNews``), shared by every chat and
replica for ``keys.FEED_TTL_SECONDS``, and the lock that lets one replica at a time
fetch a source (the others wait for its result instead of asking the server again).

A cache entry is one hash per source (``keys.FEED``), named by ``feed_digest`` of the
source's key; an entry another version wrote and this one cannot read counts as none.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from newsbot import keys
from newsbot.models import Item
from newsbot.store.base import StoreBase


@dataclasses.dataclass(frozen=True)
class CachedNews:
    """A source's last fetch: items or an error, when, and validators for the next GET."""

    fetched_at: float
    items: tuple[Item, ...] = ()
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    # The feed a web page links to (feed discovery), and where a feed moved permanently
    # (a 301/308): what /source and /add store instead of the URL given.
    discovered: str | None = None
    moved_to: str | None = None
    # The failure streak (source_health): failed fetches in a row, when the first of
    # them was, and whether the source's chats were told it is dead.
    failures: int = 0
    failing_since: float | None = None
    dead: bool = False

    def to_mapping(self) -> dict[str, str]:
        mapping = {
            "fetched_at": repr(self.fetched_at),
            "items": json.dumps([item.to_json() for item in self.items]),
            "error": self.error or "",
            "etag": self.etag or "",
            "last_modified": self.last_modified or "",
            "failures": str(self.failures),
            "failing_since": "" if self.failing_since is None else repr(self.failing_since),
            "dead": "1" if self.dead else "",
        }
        # Only when set: an entry without them is written exactly as before.
        if self.discovered:
            mapping["discovered"] = self.discovered
        if self.moved_to:
            mapping["moved_to"] = self.moved_to
        return mapping

    @classmethod
    def from_mapping(cls, data: dict[str, str]) -> CachedNews:
        return cls(
            fetched_at=float(data["fetched_at"]),
            items=tuple(Item.from_json(item) for item in json.loads(data["items"])),
            error=data.get("error") or None,
            etag=data.get("etag") or None,
            last_modified=data.get("last_modified") or None,
            discovered=data.get("discovered") or None,
            moved_to=data.get("moved_to") or None,
            # Absent in entries written before streaks were kept: no streak yet.
            failures=int(data.get("failures") or 0),
            failing_since=float(data["failing_since"]) if data.get("failing_since") else None,
            dead=data.get("dead") == "1",
        )


class CacheStore(StoreBase):
    """Sources' last fetches, and the lock on fetching one."""

    async def get_cached(self, digest: str) -> CachedNews | None:
        """A source's last fetch, however old."""
        data: dict[str, str] = await self.redis.hgetall(  # type: ignore[assignment]
            keys.FEED.format(digest=digest)
        )
        return _cached(data)

    async def get_cached_many(self, digests: Sequence[str]) -> list[CachedNews | None]:
        """The last fetch of each source, in order, read in one round trip."""
        if not digests:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.hgetall(keys.FEED.format(digest=digest))
            found: list[dict[str, str]] = await pipe.execute()
        return [_cached(data) for data in found]

    async def put_cached(self, digest: str, news: CachedNews) -> None:
        """Store a source's fetch for every chat and replica."""
        key = keys.FEED.format(digest=digest)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=dict[Any, Any](news.to_mapping()))
            pipe.expire(key, keys.FEED_TTL_SECONDS)
            await pipe.execute()

    async def lock_fetch(self, digest: str, owner: str) -> bool:
        """Take the right to fetch a source; False if another fetch is under way."""
        key = keys.FETCH_LOCK.format(digest=digest)
        return bool(await self.redis.set(key, owner, nx=True, ex=keys.FETCH_LOCK_SECONDS))

    async def unlock_fetch(self, digest: str, owner: str) -> None:
        """Give up the right to fetch a source, if we still hold it."""
        await self._release(keys=[keys.FETCH_LOCK.format(digest=digest)], args=[owner])


def _cached(data: dict[str, str]) -> CachedNews | None:
    try:
        return CachedNews.from_mapping(data) if data else None
    except (KeyError, ValueError, TypeError):
        return None  # written by another version; refetching is the cure
