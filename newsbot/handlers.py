"""The chat commands, registered with the application in one place.

``Handlers`` builds each group of commands (a module each: ``source_commands``,
``filter_commands``, ``subscription_commands``, ``clock_commands``, ``opml_commands``,
``channels``, ``buttons``), the gate that runs before them (``gate``: who may run what)
and the chat events (``chat_events``), and adds them to the python-telegram-bot
application. Each handler is named after its command; they answer through ``reply``.
Replies are Telegram HTML built by ``render``; sending goes through ``sender`` (blocked
chats, migrated groups) and, below it, the shared rate limiter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telegram import InlineKeyboardMarkup, Update
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

from newsbot import render
from newsbot.admins import Admins
from newsbot.buttons import Buttons
from newsbot.channels import ChannelList, command_chat
from newsbot.chat_events import ChatEvents
from newsbot.chats import topic_of
from newsbot.clock_commands import ClockCommands
from newsbot.config import Settings
from newsbot.filter_commands import FilterCommands
from newsbot.gate import Gate
from newsbot.news import News
from newsbot.opml_commands import OpmlCommands
from newsbot.sender import send_messages
from newsbot.source_commands import SourceCommands
from newsbot.sources.checking import SourceChecker
from newsbot.sources.guard import Guard
from newsbot.store import Store, update_scope
from newsbot.subscription_commands import SubscriptionCommands

# The python-telegram-bot application as Newsbot builds it: the library's default types.
App = Application[
    ExtBot[None],
    ContextTypes.DEFAULT_TYPE,
    dict[Any, Any],
    dict[Any, Any],
    dict[Any, Any],
    JobQueue[ContextTypes.DEFAULT_TYPE],
]

# The answer to an update whose handling failed by a bug of ours (app's error handler).
APOLOGY = "Sorry, something went wrong on my side. Please try again in a minute."

HELP = """<b>Newsbot</b> brings you the news you choose: subreddits and RSS, Atom and JSON feeds.

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
    """Every chat command and the gate before them, wired to the store and the news."""

    def __init__(
        self, settings: Settings, store: Store, news: News, guard: Guard | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.news = news
        # The news' guard by default: one resolver, so a name checked here is known
        # when it is first fetched.
        self.guard = guard or news.guard
        self.checker = SourceChecker(self.guard, news.fetch_seconds)
        self.admins = Admins(store)
        self.gate = Gate(settings, store, self.admins, self.reply)
        self.events = ChatEvents(settings, store, self.reply)
        self.buttons = Buttons(settings, store, self.admins, self.reply)
        self.sources = SourceCommands(
            settings, store, news, self.checker, self.buttons, self.reply
        )
        self.filters = FilterCommands(store, self.reply)
        self.subscriptions = SubscriptionCommands(settings, store, news, self.checker, self.reply)
        self.opml = OpmlCommands(settings, store, self.checker, self.gate.is_mine, self.reply)
        self.channel_list = ChannelList(store, self.reply)
        self.clock = ClockCommands(store, self.reply)

    def register(self, application: App) -> None:
        """Add the handlers to a python-telegram-bot application."""
        # Before the gate, which lets only messages through: the bot's own membership.
        application.add_handler(
            ChatMemberHandler(self.events.my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER),
            group=-2,
        )
        application.add_handler(TypeHandler(Update, self.gate.check), group=-1)
        commands = {
            "start": self.start,
            "help": self.help,
            "source": self.sources.source,
            "sources": self.sources.source,
            "add": self.sources.add,
            "remove": self.sources.remove,
            "fetch": self.sources.fetch,
            "subscribe": self.subscriptions.subscribe,
            "unsubscribe": self.subscriptions.unsubscribe,
            "stop": self.stop,
            "settings": self.buttons.settings_menu,
            "channels": self.channel_list.channels,
            "filter": self.filters.filter,
            "export": self.opml.export,
            "import": self.opml.import_,
            "tz": self.clock.tz,
            "quiet": self.clock.quiet,
            "alert": self.subscriptions.alert,
        }
        self.gate.commands = frozenset(commands)
        # Commands posted in a channel (channel_post) too: the channel's admins post them.
        posts = filters.UpdateType.MESSAGES | filters.UpdateType.CHANNEL_POSTS
        for name, callback in commands.items():
            application.add_handler(CommandHandler(name, callback, filters=posts))
        self.buttons.register(application)
        application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self.events.migrate))
        application.add_handler(MessageHandler(filters.Document.ALL, self.opml.document))
        application.add_handler(
            MessageHandler(filters.ChatType.PRIVATE & filters.COMMAND, self.unknown)
        )
        application.add_handler(
            MessageHandler(
                filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND, self.unknown
            )
        )

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
        reached (its state is then deleted), the handler stops here. A send that must
        wait longer than a worker may raises ``SendDeferred`` through here, to the
        application's error handler (``app.Outcomes``): the update is held and handled
        again later.
        """
        if isinstance(messages, str):
            messages = render.split_message(messages.split("\n"))
        chat = update.effective_chat
        if chat is None or not messages:
            return False
        into = chat.id if into is None else into  # a channel named in the private chat
        sent = await send_messages(
            context.bot,
            self.store,
            into,
            messages,
            scope=update_scope(update.update_id),
            thread_id=topic_of(update) if into == chat.id else None,
            markup=markup,
        )
        if not sent:
            raise ApplicationHandlerStop  # the chat is gone; nothing more to do for it
        return True

    # --- the commands of no group --------------------------------------------------

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start: wake the chat up (after /stop) and say what the bot does."""
        assert update.effective_chat is not None
        await self.store.set_stopped(update.effective_chat.id, False)
        await self.reply(update, context, HELP)

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/help: every command with an example."""
        await self.reply(update, context, HELP)

    async def stop(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/stop: no digests, and silence in this chat until /start."""
        await self.reply(
            update,
            context,
            "Stopped. No more digests, and I stay silent here until you send /start.",
        )
        await self.store.set_stopped(command_chat(update), True)

    async def unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Anything else in a private chat: point to /help."""
        await self.reply(
            update, context, "I did not understand that. Send /help to see what I can do."
        )
