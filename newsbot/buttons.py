"""Inline buttons: ``/settings`` and the ``/source`` listing, and what a press does.

A press is a callback query. It is answered exactly once (``answerCallbackQuery``; the
stream's per-update lock keeps a second replica from answering it again) and the
message is edited in place to show the new state. In a group only administrators may
press; anyone else gets an alert and nothing changes. A press on a message that no
longer matches the state (a source removed meanwhile) says so and shows the state now.

``callback_data`` is at most 64 bytes (Telegram's limit): ``set:<setting>:<value>`` and
``rm:<16 hex digits of the source's canonical name>``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import Application, CallbackQueryHandler, ContextTypes

from newsbot import keys, render, schedule
from newsbot.admins import PRESS_REFUSAL, Admins
from newsbot.channels import check_channel, target
from newsbot.config import Settings
from newsbot.models import Delivery, Source
from newsbot.store import Store

logger = logging.getLogger(__name__)

Reply = Callable[..., Awaitable[bool]]
MAX_CALLBACK_DATA = 64
# The digest intervals offered as buttons (0: no digest).
INTERVALS = (("off", 0), ("1h", 3600), ("6h", 6 * 3600), ("1d", 86_400))
FLAGS = {"previews": keys.FIELD_PREVIEWS, "silent": keys.FIELD_SILENT}
# Telegram's descriptions (lower-cased) of answers that need no action.
NOT_MODIFIED = "message is not modified"
# The pressed message cannot show the new state (too old, or deleted): the answer
# still says what changed, and the next /settings shows it.
CANNOT_EDIT = ("message can't be edited", "message to edit not found")
QUERY_TOO_OLD = "query is too old"
MAX_BUTTON_LABEL = 40


def source_token(source: Source) -> str:
    """A source's short name in callback_data: 16 hex digits of its canonical name."""
    return hashlib.sha256(source.key.encode()).hexdigest()[:16]


def settings_text(interval: int | None, delivery: Delivery) -> str:
    """The /settings message: each setting and its value."""
    digest = f"every {schedule.describe_interval(interval)}" if interval else "off"
    return (
        "<b>Settings</b>\n"
        f"Digest: {render.escape(digest)}\n"
        f"Link previews: {'on' if delivery.previews else 'off'}\n"
        f"Silent delivery: {'on' if delivery.silent else 'off'}"
    )


def settings_markup(
    interval: int | None, delivery: Delivery, min_interval: int, channel: int | None = None
) -> InlineKeyboardMarkup:
    """Buttons for every value of every setting; the current one ticked.

    The settings of a channel shown in the private chat name it at the end of their
    data (``set:digest:3600:-1001234567890``, well within 64 bytes).
    """
    suffix = f":{channel}" if channel is not None else ""

    def button(label: str, current: bool, data: str) -> InlineKeyboardButton:
        return InlineKeyboardButton(("✓ " if current else "") + label, callback_data=data + suffix)

    digest = [
        button(f"Digest {label}", (interval or 0) == seconds, f"set:digest:{seconds}")
        for label, seconds in INTERVALS
        if seconds == 0 or seconds >= min_interval
    ]
    rows = [digest]
    for name, title, on in (
        ("previews", "Link previews", delivery.previews),
        ("silent", "Silent", delivery.silent),
    ):
        rows.append(
            [
                button(f"{title} on", on, f"set:{name}:1"),
                button(f"{title} off", not on, f"set:{name}:0"),
            ]
        )
    return InlineKeyboardMarkup(rows)


def sources_text(sources: Sequence[Source]) -> str:
    """The listing, in the same words as the replies to /add and /remove."""
    if not sources:
        return "You have no sources. Set some with /source python, golang"
    return "Your sources:\n" + render.bullet_list(source.label for source in sources)


def sources_markup(
    sources: Sequence[Source], channel: int | None = None
) -> InlineKeyboardMarkup | None:
    """One remove button per source (a channel's listing names it: ``rm:<token>:<id>``)."""
    if not sources:
        return None
    suffix = f":{channel}" if channel is not None else ""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    "✕ " + render.shorten(source.label, MAX_BUTTON_LABEL),
                    callback_data=f"rm:{source_token(source)}{suffix}",
                )
            ]
            for source in sources
        ]
    )


