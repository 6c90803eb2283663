"""Sending replies: split HTML messages, and what to do when a chat cannot be reached.

Pacing and retries of 429s and network errors happen below, in the rate limiter every
Telegram call goes through (cluster.ratelimit); here are the answers that change state.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from telegram import Bot
from telegram.error import ChatMigrated, Forbidden

from newsbot.metrics import MESSAGES_SENT
from newsbot.store import Store

logger = logging.getLogger(__name__)


async def send_messages(bot: Bot, store: Store, chat_id: int, messages: Sequence[str]) -> bool:
    """Send HTML messages to a chat in order; False if the chat cannot be reached."""
    for text in messages:
        try:
            await bot.send_message(chat_id, text)
        except Forbidden:
            # Blocked by the user, kicked from the group: stop the digest for good.
            logger.info("chat %s cannot be reached (blocked or kicked); unsubscribed",
                        chat_id)
            await store.forget_chat(chat_id)
            return False
        except ChatMigrated as migrated:
            new_id = int(migrated.new_chat_id)
            logger.info("group %s became supergroup %s; moving its settings", chat_id, new_id)
            await store.migrate_chat(chat_id, new_id)
            chat_id = new_id
            await bot.send_message(chat_id, text)
        MESSAGES_SENT.inc()
    return True
