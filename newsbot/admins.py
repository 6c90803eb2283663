"""The group admin gate: who may change what a group or channel gets.

In a private chat the user owns the settings. In a group, anyone may read (``/help``,
``/fetch``, the listings); every command that changes something needs an administrator:
``getChatMember`` says ``creator`` or ``administrator``, or the message comes from the
group itself (an anonymous admin: ``sender_chat.id == chat.id``; a channel's own posts
too). Telegram's answer is cached in Redis for ``keys.ADMIN_CACHE_SECONDS``, so a busy
group costs one ``getChatMember`` per user per window whichever replica asks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from telegram import Bot, Chat, ChatMember, Update
from telegram.error import BadRequest, Forbidden

from newsbot.store import Store

logger = logging.getLogger(__name__)

REFUSAL = "Only this group's admins can change that."
PRESS_REFUSAL = "Only this group's admins can change its settings."
# Commands anyone may use, with or without arguments.
FREE = frozenset({"help", "fetch", "settings", "channels", "export"})
# Commands anyone may use without arguments (a listing), only admins with them.
FREE_WITHOUT_ARGUMENTS = frozenset({"source", "sources", "filter", "alert", "tz", "quiet"})
ADMIN_STATUSES = (ChatMember.OWNER, ChatMember.ADMINISTRATOR)


def changes_something(command: str, argument: str, stopped: bool) -> bool:
    """Tell whether a command changes the chat's state (and so needs an admin in a group).

    Anything not known to be harmless counts as a change, so a new command is gated
    until it is listed here. ``/start`` changes something only in a stopped chat.
    """
    if command == "start":
        return stopped
    if command in FREE:
        return False
    if command in FREE_WITHOUT_ARGUMENTS:
        return bool(argument)
    return True


class Admins:
    """Asks Telegram who administers a chat, through a Redis cache shared by replicas."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def is_admin(self, bot: Bot, chat_id: int, user_id: int) -> bool:
        """Tell whether a user is the creator or an administrator of a chat."""
        now = self.clock()
        cached = await self.store.cached_admin(chat_id, user_id, now)
        if cached is not None:
            return cached
        try:
            member = await bot.get_chat_member(chat_id, user_id)
            admin = member.status in ADMIN_STATUSES
        except (BadRequest, Forbidden) as error:
            # Telegram will not say (the bot cannot see the members): not an admin.
            logger.info("cannot check the admins of chat %s: %s", chat_id, error.message)
            admin = False
        await self.store.cache_admin(chat_id, user_id, admin, now)
        return admin

    async def may_run(self, bot: Bot, update: Update, command: str, argument: str) -> bool:
        """Tell whether whoever sent a command may run it in the update's chat."""
        chat = update.effective_chat
        if chat is None or chat.type == Chat.PRIVATE:
            return True
        stopped = command == "start" and await self.store.is_stopped(chat.id)
        if not changes_something(command, argument, stopped):
            return True
        return await self.may_change(bot, update)

    async def may_change(self, bot: Bot, update: Update) -> bool:
        """Tell whether whoever sent the update may change the chat's state."""
        chat = update.effective_chat
        if chat is None:
            return False
        if chat.type == Chat.PRIVATE:
            return True
        message = update.effective_message
        if (
            update.callback_query is None
            and message is not None
            and message.sender_chat is not None
            and message.sender_chat.id == chat.id
        ):
            # An anonymous admin, or a channel's own post. Not for a button press: the
            # message then is the bot's own, which in a channel is "from" the channel.
            return True
        user = update.effective_user
        if user is None or user.is_bot:
            return False
        return await self.is_admin(bot, chat.id, user.id)
