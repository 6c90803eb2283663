"""Managing a channel from the private chat: ``/source @mychannel python``.

A command that takes a chat may name a channel first (``@username`` or its ``-100…``
id). Before the command runs, Telegram is asked (``getChatMember``) whether the user
administers that channel and whether the bot may post there; the reply names the
check that failed. The command then acts on the channel's settings: ``target`` is the
chat the running command is about (a context variable, set per update: each update is
handled in a task of its own).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from telegram import Bot, Chat, ChatFullInfo, ChatMember, ChatMemberAdministrator, Update
from telegram.error import BadRequest, Forbidden
from telegram.ext import ContextTypes

from newsbot import render
from newsbot.store import Store

# Commands that take a chat first.
CHAT_COMMANDS = frozenset(
    {
        "source",
        "sources",
        "add",
        "remove",
        "fetch",
        "subscribe",
        "unsubscribe",
        "alert",
        "settings",
        "filter",
        "export",
        "tz",
        "quiet",
    }
)
_CHANNEL = re.compile(r"@[A-Za-z][A-Za-z0-9_]{3,31}|-100\d{5,16}")

# The chat the command being handled is about, when it named a channel.
target: ContextVar[int | None] = ContextVar("newsbot_target_chat", default=None)


def named_channel(argument: str) -> tuple[str, str] | None:
    """Split a command's argument into the channel it names first and the rest."""
    first, _, rest = argument.partition(" ")
    return (first, rest.strip()) if _CHANNEL.fullmatch(first) else None


def command_argument(update: Update) -> str:
    """Everything after the command, as typed (after the channel it named, if any)."""
    text = update.effective_message.text if update.effective_message else None
    parts = (text or "").split(maxsplit=1)
    argument = parts[1].strip() if len(parts) == 2 else ""
    named = named_channel(argument) if target.get() is not None else None
    return named[1] if named else argument


def command_chat(update: Update) -> int:
    """The chat the command is about: this one, or the channel it named."""
    assert update.effective_chat is not None
    return target.get() or update.effective_chat.id


async def check_channel(bot: Bot, user_id: int, name: str) -> ChatFullInfo | str:
    """The channel ``name`` if the user administers it and the bot may post there;
    else the one line saying which check failed."""
    chat_ref: int | str = int(name) if name.lstrip("-").isdigit() else name
    try:
        chat = await bot.get_chat(chat_ref)
    except (BadRequest, Forbidden):
        return f"I cannot find the channel {name}."
    if chat.type != Chat.CHANNEL:
        return f"{name} is not a channel."
    try:
        user = await bot.get_chat_member(chat.id, user_id)
        me = await bot.get_chat_member(chat.id, bot.id)
    except Forbidden:
        return (
            f"I am not in {name}: add me to the channel as an administrator "
            "with the right to post messages."
        )
    except BadRequest:
        return (
            f"I am not an administrator of {name}: make me one, with the right to post messages."
        )
    if user.status not in (ChatMember.OWNER, ChatMember.ADMINISTRATOR):
        return f"Only an administrator of {name} can manage it."
    if not (
        me.status == ChatMember.OWNER
        or (isinstance(me, ChatMemberAdministrator) and me.can_post_messages)
    ):
        return f"I cannot post in {name}: give me the right to post messages there."
    return chat


async def aim_at_channel(
    bot: Bot, store: Store, update: Update, command: str | None, argument: str
) -> str | None:
    """In a private chat, point the command at the channel it names, if it may be.

    Returns the refusal (which check failed), or None: the command goes on, at the
    channel (``target``) or at this chat when it named none.
    """
    chat, user = update.effective_chat, update.effective_user
    named = named_channel(argument) if command in CHAT_COMMANDS else None
    if named is None or chat is None or user is None or chat.type != Chat.PRIVATE:
        return None
    found = await check_channel(bot, user.id, named[0])
    if isinstance(found, str):
        return found
    await store.remember_channel(user.id, found.id)
    target.set(found.id)  # for this update only: each is handled in a task of its own
    return None


async def list_channels(bot: Bot, store: Store, user_id: int) -> str:
    """/channels: the channels a user manages through the bot, each checked again."""
    lines = []
    for channel_id in await store.channels_of(user_id):
        found = await check_channel(bot, user_id, str(channel_id))
        if isinstance(found, str):
            lines.append(f"• {render.escape(found)}")  # the reason names the channel
        else:
            name = f" (@{found.username})" if found.username else ""
            lines.append(
                f"• {render.escape(found.title or '')}{render.escape(name)}: {channel_id}"
            )
    if not lines:
        return (
            "You manage no channels through me yet. Add me to your channel as an "
            "administrator, then name it first: /source @mychannel python"
        )
    return "Your channels:\n" + "\n".join(lines)


class ChannelList:
    """The /channels command: the channels this user manages through the bot."""

    def __init__(self, store: Store, reply: Callable[..., Awaitable[bool]]) -> None:
        self.store = store
        self.reply = reply

    async def channels(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/channels: each channel, checked again, or how to add one."""
        assert update.effective_user is not None
        await self.reply(
            update, context, await list_channels(context.bot, self.store, update.effective_user.id)
        )