class Buttons:
    """The commands that show buttons, and the presses on them."""

    def __init__(self, settings: Settings, store: Store, admins: Admins, reply: Reply) -> None:
        self.settings = settings
        self.store = store
        self.admins = admins
        self.reply = reply

    def register(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Add the press handlers to a python-telegram-bot application."""
        application.add_handler(CallbackQueryHandler(self.press_setting, pattern=r"^set:"))
        application.add_handler(CallbackQueryHandler(self.press_remove, pattern=r"^rm:"))
        application.add_handler(CallbackQueryHandler(self.press_unknown))

    # --- commands ------------------------------------------------------------------

    async def settings_menu(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/settings: the chat's settings, with a button for each value."""
        chat_id = target.get()  # a channel named first, in the private chat
        text, markup = await self._settings_view(chat_id or _chat_id(update), chat_id)
        await self.reply(update, context, text, markup=markup)

    async def source_list(
        self,
        update: Update,
        context: ContextTypes.DEFAULT_TYPE,
        sources: Sequence[Source],
        text: str,
    ) -> None:
        """/source without arguments: the listing ``text``, each source with a remove button."""
        channel = target.get()  # a channel named first, in the private chat
        await self.reply(update, context, text, markup=sources_markup(sources, channel))

    # --- presses -------------------------------------------------------------------

    async def press_setting(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A press on a /settings button: change that setting, show the new state."""
        query = update.callback_query
        assert query is not None and query.data is not None
        _, name, value, channel = ([*query.data.split(":"), "", "", ""])[:4]
        channel_id = int(channel) if channel.lstrip("-").isdigit() else None
        if not await self._may_press(update, context, channel_id):
            return
        chat_id = channel_id or _chat_id(update)
        changed = await self._apply(chat_id, name, value)
        text, markup = await self._settings_view(chat_id, channel_id)
        try:
            await _edit(query, text, markup)
        finally:  # answered even if the edit failed, so the button stops spinning
            await _answer(query, "Saved." if changed else "It was already so.")

    async def press_remove(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A press on a remove button of the /source listing: remove that source."""
        query = update.callback_query
        assert query is not None and query.data is not None
        _, token, channel = ([*query.data.split(":"), "", ""])[:3]
        channel_id = int(channel) if channel.lstrip("-").isdigit() else None
        if not await self._may_press(update, context, channel_id):
            return
        chat_id = channel_id or _chat_id(update)
        current = await self.store.get_sources(chat_id)
        gone = [source for source in current if source_token(source) == token]
        kept = [source for source in current if source_token(source) != token]
        if gone:
            await self.store.set_sources(chat_id, kept)
        try:
            await _edit(query, sources_text(kept), sources_markup(kept, channel_id))
        finally:  # answered even if the edit failed, so the button stops spinning
            await _answer(
                query,
                f"Removed {render.shorten(gone[0].label, 150)}."
                if gone
                else "That source was already removed.",
            )

    async def press_unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A press on a button of an older version: answered, so it stops spinning."""
        assert update.callback_query is not None
        await _answer(
            update.callback_query, "This button no longer works. Send the command again."
        )

    async def _may_press(
        self, update: Update, context: ContextTypes.DEFAULT_TYPE, channel_id: int | None = None
    ) -> bool:
        """Refuse a press by a non-admin in a group (or of the channel the buttons are
        about), or in a stopped chat, with an alert."""
        query = update.callback_query
        assert query is not None
        if not await self.admins.may_change(context.bot, update):
            await _answer(query, PRESS_REFUSAL, alert=True)
            return False
        if channel_id is not None and channel_id != _chat_id(update):
            # Rights change: asked again at every press, as when the channel was named.
            found = await check_channel(context.bot, query.from_user.id, str(channel_id))
            if isinstance(found, str):
                await _answer(query, found, alert=True)
                return False
        if await self.store.is_stopped(channel_id or _chat_id(update)):
            await _answer(query, "I am stopped here: send /start first.", alert=True)
            return False
        return True

    async def _apply(self, chat_id: int, name: str, value: str) -> bool:
        """Set one setting from a button's data; tell whether anything changed."""
        if name == "digest" and value.isdigit():
            seconds = int(value)
            if seconds and seconds < self.settings.min_interval:
                return False  # a button from before the minimum was raised
            if (await self.store.get_interval(chat_id) or 0) == seconds:
                return False
            if seconds:
                await self.store.subscribe(
                    chat_id, seconds, schedule.next_due(time.time(), seconds)
                )
            else:
                await self.store.unsubscribe(chat_id)
            return True
        if name in FLAGS and value in ("0", "1"):
            delivery = await self.store.delivery(chat_id)
            on = value == "1"
            if (delivery.previews if name == "previews" else delivery.silent) == on:
                return False
            await self.store.set_flag(chat_id, FLAGS[name], on)
            return True
        return False

    async def _settings_view(
        self, chat_id: int, channel: int | None = None
    ) -> tuple[str, InlineKeyboardMarkup]:
        interval = await self.store.get_interval(chat_id)
        delivery = await self.store.delivery(chat_id)
        text = settings_text(interval, delivery)
        if channel is not None:
            text = text.replace("<b>Settings</b>", f"<b>Settings of {channel}</b>", 1)
        return text, settings_markup(interval, delivery, self.settings.min_interval, channel)


async def _edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """Show the new state on the pressed message (unchanged already: nothing to do)."""
    try:
        if len(text) <= render.MESSAGE_LIMIT:
            await query.edit_message_text(text, reply_markup=markup)
        else:
            # A listing sent in several parts: the buttons are on its last part only.
            await query.edit_message_reply_markup(reply_markup=markup)
    except BadRequest as error:
        reason = error.message.lower()
        if any(known in reason for known in CANNOT_EDIT):
            logger.info("the pressed message %s cannot be edited: %s", query.id, error.message)
        elif NOT_MODIFIED not in reason:
            raise
        # Else another press (or replica) showed this very state already.


async def _answer(query: CallbackQuery, text: str, alert: bool = False) -> None:
    """Answer a press once; an answer Telegram no longer takes is dropped."""
    try:
        await query.answer(text, show_alert=alert)
    except BadRequest as error:
        if QUERY_TOO_OLD not in error.message.lower():
            raise
        # Answered already (a redelivered update), or too late: the user saw the
        # message change, and there is no one left to tell.
        logger.info("callback query %s not answered: %s", query.id, error.message)


def _chat_id(update: Update) -> int:
    assert update.effective_chat is not None
    return update.effective_chat.id
