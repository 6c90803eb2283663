"""Newsbot's state in Redis: chats, sources, subscriptions, seen items, messages held in
quiet hours and the fetch cache.

Every Redis command about chats and news lives here (the cluster modules keep their own
keys). Each chat is one hash, so a chat's settings move or vanish together; its seen
history is one small sorted set with a time-to-live, and ``forget_chat`` deletes every
key of a chat (``keys.CHAT_KEYS``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from newsbot import keys
from newsbot.models import Delivery, Source
from newsbot.store.base import (
    StoreBase,
    _chat,
    _seen_member,
    feed_digest,
)
from newsbot.store.cache import CachedNews, CacheStore
from newsbot.store.chats import ChatStore
from newsbot.store.connection import (
    LOOP_CONNECTIONS,
    POOL_WAIT_SECONDS,
    SENTINEL_TIMEOUT_SECONDS,
    connect,
    pool_size,
    sentinel_master,
    wait_for_replicas,
)
from newsbot.store.held import HeldStore
from newsbot.store.lifecycle import LifecycleStore
from newsbot.store.notices import NoticeStore
from newsbot.store.seen import SeenStore
from newsbot.store.subscriptions import UTC, SubscriptionStore

__all__ = [
    "LOOP_CONNECTIONS",
    "POOL_WAIT_SECONDS",
    "SENTINEL_TIMEOUT_SECONDS",
    "UTC",
    "CachedNews",
    "Store",
    "alert_member",
    "connect",
    "digest_scope",
    "feed_digest",
    "pool_size",
    "sentinel_master",
    "update_scope",
    "wait_for_replicas",
]


class Store(
    SeenStore,
    HeldStore,
    LifecycleStore,
    SubscriptionStore,
    ChatStore,
    NoticeStore,
    CacheStore,
    StoreBase,
):
    """Chats, subscriptions, seen items and the fetch cache."""

    # --- delivery ----------------------------------------------------------------------

    async def sent_parts(self, scope: str) -> set[str]:
        """The parts of a reply Telegram already took (see keys.PARTS_SENT)."""
        members = await self.redis.smembers(keys.PARTS_SENT.format(scope=scope))
        return {member.decode() if isinstance(member, bytes) else member for member in members}

    async def mark_part_sent(self, scope: str, part: str) -> None:
        """Remember that Telegram took this part of a reply."""
        key = keys.PARTS_SENT.format(scope=scope)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, part)
            pipe.expire(key, keys.PARTS_SENT_SECONDS)
            await pipe.execute()

    # --- groups, topics and settings ---------------------------------------------------

    async def cached_admin(self, chat_id: int, user_id: int, now: float) -> bool | None:
        """Whether a user administers a group, if asked within keys.ADMIN_CACHE_SECONDS."""
        value: str | None = await self.redis.hget(  # type: ignore[assignment]
            keys.ADMINS.format(chat_id=chat_id), str(user_id)
        )
        if not value:
            return None
        flag, _, asked = value.partition(":")
        try:
            if now - float(asked) > keys.ADMIN_CACHE_SECONDS:
                return None
        except ValueError:
            return None  # written by another version: ask again
        return flag == "1"

    async def cache_admin(self, chat_id: int, user_id: int, admin: bool, now: float) -> None:
        """Remember for keys.ADMIN_CACHE_SECONDS whether a user administers a group."""
        key = keys.ADMINS.format(chat_id=chat_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, str(user_id), f"{int(admin)}:{now!r}")
            pipe.expire(key, keys.ADMIN_CACHE_SECONDS)
            await pipe.execute()

    async def delivery(self, chat_id: int) -> Delivery:
        """How the chat's messages go out (previews, silence, the digest's topic)."""
        previews, silent, thread = await self.redis.hmget(
            _chat(chat_id), [keys.FIELD_PREVIEWS, keys.FIELD_SILENT, keys.FIELD_DIGEST_THREAD]
        )
        return Delivery(
            previews=previews == "1",
            silent=silent == "1",
            digest_thread=int(thread) if thread else None,
        )

    async def set_flag(self, chat_id: int, field: str, on: bool) -> None:
        """Turn a chat's delivery setting (keys.FIELD_PREVIEWS, FIELD_SILENT) on or off."""
        if on:
            await self.redis.hset(_chat(chat_id), field, "1")
        else:
            await self.redis.hdel(_chat(chat_id), field)

    async def set_digest_thread(self, chat_id: int, thread_id: int | None) -> None:
        """Send the chat's digest into a forum topic (None: the General topic)."""
        if thread_id is None:
            await self.redis.hdel(_chat(chat_id), keys.FIELD_DIGEST_THREAD)
        else:
            await self.redis.hset(_chat(chat_id), keys.FIELD_DIGEST_THREAD, thread_id)

    async def drop_digest_thread(self, chat_id: int, thread_id: int) -> bool:
        """Forget the digest's topic if it is still ``thread_id``; tell whether it was."""
        dropped = await self._drop_field(
            keys=[_chat(chat_id)], args=[keys.FIELD_DIGEST_THREAD, str(thread_id)]
        )
        return bool(dropped)

    async def remember_channel(self, user_id: int, channel_id: int) -> None:
        """Note that a user manages a channel through the bot (for /channels)."""
        await self.redis.sadd(keys.USER_CHANNELS.format(chat_id=user_id), channel_id)

    async def channels_of(self, user_id: int) -> list[int]:
        """The channels a user manages through the bot, in id order."""
        members = await self.redis.smembers(keys.USER_CHANNELS.format(chat_id=user_id))
        return sorted(int(member) for member in members)

    async def forget_channel_of(self, user_id: int, channel_id: int) -> None:
        """Drop a channel from a user's list (the bot left it, or the user is no admin)."""
        await self.redis.srem(keys.USER_CHANNELS.format(chat_id=user_id), channel_id)

    async def claim_commands(self, digest: str) -> bool:
        """Record ``digest`` as the registered command lists; False if it already was."""
        previous = await self.redis.set(keys.COMMANDS_SET, digest, get=True)
        return previous != digest

    async def unclaim_commands(self, digest: str) -> None:
        """Forget a registration that failed, so the next start tries again."""
        await self._release(keys=[keys.COMMANDS_SET], args=[digest])

    # --- alerts ------------------------------------------------------------------------

    async def get_alerts(self, chat_id: int) -> dict[str, tuple[Source, int | None]]:
        """The chat's alerts: source digest -> (source, topic it was set in)."""
        raw: dict[str, str] = await self.redis.hgetall(  # type: ignore[assignment]
            keys.ALERTS.format(chat_id=chat_id)
        )
        alerts = {}
        for digest, value in raw.items():
            try:
                data = json.loads(value)
                alerts[digest] = (Source.from_json(data["source"]), data.get("thread"))
            except (ValueError, KeyError, TypeError):
                continue  # written by another version; /alert sets it again
        return alerts

    async def add_alerts(
        self,
        chat_id: int,
        watched: Sequence[tuple[str, Source]],
        thread_id: int | None,
        known: dict[str, list[str] | None],
        first_checks: dict[str, float],
    ) -> None:
        """Watch sources for the chat from the items ``known`` now (no backfill).

        ``known`` maps each digest to the ids of the items there now (None: not read
        yet); ``first_checks`` to when the source is first checked, if nobody checks it.
        """
        if not watched:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for digest, source in watched:
                pipe.hset(
                    keys.ALERTS.format(chat_id=chat_id),
                    digest,
                    json.dumps({"source": source.to_json(), "thread": thread_id}),
                )
                ids = known.get(digest)
                pipe.hset(
                    keys.ALERT_KNOWN.format(chat_id=chat_id),
                    digest,
                    json.dumps(None if ids is None else sorted({_seen_member(i) for i in ids})),
                )
                pipe.sadd(keys.ALERT_WATCHERS.format(digest=digest), chat_id)
                pipe.hset(keys.ALERT_SOURCES, digest, json.dumps(source.to_json()))
                # NX: a source already watched keeps its place in the window.
                pipe.zadd(keys.ALERT_CHECKS, {digest: first_checks[digest]}, nx=True)
            await pipe.execute()

    async def remove_alerts(self, chat_id: int, digests: Sequence[str]) -> None:
        """Stop the chat's alerts on these sources (the watcher drops unwatched sources)."""
        if not digests:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.ALERTS.format(chat_id=chat_id), *digests)
            pipe.hdel(keys.ALERT_KNOWN.format(chat_id=chat_id), *digests)
            for digest in digests:
                pipe.srem(keys.ALERT_WATCHERS.format(digest=digest), chat_id)
            await pipe.execute()

    async def claim_alert_checks(
        self, now: float, limit: int, hold: float = keys.ALERT_CLAIM_SECONDS
    ) -> list[str]:
        """Take up to ``limit`` sources due a check; no other replica gets them.

        A claimed source comes back ``hold`` seconds later unless it was rescheduled.
        """
        found: list[str] = await self._claim_due(keys=[keys.ALERT_CHECKS], args=[now, hold, limit])
        return found

    async def reschedule_alert_check(self, digest: str, due: float) -> None:
        """Set when the source is next checked, if it is still watched."""
        await self.redis.zadd(keys.ALERT_CHECKS, {digest: due}, xx=True)

    async def alert_source(self, digest: str) -> tuple[Source | None, list[int]]:
        """A watched source and the chats watching it, read at once."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.ALERT_SOURCES, digest)
            pipe.smembers(keys.ALERT_WATCHERS.format(digest=digest))
            raw, chats = await pipe.execute()
        try:
            source = Source.from_json(json.loads(raw)) if raw else None
        except (ValueError, KeyError, TypeError):
            source = None  # written by another version: as if nobody watched it
        return source, sorted(int(chat) for chat in chats)

    async def drop_alert_source(self, digest: str) -> bool:
        """Stop checking a source nobody watches; False if somebody does."""
        return bool(
            await self._drop_alert_source(
                keys=[
                    keys.ALERT_WATCHERS.format(digest=digest),
                    keys.ALERT_CHECKS,
                    keys.ALERT_SOURCES,
                ],
                args=[digest],
            )
        )

    async def alert_state(
        self, chat_id: int, digest: str
    ) -> tuple[bool, int | None, set[str] | None]:
        """Whether the chat watches the source, the topic, and the item hashes it knows.

        A chat that no longer watches it (/alert off, forgotten) leaves its watchers.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.ALERTS.format(chat_id=chat_id), digest)
            pipe.hget(keys.ALERT_KNOWN.format(chat_id=chat_id), digest)
            alert, known = await pipe.execute()
        if alert is None:
            await self._forget_watcher(
                keys=[
                    keys.ALERTS.format(chat_id=chat_id),
                    keys.ALERT_WATCHERS.format(digest=digest),
                ],
                args=[digest, chat_id],
            )
            return False, None, None
        try:
            thread = json.loads(alert).get("thread")
            ids = json.loads(known) if known else None
        except (ValueError, AttributeError):
            thread, ids = None, None  # another version's: start again from what is there
        return True, thread, None if ids is None else set(ids)

    async def lock_alert_chat(self, chat_id: int, owner: str) -> bool:
        """Take the right to deliver alerts to a chat; False if another delivery has it."""
        key = keys.ALERT_LOCK.format(chat_id=chat_id)
        return bool(await self.redis.set(key, owner, nx=True, ex=keys.ALERT_LOCK_SECONDS))

    async def unlock_alert_chat(self, chat_id: int, owner: str) -> None:
        """Give up the right to deliver alerts to a chat, if we still hold it."""
        await self._release(keys=[keys.ALERT_LOCK.format(chat_id=chat_id)], args=[owner])

    async def set_alert_known(self, chat_id: int, digest: str, item_ids: Iterable[str]) -> None:
        """Bring the chat up to these items of the source, if it still watches it."""
        value = json.dumps(sorted({_seen_member(item_id) for item_id in item_ids}))
        key = keys.ALERT_KNOWN.format(chat_id=chat_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hexists(keys.ALERTS.format(chat_id=chat_id), digest)
            pipe.hset(key, digest, value)
            watching, _ = await pipe.execute()
        if not watching:  # /alert off meanwhile: what was written goes too
            await self.redis.hdel(key, digest)


def alert_member(item_id: str) -> str:
    """An item id as the alerts' known lists store it (as the seen history does)."""
    return _seen_member(item_id)


def digest_scope(chat_id: int) -> str:
    """The delivery scope of a chat's digest (keys.PARTS_SENT)."""
    return f"digest:{chat_id}"


def update_scope(update_id: int) -> str:
    """The delivery scope of the reply to an update (keys.PARTS_SENT)."""
    return f"update:{update_id}"
