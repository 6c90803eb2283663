"""The chat commands: parse the arguments, call the store or the news, reply.

Each handler is named after its command. Replies are Telegram HTML built by ``render``;
sending goes through ``sender`` (blocked chats, migrated groups) and, below it, the
shared rate limiter.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError
from telegram import Chat, ChatMember, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Forbidden, NetworkError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    JobQueue,
    MessageHandler,
    TypeHandler,
    filters,
)

from newsbot import alerts, opml, render, schedule, source_health
from newsbot import filters as rules
from newsbot.admins import REFUSAL, Admins
from newsbot.buttons import Buttons
from newsbot.channels import ChannelList, aim_at_channel, command_argument, command_chat, target
from newsbot.chats import INTRODUCTION, topic_of
from newsbot.clock_commands import ClockCommands
from newsbot.cluster.ratelimit import SendDeferred
from newsbot.config import Settings
from newsbot.errors import InvalidSource
from newsbot.merge import merge_news
from newsbot.metrics import CHATS_FORGOTTEN
from newsbot.models import Source
from newsbot.news import News, source_digest
from newsbot.sender import remember_delivery, send_messages
from newsbot.sources.base import parse_source, parse_sources
from newsbot.sources.discovery import NO_FEED_LINK
from newsbot.sources.guard import Guard
from newsbot.store import Store, update_scope

# The python-telegram-bot application as Newsbot builds it: the library's default types.
App = Application[
    ExtBot[None],
    ContextTypes.DEFAULT_TYPE,
    dict[Any, Any],
    dict[Any, Any],
    dict[Any, Any],
    JobQueue[ContextTypes.DEFAULT_TYPE],
]

logger = logging.getLogger(__name__)

# A command longer than this is refused before it is parsed.
MAX_ARGUMENT_LENGTH = 4000
# A reply names at most this many refused words; a flood of them is counted, so the
# answer to one message stays one message however many words it held.
MAX_REFUSALS_SHOWN = 10
# "/command" or "/command@botname" at the start of a message, as Telegram marks them.
_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?=\s|$)")

HELP = """<b>Newsbot</b> brings you the news you choose: subreddits and RSS/Atom feeds.

/source <i>python, golang, https://example.org/feed.xml</i> – set your sources
/source – list your sources
/add <i>r/rust</i> – add sources
/remove <i>golang</i> – remove sources
/fetch – the latest news from your sources
/subscribe <i>6h</i> – a digest of what is new, every 30m, 6h, 1d… (default 1d)
/subscribe <i>08:00</i> – a digest every day at 08:00 your time (<i>mon 08:00</i>: weekly)
/unsubscribe – stop the digest
/filter <i>python rust -"game dev"</i> – keep or drop items (<i>*</i>: every source)
/alert <i>r/python</i> – each new item as it appears; /alert lists; /alert off <i>r/python</i>
/export – your sources as an OPML file; send me an .opml file to import one
/tz <i>Europe/Berlin</i> – your time zone (default UTC)
/quiet <i>22:00-07:00</i> – hold digests at night, sent as one message when it ends; /quiet off
/settings – digest, link previews and silent delivery, with buttons
/channels – the channels you manage here (<code>/source @mychannel python</code>)
/stop – no digests, and silence here until /start
/help – this message

