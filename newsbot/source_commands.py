"""/source, /add, /remove and /fetch: a chat's list of sources, and their news now.

A list is checked before it is stored: parsed, held to ``NEWSBOT_MAX_SOURCES`` (alerts
on other sources count too) before any lookup, every feed passed through the SSRF guard
(``sources.checking``), and fetched once through the shared cache (``find_feeds``), so a
web page is stored as the feed it links to and a moved feed as its new address.
"""

from __future__ import annotations

from collections.abc import Sequence

from telegram import Update
from telegram.ext import ContextTypes

from newsbot import alerts, render, source_health
from newsbot.buttons import Buttons
from newsbot.channels import command_argument, command_chat
from newsbot.config import Settings
from newsbot.errors import InvalidSource
from newsbot.filter_commands import drop_stale_filters
from newsbot.merge import merge_news
from newsbot.models import Source
from newsbot.news import News, source_id
from newsbot.replies import Reply, list_reply, with_found, with_refusals
from newsbot.sources.checking import Refusal, SourceChecker
from newsbot.sources.discovery import NO_FEED_LINK
from newsbot.sources.parsing import parse_source, parse_sources
from newsbot.store import Store


class SourceCommands:
    """A chat's sources: set, added to, removed from, listed and fetched."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        news: News,
        checker: SourceChecker,
        buttons: Buttons,
        reply: Reply,
    ) -> None:
        self.settings = settings
        self.store = store
        self.news = news
        self.checker = checker
        self.buttons = buttons
        self.reply = reply

    async def source(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/source a, b, c: set the chat's sources; without arguments, list them."""
        chat_id = command_chat(update)
        text = command_argument(update)
        if not text:
            listed = await self.store.get_sources(chat_id)
            marks = await self.marks(chat_id, listed)
            await self.buttons.source_list(update, context, listed, list_reply(listed, marks))
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
        sources, more_refused = await self.checker.guard_sources(sources)
        refused += more_refused
        sources, found, more_refused = await self.find_feeds(sources)
        refused += more_refused
        if sources:
            await self.store.set_sources(chat_id, sources)
            await drop_stale_filters(self.store, chat_id, sources)
            head = "Your sources are now:\n" + render.bullet_list(s.label for s in sources)
        else:
            head = "Your sources are unchanged."
        await self.reply(update, context, with_refusals(with_found(head, found), refused))

    async def add(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/add a b: add sources to the chat's list."""
        chat_id = command_chat(update)
        text = command_argument(update)
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
        new, more_refused = await self.checker.guard_sources(new)
        refused += more_refused
        new, found, more_refused = await self.find_feeds(new)
        refused += more_refused
        new = [source for source in new if source.key not in known]
        if new:
            await self.store.set_sources(chat_id, current + new)
        await self.reply(
            update,
            context,
            with_refusals(with_found(list_reply(current + new), found), refused),
        )

    async def remove(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/remove a b: remove sources from the chat's list."""
        chat_id = command_chat(update)
        text = command_argument(update)
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
            await drop_stale_filters(self.store, chat_id, kept)
        await self.reply(update, context, with_refusals(list_reply(kept), refused))

    async def fetch(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/fetch: the latest items of every source."""
        chat_id = command_chat(update)
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

    async def marks(self, chat_id: int, sources: Sequence[Source]) -> list[str]:
        """The ⚠️ mark of each failing source (reason, since when in the chat's zone)."""
        if not sources:
            return []
        entries = await self.store.get_cached_many([source_id(s) for s in sources])
        zone = await self.store.get_zone(chat_id)
        return [source_health.listing_mark(entry, zone) for entry in entries]

    async def find_feeds(
        self, sources: Sequence[Source]
    ) -> tuple[list[Source], list[str], list[Refusal]]:
        """Fetch the feeds (through the shared cache) and store what they really are.

        A web page stands for the first feed it links to (which passes the guard too), a
        feed that moved permanently for its new URL, and a page without a feed link is
        refused. Returns the sources, lines saying what was found, and the refusals.
        """
        feeds = [source for source in sources if source.kind == "feed"]
        keys = [source.key for source in feeds]
        entries = dict(zip(keys, await self.news.entries(feeds), strict=True))
        result: list[Source] = []
        found: list[str] = []
        refused: list[Refusal] = []
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
            reason = await self.checker.refusal(feed)
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
