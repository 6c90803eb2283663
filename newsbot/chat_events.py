"""The bot's place in a chat changing: added or removed, a group become a supergroup.

Not commands: Telegram reports them as ``my_chat_member`` updates (the bot blocked,
kicked or added) and as service messages (``migrate_to_chat_id`` in the old group,
``migrate_from_chat_id`` in the new supergroup).
"""

from __future__ import annotations

import logging

from telegram import Chat, ChatMember, Update
from telegram.ext import ContextTypes

from newsbot.chats import INTRODUCTION
from newsbot.config import Settings
from newsbot.metrics import CHATS_FORGOTTEN
from newsbot.replies import Reply
from newsbot.store import Store

logger = logging.getLogger(__name__)


class ChatEvents:
    """Forget a chat the bot left, greet a group it joined, follow a migrated group."""

    def __init__(self, settings: Settings, store: Store, reply: Reply) -> None:
        self.settings = settings
        self.store = store
        self.reply = reply

    async def my_chat_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The bot was blocked, or removed from a group or channel: forget the chat."""
        change = update.my_chat_member
        if change is None:
            return
        status = change.new_chat_member.status
        if status in (ChatMember.LEFT, ChatMember.BANNED):
            logger.info("the bot is %s in chat %s; its state is deleted", status, change.chat.id)
            await self.store.forget_chat(change.chat.id)
            CHATS_FORGOTTEN.labels(reason=status).inc()
        elif (
            status in (ChatMember.MEMBER, ChatMember.ADMINISTRATOR)
            and change.old_chat_member.status in (ChatMember.LEFT, ChatMember.BANNED)
            and change.chat.type in (Chat.GROUP, Chat.SUPERGROUP)
        ):
            allowed = self.settings.allowed_chats
            if allowed is None or change.chat.id in allowed:
                await self.reply(update, context, INTRODUCTION)

    async def migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A group became a supergroup: move its settings to the new id, merging.

        Telegram sends ``migrate_to_chat_id`` in the old group and ``migrate_from_chat_id``
        in the new supergroup; whichever is handled first moves the settings and the other
        finds nothing left to move.
        """
        message, chat = update.effective_message, update.effective_chat
        assert message is not None and chat is not None
        if message.migrate_to_chat_id:
            old_id, new_id = chat.id, int(message.migrate_to_chat_id)
        else:
            old_id, new_id = int(message.migrate_from_chat_id or 0), chat.id
        if old_id and new_id and old_id != new_id:
            logger.info("group %s became supergroup %s; moving its settings", old_id, new_id)
            await self.store.migrate_chat(old_id, new_id, self.settings.max_sources)
            allowed = self.settings.allowed_chats
            if allowed is not None and new_id not in allowed:
                logger.warning(
                    "supergroup %s (formerly %s) is not in NEWSBOT_ALLOWED_CHATS: "
                    "add it, or the bot ignores it",
                    new_id,
                    old_id,
                )