Subreddits by name (<code>python</code> or <code>r/python</code>), feeds by their \
http(s) URL; separate them with commas or spaces."""


class Handlers:
    """Every chat command, wired to the store and the news."""

    def __init__(
        self, settings: Settings, store: Store, news: News, guard: Guard | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.news = news
        # The news' guard by default: one resolver, so a name checked here is known
        # when it is first fetched.
        self.guard = guard or news.guard
        # Updates whose handling met an outage; the consumer leaves them pending.
        self.deferred: set[int] = set()
        # Updates whose reply must wait out a rate limit, and for how long (seconds).
        self.held: dict[int, float] = {}
        self.commands: frozenset[str] = frozenset()
        self.admins = Admins(store)
        self.buttons = Buttons(settings, store, self.admins, self.reply)
        self.channel_list = ChannelList(store, self.reply)
        self.clock = ClockCommands(store, self.reply)

    def register(self, application: App) -> None:
        """Add the handlers to a python-telegram-bot application."""
        # Before the gate, which lets only messages through: the bot's own membership.
        application.add_handler(
            ChatMemberHandler(self.my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER), group=-2
        )
        application.add_handler(TypeHandler(Update, self.gate), group=-1)
        commands = {
            "start": self.start,
            "help": self.help,
            "source": self.source,
            "sources": self.source,
            "add": self.add,
            "remove": self.remove,
            "fetch": self.fetch,
            "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe,
            "stop": self.stop,
            "settings": self.buttons.settings_menu,
            "channels": self.channel_list.channels,
            "filter": self.filter,
            "export": self.export,
            "import": self.import_,
            "tz": self.clock.tz,
            "quiet": self.clock.quiet,
            "alert": self.alert,
        }
        self.commands = frozenset(commands)
        # Commands posted in a channel (channel_post) too: the channel's admins post them.
        posts = filters.UpdateType.MESSAGES | filters.UpdateType.CHANNEL_POSTS
        for name, callback in commands.items():
            application.add_handler(CommandHandler(name, callback, filters=posts))
        self.buttons.register(application)
        application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self.migrate))
        application.add_handler(MessageHandler(filters.Document.ALL, self.document))
        application.add_handler(
            MessageHandler(filters.ChatType.PRIVATE & filters.COMMAND, self.unknown)
        )
        application.add_handler(
            MessageHandler(
                filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND, self.unknown
            )
        )
        application.add_error_handler(self.error)

    async def reply(
        self,
        update: Update,
        context: ContextTypes.DEFAULT_TYPE,
        messages: str | Sequence[str],
        markup: InlineKeyboardMarkup | None = None,
        into: int | None = None,
    ) -> bool:
        """Send HTML to the chat the update came from.

        Each part goes once however often the update is handled. If the chat cannot be
        reached (its state is then deleted), or must wait longer than a worker may (the
        update is then deferred: left pending and handled again later), the handler
        stops here.
        """
        if isinstance(messages, str):
            messages = render.split_message(messages.split("\n"))
        chat = update.effective_chat
        if chat is None or not messages:
            return False
        into = chat.id if into is None else into  # a channel named in the private chat
        try:
            sent = await send_messages(
                context.bot,
                self.store,
                into,
                messages,
                scope=update_scope(update.update_id),
                thread_id=topic_of(update) if into == chat.id else None,
                markup=markup,
            )
        except SendDeferred as deferred:
            logger.info("update %s deferred: %s", update.update_id, deferred)
            self.held[update.update_id] = deferred.wait_seconds
            raise ApplicationHandlerStop from None
        if not sent:
            raise ApplicationHandlerStop  # the chat is gone; nothing more to do for it
        return True

    # --- before every command ------------------------------------------------------

    async def gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
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
        if _command(message.text) != "start" and stopped:
            raise ApplicationHandlerStop
        if message.text and len(message.text) > MAX_ARGUMENT_LENGTH:
            # In a group, what is not a command of ours (plain talk, or a command for
            # another bot) is none of this bot's business, however long it is.
            if chat.type == chat.PRIVATE or self._is_mine(message.text, context.bot.username):
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
        command = _command(text)
        if (
            command
            and self._is_mine(text or "", context.bot.username)
            and not await self.admins.may_run(context.bot, update, command, _argument(update))
        ):
            await self.reply(update, context, REFUSAL)
            raise ApplicationHandlerStop
        refusal = await aim_at_channel(context.bot, self.store, update, command, _argument(update))
        if refusal is not None:
            await self.reply(update, context, render.escape(refusal))
            raise ApplicationHandlerStop

    def _is_mine(self, text: str, username: str | None) -> bool:
        """Tell whether a text is one of our commands, for no bot or for this bot by name."""
        match = _COMMAND.match(text)
        if match is None or match.group(1).lower() not in self.commands:
            return False
        addressee = match.group(2)
        return addressee is None or addressee.lower() == (username or "").lower()

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

    # --- commands --------------------------------------------------------------------

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start: wake the chat up (after /stop) and say what the bot does."""
        assert update.effective_chat is not None
        await self.store.set_stopped(update.effective_chat.id, False)
        await self.reply(update, context, HELP)

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/help: every command with an example."""
        await self.reply(update, context, HELP)

    async def source(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/source a, b, c: set the chat's sources; without arguments, list them."""
        chat_id = _chat_id(update)
        text = _argument(update)
        if not text:
            listed = await self.store.get_sources(chat_id)
            marks = await self._marks(chat_id, listed)
            await self.buttons.source_list(update, context, listed, _list_reply(listed, marks))
            return
        sources, refused = parse_sources(text)
        # Alerts on other sources count toward the limit too.
        extra = await alerts.alert_only_count(self.store, chat_id, [s.key for s in sources])
        if len(sources) + extra > self.settings.max_sources:
            # Counted before any lookup: a list of dead host names must not hold the
            # shared resolver threads only to be refused for its length.
            refused.append(
                (
                    "",
                    f"at most {self.settings.max_sources} sources, "
                    f"you gave {len(sources)}" + (f" and have {extra} alerts" if extra else ""),
                )
            )
            sources = []
        sources, more_refused = await self.guard_sources(sources)
        refused += more_refused
        sources, found, more_refused = await self.find_feeds(sources)
        refused += more_refused
        if sources:
            await self.store.set_sources(chat_id, sources)
            await self.drop_stale_filters(chat_id, sources)
            head = "Your sources are now:\n" + render.bullet_list(s.label for s in sources)
        else:
            head = "Your sources are unchanged."
        await self.reply(update, context, _with_refusals(_with_found(head, found), refused))

    async def add(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/add a b: add sources to the chat's list."""
        chat_id = _chat_id(update)
        text = _argument(update)
        if not text:
            await self.reply(update, context, "Add what? For example: /add r/rust")
            return
        current = await self.store.get_sources(chat_id)
        new, refused = parse_sources(text)
        known = {source.key for source in current}
        new = [source for source in new if source.key not in known]
        extra = await alerts.alert_only_count(self.store, chat_id, [s.key for s in current + new])
        if len(current) + len(new) + extra > self.settings.max_sources:
            refused.append(
                ("", f"at most {self.settings.max_sources} sources; you have {len(current)}")
            )
            new = []
        new, more_refused = await self.guard_sources(new)
        refused += more_refused
        new, found, more_refused = await self.find_feeds(new)
        refused += more_refused
        new = [source for source in new if source.key not in known]
        if new:
            await self.store.set_sources(chat_id, current + new)
        await self.reply(
            update,
            context,
            _with_refusals(_with_found(_list_reply(current + new), found), refused),
        )

    async def remove(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/remove a b: remove sources from the chat's list."""
        chat_id = _chat_id(update)
        text = _argument(update)
        if not text:
            await self.reply(update, context, "Remove what? For example: /remove golang")
            return
        current = await self.store.get_sources(chat_id)
        gone, refused = parse_sources(text)
        gone_keys = {source.key for source in gone}
        kept = [source for source in current if source.key not in gone_keys]
        missing = gone_keys - {source.key for source in current}
        refused += [(s.label, "not in your list") for s in gone if s.key in missing]
        if len(kept) != len(current):
            await self.store.set_sources(chat_id, kept)
            await self.drop_stale_filters(chat_id, kept)
        await self.reply(update, context, _with_refusals(_list_reply(kept), refused))

    async def fetch(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/fetch: the latest items of every source."""
        chat_id = _chat_id(update)
        sources = await self.store.get_sources(chat_id)
        if not sources:
            await self.reply(
                update, context, "You have no sources yet. Try: /source python, golang"
            )
            return
        news = await self.news.for_chat(chat_id, sources)
        merged = merge_news(news)
        if await self.reply(update, context, render.render_merged(merged), into=chat_id):
            # What /fetch showed is not news for the next digest, from any source.
            await self.store.mark_seen(
                chat_id, [entry.key for block in merged for entry in block.entries]
            )

    async def subscribe(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/subscribe [interval | HH:MM | day HH:MM]: a digest of new items on a schedule."""
        chat_id = _chat_id(update)
        try:
            plan = schedule.parse_schedule(_argument(update), self.settings.min_interval)
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
        had = await self.store.unsubscribe(_chat_id(update))
        await self.reply(update, context, "Digest stopped." if had else "You had no digest.")

    async def stop(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/stop: no digests, and silence in this chat until /start."""
        await self.reply(
            update,
            context,
            "Stopped. No more digests, and I stay silent here until you send /start.",
        )
        await self.store.set_stopped(_chat_id(update), True)

    async def filter(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/filter SOURCE RULES: set a source's rules; /filter lists; SOURCE off clears."""
        chat_id = _chat_id(update)
        text = _argument(update)
        sources = await self.store.get_sources(chat_id)
        chat_rules = _current_rules(await self.store.get_filters(chat_id), sources)
        if not text:
            await self.reply(update, context, _filters_reply(chat_rules, sources))
            return
        word, rest = ([*text.split(maxsplit=1), ""])[:2]
        rest = rest.strip()
        key = _filter_key(word, sources)
        if key is None:
            await self.reply(
                update,
                context,
                f"{render.escape(word)} is not one of your "
                "sources. Name one of them, or * for all:\n"
                + render.bullet_list(s.label for s in sources)
                if sources
                else "You have no sources yet. Try: /source python, golang",
            )
            return
        name = _source_name(key, sources)
        if not rest:
            await self.reply(
                update,
                context,
                _filters_reply({key: chat_rules[key]} if key in chat_rules else {}, sources),
            )
            return
        if rest.lower() == rules.OFF:
            chat_rules.pop(key, None)
            await self.store.set_filters(chat_id, chat_rules)
            await self.reply(update, context, f"No filters on {render.escape(name)} now.")
            return
        try:
            new = rules.parse_rules(rest)
        except rules.FilterError as error:
            await self.reply(
                update, context, "Filters unchanged: " + render.escape(str(error)) + "."
            )
            return
        others = rules.count_rules({k: v for k, v in chat_rules.items() if k != key})
        if others + len(new) > rules.MAX_RULES:
            await self.reply(
                update,
                context,
                f"Filters unchanged: at most {rules.MAX_RULES} "
                f"rules a chat; you have {others} on other sources and gave "
                f"{len(new)}.",
            )
            return
        chat_rules[key] = new
        await self.store.set_filters(chat_id, chat_rules)
        await self.reply(
            update,
            context,
            f"Filters on {render.escape(name)} are now: "
            f"<code>{render.escape(rules.render_rules(new))}</code>\n" + _explain(new),
        )

    async def alert(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/alert [off] SOURCE...: watch sources for new items; without arguments, list."""
        message = update.effective_message
        thread_id = message.message_thread_id if message is not None else None
        head, refused = await alerts.alert_command(
            self.settings,
            self.store,
            self.news,
            self.guard_sources,
            _chat_id(update),
            thread_id,
            _argument(update),
        )
        await self.reply(update, context, _with_refusals(head, refused))

    async def export(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/export: the chat's sources as an OPML file."""
        chat_id = _chat_id(update)
        sources = await self.store.get_sources(chat_id)
        if not sources:
            await self.reply(
                update,
                context,
                "You have no sources to export. Set some with /source python, golang",
            )
            return
        assert update.effective_chat is not None
        chat_id = update.effective_chat.id  # the file comes here, for a channel too
        try:
            await context.bot.send_document(
                chat_id,
                document=opml.write_opml(sources),
                filename=opml.EXPORT_FILE_NAME,
                caption=f"Your {len(sources)} source{'s' if len(sources) != 1 else ''}. "
                "Send this file to me in any chat to import them there.",
            )
        except Forbidden:
            # Blocked or kicked between the command and the answer, as sender handles it.
            logger.info("chat %s cannot be reached (blocked or kicked); forgotten", chat_id)
            await self.store.forget_chat(chat_id)

    async def import_(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/import as a text: say how to send the file."""
        await self.reply(
            update,
            context,
            "Send me an OPML file (.opml or .xml, at most "
            f"{opml.MAX_OPML_BYTES // 1024} KB) with the caption /import, and "
            "I add the feeds it names to your sources.",
        )

    async def document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A document: import it when it is an .opml/.xml file or captioned /import."""
        message, chat = update.effective_message, update.effective_chat
        assert message is not None and chat is not None
        document = message.document
        if document is None:
            return
        captioned = (
            bool(message.caption)
            and _command(message.caption) == "import"
            and self._is_mine(message.caption or "", context.bot.username)
        )
        named = (document.file_name or "").lower().endswith((".opml", ".xml"))
        # In a group only a file captioned /import: XML shared among members is theirs.
        if not captioned and not (named and chat.type == chat.PRIVATE):
            return
        limit = opml.MAX_OPML_BYTES
        too_big = f"That file is too big to import: at most {limit // 1024} KB."
        if document.file_size is not None and document.file_size > limit:
            await self.reply(update, context, too_big)  # not even fetched
            return
        try:
            file = await context.bot.get_file(document.file_id)
            if file.file_size is not None and file.file_size > limit:
                await self.reply(update, context, too_big)
                return
            data = bytes(await file.download_as_bytearray())
        except BadRequest as error:
            await self.reply(
                update,
                context,
                "Telegram would not give me that file: " + render.escape(error.message),
            )
            return
        if len(data) > limit:
            await self.reply(update, context, too_big)
            return
        try:
            feeds = opml.read_opml(data)
        except opml.OpmlError as error:
            await self.reply(
                update, context, "Nothing imported: " + render.escape(str(error)) + "."
            )
            return
        await self.reply(update, context, await self._import(chat.id, feeds))

    async def _import(self, chat_id: int, feeds: Sequence[opml.Feed]) -> str:
        """Add an OPML file's feeds to the chat's sources; the reply."""
        current = await self.store.get_sources(chat_id)
        known = {source.key for source in current}
        candidates: list[Source] = []
        refused: list[tuple[str, str]] = []
        already = 0
        for feed in feeds:
            try:
                source = opml.source_of(feed.url)
            except InvalidSource as error:
                refused.append((feed.url, f"invalid: {error}"))
                continue
            if source.key in known:
                already += 1
                continue
            known.add(source.key)
            candidates.append(source)
        extra = await alerts.alert_only_count(
            self.store, chat_id, [s.key for s in current + candidates]
        )
        room = max(0, self.settings.max_sources - len(current) - extra)
        refused += [
            (source.label, f"over the limit of {self.settings.max_sources} sources")
            for source in candidates[room:]
        ]
        # Only as many as fit are looked up: a file of a thousand dead hosts must not
        # hold the resolver threads for sources that would be refused anyway.
        accepted, guarded = await self.guard_sources(candidates[:room])
        refused += [
            (label, "private or local address" if "private" in reason else reason)
            for label, reason in guarded
        ]
        if accepted:
            await self.store.set_sources(chat_id, current + accepted)
            head = (
                f"Imported {len(accepted)} source{'s' if len(accepted) != 1 else ''}:\n"
                + render.bullet_list(source.label for source in accepted)
            )
        else:
            head = "Nothing imported: your sources are unchanged."
        if already:
            head += f"\n{already} already in your list."
        if not feeds:
            head += "\nThe file names no feeds (no outline with an xmlUrl)."
        return _with_refusals(head, refused)

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

    async def unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Anything else in a private chat: point to /help."""
        await self.reply(
            update, context, "I did not understand that. Send /help to see what I can do."
        )

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log an error; tell the user it was ours, or retry the update after an outage."""
        if is_outage(context.error):
            # Redis or Telegram is unreachable: the update is handled again later, so
            # the user gets the real answer rather than an apology.
            logger.warning("update deferred: %s", context.error)
            if isinstance(update, Update):
                self.deferred.add(update.update_id)
            return
        logger.error("handling an update failed", exc_info=context.error)
        if isinstance(update, Update) and update.effective_chat is not None:
            await self.reply(
                update,
                context,
                "Sorry, something went wrong on my side. Please try again in a minute.",
            )

    # --- helpers for the commands ----------------------------------------------------

    async def _marks(self, chat_id: int, sources: Sequence[Source]) -> list[str]:
        """The ⚠️ mark of each failing source (reason, since when in the chat's zone)."""
        if not sources:
            return []
        entries = await self.store.get_cached_many([source_digest(s) for s in sources])
        zone = await self.store.get_zone(chat_id)
        return [source_health.listing_mark(entry, zone) for entry in entries]

    async def drop_stale_filters(self, chat_id: int, sources: Sequence[Source]) -> None:
        """Forget the filter rules of sources the chat no longer has.

        Otherwise a source removed and added again later would come back filtered.
        """
        chat_rules = await self.store.get_filters(chat_id)
        current = _current_rules(chat_rules, sources)
        if current != chat_rules:
            await self.store.set_filters(chat_id, current)

    async def check_sources(self, text: str) -> tuple[list[Source], list[tuple[str, str]]]:
        """Parse sources and run the SSRF guard on the feeds, all in parallel."""
        sources, refused = parse_sources(text)
        accepted, more_refused = await self.guard_sources(sources)
        return accepted, refused + more_refused

    async def guard_sources(
        self, sources: Sequence[Source]
    ) -> tuple[list[Source], list[tuple[str, str]]]:
        """Run the SSRF guard on parsed sources in parallel: the accepted and the refused."""
        checks = await asyncio.gather(*(self._check(source) for source in sources))
        accepted = [source for source, reason in zip(sources, checks) if reason is None]
        refused = [
            (source.label, reason) for source, reason in zip(sources, checks) if reason is not None
        ]
        return accepted, refused

    async def find_feeds(
        self, sources: Sequence[Source]
    ) -> tuple[list[Source], list[str], list[tuple[str, str]]]:
        """Fetch the feeds (through the shared cache) and store what they really are.

        A web page stands for the first feed it links to (which passes the guard too), a
        feed that moved permanently for its new URL, and a page without a feed link is
        refused. Returns the sources, lines saying what was found, and the refusals.
        """
        feeds = [source for source in sources if source.kind == "feed"]
        entries = dict(zip((source.key for source in feeds), await self.news.entries(feeds)))
        result: list[Source] = []
        found: list[str] = []
        refused: list[tuple[str, str]] = []
        for source in sources:
            entry = entries.get(source.key)
            if entry is not None and entry.error == NO_FEED_LINK:
                refused.append((source.label, NO_FEED_LINK))
                continue
            target = entry.discovered or entry.moved_to if entry is not None else None
            if entry is None or not target:
                result.append(source)
                continue
            try:
                feed = parse_source(target)
            except InvalidSource as error:
                refused.append((source.label, str(error)))
                continue
            feed = Source(kind="feed", key=feed.key, label=target)
            reason = await self._check(feed)
            if reason is not None:
                refused.append((source.label, f"its feed {target}: {reason}"))
                continue
            found.append(
                f"Found the feed of {source.label}: {target}"
                if entry.discovered
                else f"{source.label} moved to {target}"
            )
            result.append(feed)
        unique: dict[str, Source] = {}
        for source in result:
            unique.setdefault(source.key, source)  # a page and its feed, both given
        return list(unique.values()), found, refused

    async def _check(self, source: Source) -> str | None:
        if source.kind != "feed":
            return None
        try:
            # On the event loop, within the fetch deadline: no thread waits for a
            # name whose DNS never answers.
            await self.guard.check_url_async(source.key, self.news.fetch_seconds)
        except InvalidSource as error:
            return str(error)
        return None


def _command(text: str | None) -> str | None:
    """The command of a message text, without slash and @botname: '/Fetch@bot x' -> 'fetch'."""
    if not text or not text.startswith("/"):
        return None
    return text[1:].split(maxsplit=1)[0].split("@", 1)[0].lower() if len(text) > 1 else ""


# The command's argument and the chat it is about (see channels.py), shared with the
# modules of other command groups.
_argument = command_argument
_chat_id = command_chat


def _list_reply(sources: Sequence[Source], marks: Sequence[str] = ()) -> str:
    if not sources:
        return "You have no sources. Set some with /source python, golang"
    lines = render.bullet_list(source.label for source in sources).split("\n")
    # A mark is escaped markup of its own (source_health.listing_mark), one per source.
    return "Your sources:\n" + "\n".join(
        line + mark for line, mark in zip(lines, [*marks, *[""] * len(lines)])
    )


def _filter_key(word: str, sources: Sequence[Source]) -> str | None:
    """The key /filter means by a word: ``*``, or one of the chat's sources by label or key."""
    if word == rules.ALL_SOURCES:
        return word
    for source in sources:
        if word in (source.label, source.key):
            return source.key
    try:
        key = parse_source(word).key
    except InvalidSource:
        return None
    return key if any(source.key == key for source in sources) else None


def _source_name(key: str, sources: Sequence[Source]) -> str:
    if key == rules.ALL_SOURCES:
        return "all sources"
    return next((source.label for source in sources if source.key == key), key)


def _current_rules(
    chat_rules: dict[str, list[rules.Rule]], sources: Sequence[Source]
) -> dict[str, list[rules.Rule]]:
    """The rules of sources the chat still has (a removed source's rules go with it)."""
    keys = {source.key for source in sources} | {rules.ALL_SOURCES}
    return {key: found for key, found in chat_rules.items() if key in keys}


def _filters_reply(chat_rules: dict[str, list[rules.Rule]], sources: Sequence[Source]) -> str:
    if not chat_rules:
        return (
            'No filters. For example: <code>/filter python rust -"game dev"</code> '
            "keeps items naming rust and drops those naming game dev; "
            "<code>/filter python off</code> clears them."
        )
    lines = ["Your filters:"]
    for key, found in chat_rules.items():
        lines.append(
            f"• {render.escape(_source_name(key, sources))}: "
            f"<code>{render.escape(rules.render_rules(found))}</code>"
        )
    return "\n".join(lines)


def _explain(found: Sequence[rules.Rule]) -> str:
    """What a source's rules do, in a sentence."""
    keep = any(not rule.drop for rule in found)
    drop = any(rule.drop for rule in found)
    if keep and drop:
        return "Shown: items matching a keep rule and no - rule."
    if keep:
        return "Shown: only items matching one of these."
    return "Shown: every item but those matching a - rule."


def _with_found(head: str, found: Sequence[str]) -> str:
    """The reply's head, then what discovery found (each feed found, each move)."""
    return "\n\n".join([head, *("🔎 " + render.escape(line) for line in found)])


def _with_refusals(head: str, refused: list[tuple[str, str]]) -> str:
    """The reply's head, then one line per distinct refused word (the first few)."""
    named: dict[str, str] = {}
    for word, reason in refused:
        if word:
            named.setdefault(word, reason)  # a word typed twice is named once
    general = list(dict.fromkeys(reason for word, reason in refused if not word))
    parts = [head]
    if named:
        shown = list(named.items())[:MAX_REFUSALS_SHOWN]
        lines = "Not added:\n" + render.refusals(shown)
        if len(named) > len(shown):
            lines += f"\n…and {len(named) - len(shown)} more"
        parts.append(lines)
    parts += ["⚠️ " + render.escape(reason[0].upper() + reason[1:]) for reason in general]
    return "\n\n".join(parts)


def is_outage(error: object) -> bool:
    """Tell whether an error means "try again later" rather than "this is a bug"."""
    if isinstance(error, BadRequest):
        return False
    return isinstance(error, RedisError | OSError | NetworkError)
