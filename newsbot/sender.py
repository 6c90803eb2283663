"""Sending replies: split HTML messages, each part once, and chats that cannot be reached.

Pacing and retries of 429s and network errors happen below, in the rate limiter every
Telegram call goes through (cluster.ratelimit); here are the answers that change state:

* a reply of several parts is sent part by part, and each part Telegram took is
  recorded under the reply's scope (an update, or a chat's digest), so when the reply
  is tried again (the update redelivered after an outage, a replica killed mid-reply)
  only the parts that did not go out are sent. A reply of one part is not recorded:
  the update's done mark, written a moment after it, already covers it, and two more
  Redis round trips on every reply would only widen the moment between a reply and the
  state change after it;
* ``403`` (blocked, kicked, deactivated) and ``400 chat not found`` (a deleted account
  or group) delete the chat's state: nothing is retried, no digest comes again;
* a group that became a supergroup has its settings moved and the part goes there.

A send that would wait past the limiter's longest wait raises
``cluster.ratelimit.SendDeferred`` through here: the caller leaves its work for later.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from telegram import Bot
from telegram.error import BadRequest, ChatMigrated, Forbidden

from newsbot.metrics import CHATS_FORGOTTEN, MESSAGES_SENT, PARTS_SKIPPED
from newsbot.store import Store

logger = logging.getLogger(__name__)

# Telegram's description (lower-cased) for a chat that no longer exists.
CHAT_NOT_FOUND = "chat not found"


def part_id(index: int, text: str) -> str:
    """Name a part of a reply by its place and its text (a re-rendered reply differs)."""
    return f"{index}:{hashlib.sha1(text.encode('utf-8'), usedforsecurity=False).hexdigest()[:16]}"


def is_chat_gone(error: BadRequest) -> bool:
    """Tell whether a 400 means the chat no longer exists (deleted account or group)."""
    return CHAT_NOT_FOUND in error.message.lower()


async def send_messages(
    bot: Bot, store: Store, chat_id: int, messages: Sequence[str], scope: str | None = None
) -> bool:
    """Send HTML messages to a chat in order; False if the chat cannot be reached.

    With a ``scope`` and more than one part, the parts already sent under it are
    skipped, and each part sent is recorded there.
    """
    recorded = scope is not None and len(messages) > 1
    done = await store.sent_parts(scope) if scope is not None and recorded else set()
    for index, text in enumerate(messages):
        part = part_id(index, text)
        if part in done:
            PARTS_SKIPPED.inc()
            continue
        try:
            await bot.send_message(chat_id, text)
        except Forbidden as error:
            # Blocked by the user, kicked from the group: stop for good.
            logger.info(
                "chat %s cannot be reached (%s); its state is deleted", chat_id, error.message
            )
            await store.forget_chat(chat_id)
            CHATS_FORGOTTEN.labels(reason="forbidden").inc()
            return False
        except ChatMigrated as migrated:
            new_id = int(migrated.new_chat_id)
            logger.info("group %s became supergroup %s; moving its settings", chat_id, new_id)
            await store.migrate_chat(chat_id, new_id)
            chat_id = new_id
            await bot.send_message(chat_id, text)
        except BadRequest as error:
            if not is_chat_gone(error):
                raise
            # A deleted account or group: it will never be found again.
            logger.info("chat %s no longer exists; its state is deleted", chat_id)
            await store.forget_chat(chat_id)
            CHATS_FORGOTTEN.labels(reason="not found").inc()
            return False
        if scope is not None and recorded:
            await store.mark_part_sent(scope, part)
        MESSAGES_SENT.inc()
    return True
