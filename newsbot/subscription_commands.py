"""/subscribe, /unsubscribe and /alert: the news that comes to a chat unasked.

A digest comes on a schedule (``newsbot.schedule``: an interval, or a local time of day
or week), into the forum topic ``/subscribe`` was sent in; an alert comes with each new
item of a watched source (``newsbot.alerts``).
"""

from __future__ import annotations

import time

from telegram import Update
from telegram.ext import ContextTypes

from newsbot import alerts, render, schedule
from newsbot.channels import command_argument, command_chat
from newsbot.chats import topic_of
from newsbot.config import Settings
from newsbot.news import News
from newsbot.replies import Reply, with_refusals
from newsbot.sources.checking import SourceChecker
from newsbot.store import Store


class SubscriptionCommands:
    """Digests and alerts, answering through the handlers' reply."""

    def __init__(
        self, settings: Settings, store: Store, news: News, checker: SourceChecker, reply: Reply
    ) -> None:
        self.settings = settings
        self.store = store
        self.news = news
        self.checker = checker
        self.reply = reply

    async def subscribe(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/subscribe [interval | HH:MM | day HH:MM]: a digest of new items on a schedule."""
        chat_id = command_chat(update)
        try:
            plan = schedule.parse_schedule(command_argument(update), self.settings.min_interval)
        except ValueError as error:  # IntervalError or ScheduleError: the text says why
            await self.reply(update, context, render.sentence(str(error)))
            return
        zone = await self.store.get_zone(chat_id)
        first = schedule.next_run(time.time(), plan, zone)
        if isinstance(plan, schedule.LocalSchedule):
            nominal = 86_400 if plan.weekday is None else 7 * 86_400
            await self.store.subscribe(chat_id, nominal, first, plan)
            text = (
                f"Subscribed: a digest of what is new "
                f"{schedule.describe_schedule(plan)} ({render.escape(zone.key)} time). "
                f"The first comes at {schedule.describe_local_time(first, zone)}."
            )
        else:
            await self.store.subscribe(chat_id, plan, first)
            text = (
                f"Subscribed: a digest of what is new every "
                f"{schedule.describe_interval(plan)}. The first comes at "
                f"{schedule.describe_local_time(first, zone)}."
            )
        await self.store.set_digest_thread(chat_id, topic_of(update))  # None: General
        if not await self.store.get_sources(chat_id):
            text += "\nYou have no sources yet: add some with /source python, golang"
        await self.reply(update, context, text)

    async def unsubscribe(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/unsubscribe: stop the digest."""
        had = await self.store.unsubscribe(command_chat(update))
        await self.reply(update, context, "Digest stopped." if had else "You had no digest.")

    async def alert(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/alert [off] SOURCE...: watch sources for new items; without arguments, list."""
        message = update.effective_message
        thread_id = message.message_thread_id if message is not None else None
        head, refused = await alerts.alert_command(
            self.settings,
            self.store,
            self.news,
            self.checker.guard_sources,
            command_chat(update),
            thread_id,
            command_argument(update),
        )
        await self.reply(update, context, with_refusals(head, refused))
