"""A chat's sources, /stop and filter rules (fields of the chat's one hash,
``keys.CHAT``), and the two things that follow a chat's sources: feeds that moved for
good, and the index source -> chats (``keys.SOURCE_CHATS``) the source notices read.

The index is kept in step by every write of a chat's sources (here, and when a chat is
forgotten or migrated: ``lifecycle.py``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence

from redis.exceptions import WatchError

from newsbot import filters, keys
from newsbot.models import Source
from newsbot.store.base import StoreBase, _chat, _source_chats, _source_keys


class ChatStore(StoreBase):
    """A chat's sources, /stop and filters; moved feeds; the index source -> chats."""

    async def get_sources(self, chat_id: int) -> list[Source]:
        """The chat's sources, in the order the user gave them (moved feeds followed)."""
        raw = await self.redis.hget(_chat(chat_id), "sources")
        sources = [Source.from_json(data) for data in json.loads(raw)] if raw else []
        return (await self.follow_moves({chat_id: sources}))[chat_id]

    async def set_sources(self, chat_id: int, sources: Sequence[Source]) -> None:
        """Replace the chat's sources (and keep the index source -> chats in step)."""
        value = json.dumps([source.to_json() for source in sources])
        chat = _chat(chat_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(chat)
                    raw: str | None = await pipe.hget(chat, "sources")  # type: ignore[assignment]
                    before = _source_keys(raw)
                    after = {source.key for source in sources}
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(chat, "sources", value)
                    for key in before - after:
                        pipe.srem(_source_chats(key), chat_id)
                    for key in after - before:
                        pipe.sadd(_source_chats(key), chat_id)
                    await pipe.execute()
                    return
                except WatchError:
                    continue  # the chat changed meanwhile: read its sources again

    async def sources_of(self, chat_ids: Sequence[int]) -> dict[int, list[Source]]:
        """The sources of many chats, read in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for chat_id in chat_ids:
                pipe.hget(_chat(chat_id), "sources")
            raws = await pipe.execute()
        return await self.follow_moves(
            {
                chat_id: [Source.from_json(data) for data in json.loads(raw)] if raw else []
                for chat_id, raw in zip(chat_ids, raws)
            }
        )

    async def is_stopped(self, chat_id: int) -> bool:
        """Tell whether the chat said /stop (and not /start since)."""
        return await self.redis.hget(_chat(chat_id), "stopped") == "1"

    async def set_stopped(self, chat_id: int, stopped: bool) -> None:
        """Silence the chat (and stop its digest), or wake it up."""
        if stopped:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(_chat(chat_id), "stopped", "1")
                pipe.hdel(_chat(chat_id), "interval", "schedule")
                pipe.zrem(keys.DUE, chat_id)
                # Silent means silent: what quiet hours held is not sent later either.
                pipe.delete(keys.HELD.format(chat_id=chat_id))
                pipe.zrem(keys.QUIET_END, chat_id)
                await pipe.execute()
        else:
            await self.redis.hdel(_chat(chat_id), "stopped")

    async def get_filters(self, chat_id: int) -> dict[str, list[filters.Rule]]:
        """The chat's filter rules: source key (or ``*``) -> its rules."""
        raw = await self.redis.hget(_chat(chat_id), "filters")
        try:
            return filters.from_json(json.loads(raw)) if raw else {}
        except ValueError:
            return {}  # unreadable: as if the chat had none, until it sets them again

    async def set_filters(self, chat_id: int, chat_rules: filters.ChatRules) -> None:
        """Replace the chat's filter rules (none left: the field goes)."""
        data = filters.to_json(chat_rules)
        if data:
            await self.redis.hset(_chat(chat_id), "filters", json.dumps(data))
        else:
            await self.redis.hdel(_chat(chat_id), "filters")

    # --- moved feeds -------------------------------------------------------------------
    #
    # Lazily, when a chat's sources are read: a move costs nothing until then, and never
    # a scan of every chat (which anyone with a redirecting URL could cause once a cache
    # window). Reading costs one MGET for a chat with feeds; the rewrite happens once.

    async def record_move(self, old_key: str, new_key: str) -> None:
        """Remember that the feed at ``old_key`` moved for good to ``new_key``."""
        await self.redis.set(
            keys.MOVED.format(digest=_source_digest(old_key)), new_key, ex=keys.MOVED_TTL_SECONDS
        )

    async def follow_moves(self, chats: dict[int, list[Source]]) -> dict[int, list[Source]]:
        """The chats' sources with moved feeds under their new URLs, stored so."""
        feeds = sorted(
            {
                source.key
                for sources in chats.values()
                for source in sources
                if source.kind == "feed"
            }
        )
        if not feeds:
            return chats
        found: list[str | None] = await self.redis.mget(  # type: ignore[assignment]
            [keys.MOVED.format(digest=_source_digest(key)) for key in feeds]
        )
        moves = {old: new for old, new in zip(feeds, found) if new and new != old}
        if not moves:
            return chats
        result = dict(chats)
        for chat_id, sources in chats.items():
            if any(source.key in moves for source in sources):
                result[chat_id] = await self._rewrite_moved(chat_id, moves)
        return result

    async def _rewrite_moved(self, chat_id: int, moves: dict[str, str]) -> list[Source]:
        """Rewrite a chat's moved sources (and their filters) in one transaction."""
        key = _chat(chat_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw: list[str | None] = await pipe.hmget(  # type: ignore[assignment]
                        key, ["sources", "filters"]
                    )
                    raw_sources, raw_filters = raw
                    sources = _moved_sources(
                        [Source.from_json(data) for data in json.loads(raw_sources)]
                        if raw_sources
                        else [],
                        moves,
                    )
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(key, "sources", json.dumps([source.to_json() for source in sources]))
                    if raw_filters:
                        pipe.hset(key, "filters", _moved_filters(raw_filters, moves))
                    await pipe.execute()
                    return sources
                except WatchError:
                    continue  # the chat changed meanwhile: rewrite what it has now

    # --- the index source -> chats -----------------------------------------------------

    async def chats_using(self, key: str) -> list[int]:
        """The chats that have a source (by its key) among their sources."""
        members = await self.redis.smembers(_source_chats(key))
        return sorted(int(member) for member in members)

    async def unindex_chat(self, key: str, chat_id: int) -> None:
        """Take a chat out of a source's index (it no longer has the source)."""
        await self.redis.srem(_source_chats(key), chat_id)

    async def build_source_index(self) -> int:
        """Index the chats stored before the index existed, once per Redis.

        Returns how many chats were read (0: built before, by this or another replica).
        A chat changing its sources meanwhile may leave itself indexed for a source it
        dropped; whoever reads the index checks the chat's own list (and unindexes it).
        """
        if not await self.redis.set(keys.SOURCE_CHATS_BUILT, str(time.time()), nx=True):
            return 0
        prefix = keys.CHAT.format(chat_id="")
        read = 0
        async for name in self.redis.scan_iter(
            match=prefix + "*", count=keys.SOURCE_CHATS_SCAN, _type="hash"
        ):
            chat_id = name[len(prefix) :]
            if not chat_id.lstrip("-").isdigit():
                continue  # not a chat hash
            raw: str | None = await self.redis.hget(name, "sources")  # type: ignore[assignment]
            read += 1
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in _source_keys(raw):
                    pipe.sadd(_source_chats(key), chat_id)
                await pipe.execute()
        return read


def _source_digest(key: str) -> str:
    """A source key as keys.MOVED names it (as news.source_id does for the cache)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _moved_sources(sources: list[Source], moves: dict[str, str]) -> list[Source]:
    """Sources with moved feeds under their new URL, shown as it; no duplicates."""
    result: list[Source] = []
    seen: set[str] = set()
    for source in sources:
        if source.key in moves:
            source = Source(kind="feed", key=moves[source.key], label=moves[source.key])
        if source.key not in seen:
            seen.add(source.key)
            result.append(source)
    return result


def _moved_filters(raw: str, moves: dict[str, str]) -> str:
    """Filter rules follow their feed to its new URL (rules already there win)."""
    try:
        rules = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(rules, dict):
        return raw
    moved = {key: value for key, value in rules.items() if key not in moves}
    for key, value in rules.items():
        if key in moves:
            moved.setdefault(moves[key], value)
    return json.dumps(moved)
