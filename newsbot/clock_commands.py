"""The chat's clock commands: /tz (its time zone) and /quiet (its quiet hours).

Both change when digests come: a digest at a local time moves with the zone, and what
quiet hours held is rescheduled for when the (new) quiet hours end.
"""

from __future__ import annotations

import time
import zoneinfo
from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.ext import ContextTypes

from newsbot import quiet as quiet_hours
from newsbot import render, schedule
from newsbot.channels import command_argument, command_chat
from newsbot.store import Store

Reply = Callable[..., Awaitable[bool]]


class ClockCommands:
    """/tz and /quiet, answering through the handlers' reply."""

    def __init__(self, store: Store, reply: Reply) -> None:
        self.store = store
        self.reply = reply

    async def tz(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/tz [zone]: set the chat's time zone (IANA name); without one, show it."""
        chat_id = command_chat(update)
        text = command_argument(update)
        if not text:
            zone = await self.store.get_zone(chat_id)
            await self.reply(
                update,
                context,
                f"Your time zone is {render.escape(zone.key)} "
                f"(now {schedule.describe_local_time(time.time(), zone)}). "
                f"Change it with /tz {schedule.EXAMPLE_ZONE}",
            )
            return
        try:
            zone = schedule.parse_zone(text)
        except schedule.ScheduleError as error:
            await self.reply(update, context, render.sentence(str(error)))
            return
        await self.store.set_zone(chat_id, zone)
        reply = (
            f"Your time zone is now {render.escape(zone.key)} "
            f"(now {schedule.describe_local_time(time.time(), zone)})."
        )
        plan = await self.store.get_schedule(chat_id)
        if isinstance(plan, schedule.LocalSchedule):
            # The digest follows the chat's clock: the new clock sets its next time.
            due = schedule.next_local_due(time.time(), plan, zone)
            await self.store.reschedule(chat_id, due)
            reply += (
                f" Your digest ({schedule.describe_schedule(plan)}) next comes at "
                f"{schedule.describe_local_time(due, zone)}."
            )
        await self._reschedule_held(chat_id)
        await self.reply(update, context, reply)

    async def quiet(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/quiet [HH:MM-HH:MM | off]: hold digests in those local hours; without, show them."""
        chat_id = command_chat(update)
        text = command_argument(update)
        if not text:
            zone, window = await self.store.get_clock(chat_id)
            reply = quiet_setting(window, zone)
            if window is None:
                reply += ". Set them with /quiet 22:00-07:00"
            await self.reply(update, context, reply)
            return
        try:
            window = quiet_hours.parse_quiet(text)
        except schedule.ScheduleError as error:
            await self.reply(update, context, render.sentence(str(error)))
            return
        await self.store.set_quiet(chat_id, window)
        zone = await self.store.get_zone(chat_id)
        if window is None:
            reply = "Quiet hours are off. Anything held comes now."
        else:
            reply = (
                f"{quiet_setting(window, zone)}. Digests due then wait, and come as one "
                f"message when the quiet hours end. Replies to commands never wait."
            )
        await self._reschedule_held(chat_id)
        await self.reply(update, context, reply)

    async def _reschedule_held(self, chat_id: int) -> None:
        """After /quiet or /tz: what is held comes when the chat's (new) quiet hours end."""
        if await self.store.held_due(chat_id) is None:
            return
        now = time.time()
        zone, window = await self.store.get_clock(chat_id)
        quiet_now = window is not None and quiet_hours.is_quiet(now, window, zone)
        await self.store.reschedule_held(
            chat_id,
            quiet_hours.quiet_ends(now, window, zone) if window is not None and quiet_now else now,
        )


def quiet_setting(window: quiet_hours.QuietHours | None, zone: zoneinfo.ZoneInfo) -> str:
    """The chat's quiet hours as a settings line: 'Quiet hours: 22:00-07:00 (Europe/Berlin)'."""
    if window is None:
        return "Quiet hours: off"
    return f"Quiet hours: {window.text} ({render.escape(zone.key)} time)"
