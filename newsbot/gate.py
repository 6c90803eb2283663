"""The gate every update passes before the commands: who may run what, and where.

It runs in its own handler group before the commands (``Handlers.register``) and stops
an update there (``ApplicationHandlerStop``) when: the chat is not allowed
(``NEWSBOT_ALLOWED_CHATS``); the chat is stopped and this is not ``/start``; the message
is too long to read; in a group, a command that changes something comes from someone
not an admin (``admins``); or a channel named in the private chat is not one the sender
manages (``channels``). Button presses and group migrations pass: they check for
themselves.
"""

from __future__ import annotations

import logging
import re

from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes

from newsbot import render
from newsbot.admins import REFUSAL, Admins
from newsbot.channels import aim_at_channel, command_argument, target
from newsbot.config import Settings
from newsbot.replies import Reply
from newsbot.sender import remember_delivery
from newsbot.store import Store, update_scope

logger = logging.getLogger(__name__)

# A command longer than this is refused before it is parsed.
MAX_ARGUMENT_LENGTH = 4000
# "/command" or "/command@botname" at the start of a message, as Telegram marks them.
_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?=\s|$)")


class Gate:
    """Lets an update through to the commands, or stops it with a reason."""

    def __init__(self, settings: Settings, store: Store, admins: Admins, reply: Reply) -> None:
        self.settings = settings
        self.store = store
        self.admins = admins
        self.reply = reply
        # The bot's commands, known once they are registered (Handlers.register).
        self.commands: frozenset[str] = frozenset()

    async def check(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Let through only allowed chats, and nothing but /start in a stopped chat."""
        target.set(None)  # a channel named by an earlier update (the console) is not ours
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            raise ApplicationHandlerStop
        allowed = self.settings.allowed_chats
        if allowed is not None and chat.id not in allowed:
            logger.info("ignoring chat %s: not in NEWSBOT_ALLOWED_CHATS", chat.id)
            raise ApplicationHandlerStop
        if update.callback_query is not None:
            return  # a button press: the buttons check who pressed, and always answer
        if message.migrate_to_chat_id or message.migrate_from_chat_id:
            return  # the group's settings must move, stopped or not
        # One read for the gate and the reply: the sender takes the delivery from here.
        stopped, delivery = await self.store.chat_state(chat.id)
        remember_delivery(update_scope(update.update_id), chat.id, delivery)
        if command_name(message.text) != "start" and stopped:
            raise ApplicationHandlerStop
        if message.text and len(message.text) > MAX_ARGUMENT_LENGTH:
            # In a group, what is not a command of ours (plain talk, or a command for
            # another bot) is none of this bot's business, however long it is.
            if chat.type == chat.PRIVATE or self.is_mine(message.text, context.bot.username):
                await self.reply(
                    update,
                    context,
                    "That message is too long for me to read. Send fewer sources at a time.",
                )
            raise ApplicationHandlerStop
        await self.admin_gate(update, context)

    async def admin_gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """In a group, let a command that changes something through only from an admin."""
        message = update.effective_message
        # A caption counts too: a file sent with "/import" changes the sources.
        text = (message.text or message.caption) if message else None
        command = command_name(text)
        if (
            command
            and self.is_mine(text or "", context.bot.username)
            and not await self.admins.may_run(
                context.bot, update, command, command_argument(update)
            )
        ):
            await self.reply(update, context, REFUSAL)
            raise ApplicationHandlerStop
        refusal = await aim_at_channel(
            context.bot, self.store, update, command, command_argument(update)
        )
        if refusal is not None:
            await self.reply(update, context, render.escape(refusal))
            raise ApplicationHandlerStop

    def is_mine(self, text: str, username: str | None) -> bool:
        """Tell whether a text is one of our commands, for no bot or for this bot by name."""
        match = _COMMAND.match(text)
        if match is None or match.group(1).lower() not in self.commands:
            return False
        addressee = match.group(2)
        return addressee is None or addressee.lower() == (username or "").lower()


def command_name(text: str | None) -> str | None:
    """The command of a message text, without slash and @botname: '/Fetch@bot x' -> 'fetch'."""
    if not text or not text.startswith("/"):
        return None
    return text[1:].split(maxsplit=1)[0].split("@", 1)[0].lower() if len(text) > 1 else ""
