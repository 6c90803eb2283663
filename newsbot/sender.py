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
* a group that became a supergroup has its settings moved and the part goes there;
* ``400 message thread not found`` (the forum topic was deleted): the part goes to the
  General topic instead, after a one-line notice, and the digest and alerts bound to
  that topic are unbound, so the notice comes once.

Each part carries the chat's delivery settings (``Store.delivery``): silent delivery
(``disable_notification``), link previews (a preview of the part's first link, else
none), and the forum topic (``message_thread_id``): the one a command came from, or
for a digest the one ``/subscribe`` was sent in.

The delivery settings are read once an update: the gate reads them with the chat's
stopped flag and leaves them here (``remember_delivery``) for the replies to that
update; anything else (digests, alerts, notices) reads them as it sends.

A send that would wait past the limiter's longest wait raises
``cluster.ratelimit.SendDeferred`` through here: the caller leaves its work for later.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from telegram import Bot, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.error import BadRequest, ChatMigrated, Forbidden

from newsbot.metrics import CHATS_FORGOTTEN, MESSAGES_SENT, PARTS_SKIPPED
from newsbot.models import Delivery
from newsbot.store import Store, digest_scope

logger = logging.getLogger(__name__)

# Telegram's description (lower-cased) for a chat that no longer exists.
CHAT_NOT_FOUND = "chat not found"
# Telegram's description (lower-cased) for a forum topic that no longer exists.
THREAD_NOT_FOUND = "message thread not found"
TOPIC_GONE_NOTICE = (
    "⚠️ The topic I posted into is gone, so this comes to General. "
    "Send /subscribe or /alert in a topic to have digests or alerts there again."
)
# The delivery settings read for a reply scope and chat (see remember_delivery). A
# context variable: each update is handled in a task of its own, or after the one
# before it in its chat's, and the scope names the update it was read for.
_known_delivery: ContextVar[tuple[str, int, Delivery] | None] = ContextVar(
    "newsbot_known_delivery", default=None
)
# The first link of a rendered part: its preview is the one shown when previews are on.
_FIRST_LINK = re.compile(r'<a href="([^"]+)"')


def part_id(index: int, text: str) -> str:
    """Name a part of a reply by its place and its text (a re-rendered reply differs)."""
    return f"{index}:{hashlib.sha1(text.encode('utf-8'), usedforsecurity=False).hexdigest()[:16]}"


def is_chat_gone(error: BadRequest) -> bool:
    """Tell whether a 400 means the chat no longer exists (deleted account or group)."""
    return CHAT_NOT_FOUND in error.message.lower()


def is_thread_gone(error: BadRequest) -> bool:
    """Tell whether a 400 means the forum topic a message went to no longer exists."""
    return THREAD_NOT_FOUND in error.message.lower()


def remember_delivery(scope: str, chat_id: int, delivery: Delivery) -> None:
    """Keep a chat's delivery settings, just read, for the replies under ``scope``."""
    _known_delivery.set((scope, chat_id, delivery))


async def _delivery(store: Store, chat_id: int, scope: str | None) -> Delivery:
    """The chat's delivery settings: as read for this scope already, else from the store."""
    known = _known_delivery.get()
    if known is not None and scope is not None and known[:2] == (scope, chat_id):
        return known[2]
    return await store.delivery(chat_id)


def send_options(
    text: str,
    delivery: Delivery,
    thread_id: int | None,
    markup: InlineKeyboardMarkup | None = None,
) -> dict[str, Any]:
    """The sendMessage parameters beside the text for one part, by the chat's settings."""
    options: dict[str, Any] = {"disable_notification": delivery.silent}
    link = _FIRST_LINK.search(text) if delivery.previews else None
    if link is not None:
        options["link_preview_options"] = LinkPreviewOptions(
            is_disabled=False, url=html.unescape(link.group(1))
        )
    if thread_id is not None:
        options["message_thread_id"] = thread_id
    if markup is not None:
        options["reply_markup"] = markup
    return options


async def send_messages(
    bot: Bot,
    store: Store,
    chat_id: int,
    messages: Sequence[str],
    scope: str | None = None,
    thread_id: int | None = None,
    markup: InlineKeyboardMarkup | None = None,
) -> bool:
    """Send HTML messages to a chat in order; False if the chat cannot be reached.

    With a ``scope`` and more than one part, the parts already sent under it are
    skipped, and each part sent is recorded there. ``thread_id`` is the forum topic
    (a digest's scope uses the chat's bound one); ``markup`` goes on the last part.
    """
    recorded = scope is not None and len(messages) > 1
    done = await store.sent_parts(scope) if scope is not None and recorded else set()
    delivery = await _delivery(store, chat_id, scope)
    if thread_id is None and scope == digest_scope(chat_id):
        thread_id = delivery.digest_thread
    for index, text in enumerate(messages):
        part = part_id(index, text)
        if part in done:
            PARTS_SKIPPED.inc()
            continue
        last = index == len(messages) - 1
        options = send_options(text, delivery, thread_id, markup if last else None)
        sent_to, thread_gone = await _send_part(bot, store, chat_id, text, options, delivery)
        if sent_to is None:
            return False
        chat_id = sent_to  # a group that became a supergroup: the rest go there too
        if thread_gone:
            thread_id = None  # the topic is gone: the rest go to General, without a notice
        if scope is not None and recorded:
            await store.mark_part_sent(scope, part)
        MESSAGES_SENT.inc()
    return True


async def _send_part(
    bot: Bot,
    store: Store,
    chat_id: int,
    text: str,
    options: dict[str, Any],
    delivery: Delivery,
) -> tuple[int | None, bool]:
    """Send one part: the chat it went to, None if the chat cannot be reached (its state
    is then deleted); and whether its forum topic was gone (it went to General)."""
    try:
        await bot.send_message(chat_id, text, **options)
    except Forbidden as error:
        # Blocked by the user, kicked from the group: stop for good.
        logger.info("chat %s cannot be reached (%s); its state is deleted", chat_id, error.message)
        await store.forget_chat(chat_id)
        CHATS_FORGOTTEN.labels(reason="forbidden").inc()
        return None, False
    except ChatMigrated as migrated:
        new_id = int(migrated.new_chat_id)
        logger.info("group %s became supergroup %s; moving its settings", chat_id, new_id)
        await store.migrate_chat(chat_id, new_id)
        await bot.send_message(new_id, text, **options)
        return new_id, False
    except BadRequest as error:
        thread_id = options.get("message_thread_id")
        if thread_id is not None and is_thread_gone(error):
            # The topic was deleted: General instead, said once; a digest or alerts
            # bound to the topic are unbound, so the next go to General without a notice.
            logger.info("topic %s of chat %s is gone; sending to General", thread_id, chat_id)
            await store.drop_digest_thread(chat_id, thread_id)
            await store.drop_alert_thread(chat_id, thread_id)
            options.pop("message_thread_id")
            await bot.send_message(
                chat_id, TOPIC_GONE_NOTICE, disable_notification=delivery.silent
            )
            await bot.send_message(chat_id, text, **options)
            return chat_id, True
        if not is_chat_gone(error):
            raise
        # A deleted account or group: it will never be found again.
        logger.info("chat %s no longer exists; its state is deleted", chat_id)
        await store.forget_chat(chat_id)
        CHATS_FORGOTTEN.labels(reason="not found").inc()
        return None, False
    return chat_id, False
