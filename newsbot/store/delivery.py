"""How the bot's messages go out and what it knows about the chats it sends to: the
parts of a multi-part reply Telegram already took (so a retry sends only the rest), a
chat's delivery settings (previews, silence, the digest's forum topic), the group
admins cache, the channels a user manages through the bot, and the command menu
registered with Telegram.
"""

from __future__ import annotations

from newsbot import keys
from newsbot.models import Delivery
from newsbot.store.base import StoreBase, _chat


class DeliveryStore(StoreBase):
    """What a reply's retry skips, how a chat's messages go out, admins and channels."""

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

    async def chat_state(self, chat_id: int) -> tuple[bool, Delivery]:
        """Whether the chat said /stop, and how its messages go out: one read for both."""
        stopped, previews, silent, thread = await self.redis.hmget(
            _chat(chat_id),
            ["stopped", keys.FIELD_PREVIEWS, keys.FIELD_SILENT, keys.FIELD_DIGEST_THREAD],
        )
        delivery = Delivery(
            previews=previews == "1",
            silent=silent == "1",
            digest_thread=int(thread) if thread else None,
        )
        return stopped == "1", delivery

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


def digest_scope(chat_id: int) -> str:
    """The delivery scope of a chat's digest (keys.PARTS_SENT)."""
    return f"digest:{chat_id}"


def update_scope(update_id: int) -> str:
    """The delivery scope of the reply to an update (keys.PARTS_SENT)."""
    return f"update:{update_id}"
