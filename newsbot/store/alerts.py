"""Instant alerts: the sources a chat watches for new items (each sent as it appears,
not in a digest), the chats watching each source, and when each source is checked next.

Per chat, the alerts and the items it knows of each source (``keys.ALERTS``,
``keys.ALERT_KNOWN``); per source, its watchers (``keys.ALERT_WATCHERS``); shared, the
watched sources and their checks (``keys.ALERT_SOURCES``, ``keys.ALERT_CHECKS``), claimed
by one replica at a time, and a lock per chat so one delivery at a time sends to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from newsbot import keys
from newsbot.models import Source
from newsbot.store.base import StoreBase, _seen_member


class AlertStore(StoreBase):
    """The sources chats watch, their watchers, checks and what each chat knows."""

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

    async def drop_alert_thread(self, chat_id: int, thread_id: int) -> int:
        """Send the chat's alerts set in a deleted topic to General; how many there were."""
        moved = {
            digest: json.dumps({"source": source.to_json(), "thread": None})
            for digest, (source, thread) in (await self.get_alerts(chat_id)).items()
            if thread == thread_id
        }
        if moved:
            await self.redis.hset(
                keys.ALERTS.format(chat_id=chat_id), mapping=dict[Any, Any](moved)
            )
        return len(moved)

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
