"""/export and /import: a chat's sources as an OPML file, and back.

``/export`` sends the file; a document is imported when it is an ``.opml``/``.xml``
file in a private chat or is captioned ``/import`` (in a group only then: XML shared
among members is theirs). The file is read within ``opml.MAX_OPML_BYTES``, its feeds
held to the source limit before any lookup, and each passes the SSRF guard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from telegram import Update
from telegram.error import BadRequest, Forbidden
from telegram.ext import ContextTypes

from newsbot import alerts, opml, render
from newsbot.channels import command_chat
from newsbot.config import Settings
from newsbot.errors import InvalidSource
from newsbot.gate import command_name
from newsbot.models import Source
from newsbot.replies import Reply, with_refusals
from newsbot.sources.checking import Refusal, SourceChecker
from newsbot.store import Store

logger = logging.getLogger(__name__)


class OpmlCommands:
    """OPML export and import, answering through the handlers' reply."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        checker: SourceChecker,
        is_mine: Callable[[str, str | None], bool],
        reply: Reply,
    ) -> None:
        self.settings = settings
        self.store = store
        self.checker = checker
        # Whether a text is a command of this bot (the gate's test): a caption /import.
        self.is_mine = is_mine
        self.reply = reply

    async def export(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/export: the chat's sources as an OPML file."""
        chat_id = command_chat(update)
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
            and command_name(message.caption) == "import"
            and self.is_mine(message.caption or "", context.bot.username)
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
        refused: list[Refusal] = []
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
        accepted, guarded = await self.checker.guard_sources(candidates[:room])
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
        return with_refusals(head, refused)
