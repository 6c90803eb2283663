"""Quiet hours at work: what the bot sends of its own accord waits while a chat is quiet.

Digests (and, later, alerts) go out through ``hold_or_send``: inside the chat's quiet
hours (in its own zone) the messages are held in Redis until the window ends, otherwise
they are sent. When a window ends, the replica that claims the chat's quiet end
(``Store.claim_quiet_ends``) sends everything held as one message, into the digest's
forum topic if it has one, so a batch goes out once however many replicas run; held
messages and their quiet end are ordinary Redis keys, so a restart, a replica dying or a
Redis restart with persistence loses nothing.
Replies to commands never come here: they are never held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from telegram import Bot

from newsbot import render
from newsbot.quiet import is_quiet, quiet_ends
from newsbot.sender import send_messages
from newsbot.store import Store

logger = logging.getLogger(__name__)

HEADING = "While you were quiet"


def combine(messages: Sequence[str]) -> list[str]:
    """Held messages as one message under one heading (split only past Telegram's limit)."""
    lines = [f"<b>{render.escape(HEADING)}</b>", ""]
    for index, message in enumerate(messages):
        if index:
            lines.append("")
        lines.extend(message.split("\n"))
    return render.split_message(lines)


async def hold_if_quiet(
    store: Store, chat_id: int, messages: Sequence[str], now: float | None = None
) -> bool:
    """Hold messages until the chat's quiet hours end, if it is quiet now; tell whether."""
    now = time.time() if now is None else now
    zone, quiet = await store.get_clock(chat_id)
    if quiet is None or not is_quiet(now, quiet, zone):
        return False
    await store.hold(chat_id, messages, quiet_ends(now, quiet, zone))
    return True


async def hold_or_send(
    bot: Bot, store: Store, chat_id: int, messages: Sequence[str], now: float | None = None
) -> bool:
    """Send messages, or hold them while the chat is quiet; False if it cannot be reached."""
    return await hold_if_quiet(store, chat_id, messages, now) or await send_messages(
        bot, store, chat_id, messages
    )


async def deliver_held(bot: Bot, store: Store, chat_id: int, now: float | None = None) -> None:
    """Send what the chat's quiet hours held as one message, then forget it (claimed first)."""
    try:
        now = time.time() if now is None else now
        messages = await store.held(chat_id)
        if messages and await store.is_stopped(chat_id):
            messages = []  # /stop since: silence (set_stopped drops them too)
        zone, quiet = await store.get_clock(chat_id)
        if messages and quiet is not None and is_quiet(now, quiet, zone):
            # Quiet again (the window was moved, or the zone changed): wait for its end.
            await store.reschedule_held(chat_id, quiet_ends(now, quiet, zone))
            return
        # The batch goes where the digest goes: its forum topic, if it has one.
        topic = (await store.delivery(chat_id)).digest_thread if messages else None
        if not messages or await send_messages(
            bot, store, chat_id, combine(messages), thread_id=topic
        ):
            # Messages held while these were sent stay, due at the end of their own window.
            await store.release_held(chat_id, len(messages))
        # Unreachable: send_messages has forgotten the chat, its held messages included.
    except Exception:
        # Not released: the claim runs out and the batch is tried again.
        logger.exception("delivering the held messages of chat %s failed", chat_id)
