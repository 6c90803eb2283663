"""Where a chat's state goes when the chat does: deleted when the chat blocked the bot,
left or is gone (``forget_chat``: every key in ``keys.CHAT_KEYS`` and its entries in the
shared sets), or moved and merged when a group becomes a supergroup (``migrate_chat``).

The merge rules are pure functions of the two chats' hashes, below the class.
"""

from __future__ import annotations

import json
from typing import Any

from redis.exceptions import WatchError

from newsbot import filters, keys
from newsbot.store.base import StoreBase, _chat, _source_chats, _source_keys


class LifecycleStore(StoreBase):
    """Forgetting a chat, and moving a group's state to its supergroup."""

    async def forget_chat(self, chat_id: int) -> None:
        """Delete everything stored for a chat that blocked the bot, left or is gone."""
        raw: str | None = await self.redis.hget(  # type: ignore[assignment]
            _chat(chat_id), "sources"
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in _source_keys(raw):
                pipe.srem(_source_chats(key), chat_id)
            pipe.zrem(keys.DUE, chat_id)
            pipe.zrem(keys.QUIET_END, chat_id)
            pipe.delete(*(template.format(chat_id=chat_id) for template in keys.CHAT_KEYS))
            await pipe.execute()

    async def migrate_chat(self, old_id: int, new_id: int, max_sources: int | None = None) -> None:
        """Move a group's settings to its new supergroup id, merging with what is there.

        A supergroup with settings of its own keeps them: the group's sources are added
        after its own (no duplicates, at most ``max_sources``), the digest is kept if
        either had one (unless the supergroup said /stop), and both seen histories are
        kept. Safe to repeat and to run from two replicas at once: the second finds
        nothing left to move.
        """
        old, new = _chat(old_id), _chat(new_id)
        seen_old, seen_new = keys.SEEN.format(chat_id=old_id), keys.SEEN.format(chat_id=new_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(old, new, seen_old)
                    old_data: dict[str, str] = await pipe.hgetall(old)  # type: ignore[assignment]
                    new_data: dict[str, str] = await pipe.hgetall(new)  # type: ignore[assignment]
                    old_due = await pipe.zscore(keys.DUE, old_id)
                    new_due = await pipe.zscore(keys.DUE, new_id)
                    has_seen = bool(await pipe.exists(seen_old))
                    if not old_data and old_due is None and not has_seen:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return
                    merged = _merge_chat(old_data, new_data, max_sources)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(old)
                    if merged != new_data:
                        pipe.delete(new)
                        if merged:
                            pipe.hset(new, mapping=dict[Any, Any](merged))
                    pipe.zrem(keys.DUE, old_id)
                    if "interval" not in merged:
                        pipe.zrem(keys.DUE, new_id)
                    elif "interval" not in new_data or new_due is None:
                        due = old_due if old_due is not None else new_due
                        if due is not None:
                            pipe.zadd(keys.DUE, {str(new_id): due})
                    _move_in_index(pipe, old_id, old_data, new_id, merged)
                    if has_seen:
                        pipe.zunionstore(seen_new, [seen_new, seen_old], aggregate="MAX")
                        pipe.zremrangebyrank(seen_new, 0, -keys.SEEN_MAX - 1)
                        pipe.delete(seen_old)
                    await pipe.execute()
                    return
                except WatchError:
                    continue  # the other replica moved it meanwhile: look again


def _move_in_index(
    pipe: Any, old_id: int, old: dict[str, str], new_id: int, merged: dict[str, str]
) -> None:
    """Queue the index's side of a migration: the group out, the supergroup in."""
    for key in _source_keys(old.get("sources")):
        pipe.srem(_source_chats(key), old_id)
    for key in _source_keys(merged.get("sources")):
        pipe.sadd(_source_chats(key), new_id)


def _merge_chat(
    old: dict[str, str], new: dict[str, str], max_sources: int | None
) -> dict[str, str]:
    """The fields of a supergroup's chat hash after a group's migration into it."""
    if not new:
        return dict(old)  # the usual case: the supergroup is new to the bot
    # Fields the supergroup lacks come from the group; its own stay as they are.
    merged = {
        **{
            name: value
            for name, value in old.items()
            if name not in ("stopped", "interval", "schedule", "sources")
        },
        **new,
    }
    sources: dict[str, dict[str, Any]] = {}
    for raw in (new.get("sources"), old.get("sources")):
        for data in json.loads(raw) if raw else []:
            sources.setdefault(data["key"], data)
    chosen = list(sources.values())[:max_sources]
    if chosen:
        merged["sources"] = json.dumps(chosen)
    if "interval" not in new and "interval" in old and "stopped" not in new:
        merged["interval"] = old["interval"]
        if "schedule" in old:
            merged["schedule"] = old["schedule"]
    if "filters" in old and "filters" in new:
        merged["filters"] = _merge_filters(old["filters"], new["filters"])
    return merged


def _merge_filters(old: str, new: str) -> str:
    """The supergroup's filter rules, then the group's for sources it has none for."""
    try:
        mine, theirs = json.loads(new), json.loads(old)
    except ValueError:
        return new
    if not isinstance(mine, dict) or not isinstance(theirs, dict):
        return new
    merged = dict(mine)
    count = sum(len(rules) for rules in mine.values() if isinstance(rules, list))
    for key, rules in theirs.items():
        if (
            key not in merged
            and isinstance(rules, list)
            and count + len(rules) <= filters.MAX_RULES
        ):
            merged[key] = rules
            count += len(rules)
    return json.dumps(merged)
