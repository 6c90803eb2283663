"""The command menu: the commands Telegram suggests when a user types "/".

Registered with ``setMyCommands`` at start: the everyday commands anyone in a group may
use for the default scope, every command for group administrators
(``all_chat_administrators``) and for private chats, where the user owns the settings
(``all_private_chats``). Once per deploy: the hash of the lists is kept in Redis, and a
replica that finds the same hash there leaves the menu as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging

from telegram import (
    Bot,
    BotCommand,
    BotCommandScope,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeDefault,
)
from telegram.error import TelegramError

from newsbot.store import Store

logger = logging.getLogger(__name__)

EVERYDAY = (
    ("fetch", "The latest news from this chat's sources"),
    ("source", "List the sources (admins: set them)"),
    ("settings", "Digest, link previews and silent delivery"),
    ("help", "What the bot does, every command with an example"),
)
EVERY = (
    *EVERYDAY[:2],
    ("add", "Add sources: /add r/rust"),
    ("remove", "Remove sources: /remove golang"),
    ("subscribe", "A digest of what is new: /subscribe 6h"),
    ("unsubscribe", "Stop the digest"),
    *EVERYDAY[2:],
    ("stop", "No digests, and silence here until /start"),
    ("start", "Wake the bot up here"),
    ("channels", "The channels you manage through the bot"),
)
MENUS: tuple[tuple[BotCommandScope, tuple[tuple[str, str], ...]], ...] = (
    (BotCommandScopeDefault(), EVERYDAY),
    (BotCommandScopeAllPrivateChats(), EVERY),
    (BotCommandScopeAllChatAdministrators(), EVERY),
)


def menus_digest() -> str:
    """A hash of every scope's command list: it changes when a deploy changes them."""
    shown = [[scope.type, list(commands)] for scope, commands in MENUS]
    return hashlib.sha256(json.dumps(shown).encode()).hexdigest()


async def register_commands(bot: Bot, store: Store) -> bool:
    """Set the menus with setMyCommands unless this deploy did; tell whether it did now."""
    digest = menus_digest()
    if not await store.claim_commands(digest):
        return False
    try:
        for scope, commands in MENUS:
            await bot.set_my_commands(
                [BotCommand(name, text) for name, text in commands], scope=scope
            )
    except TelegramError:
        await store.unclaim_commands(digest)  # the next replica to start tries again
        raise
    logger.info("registered the command menu (%d scopes)", len(MENUS))
    return True
