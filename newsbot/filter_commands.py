"""/filter: which items of a source a chat sees (rules in ``newsbot.filters``).

The rules are kept per source key (or ``*`` for all); a source the chat no longer has
takes its rules with it (``drop_stale_filters``), so it does not come back filtered.
"""

from __future__ import annotations

from collections.abc import Sequence

from telegram import Update
from telegram.ext import ContextTypes

from newsbot import filters as rules
from newsbot import render
from newsbot.channels import command_argument, command_chat
from newsbot.errors import InvalidSource
from newsbot.models import Source
from newsbot.replies import Reply
from newsbot.sources.parsing import parse_source
from newsbot.store import Store


class FilterCommands:
    """/filter, answering through the handlers' reply."""

    def __init__(self, store: Store, reply: Reply) -> None:
        self.store = store
        self.reply = reply

    async def filter(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/filter SOURCE RULES: set a source's rules; /filter lists; SOURCE off clears."""
        chat_id = command_chat(update)
        text = command_argument(update)
        sources = await self.store.get_sources(chat_id)
        chat_rules = current_rules(await self.store.get_filters(chat_id), sources)
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


async def drop_stale_filters(store: Store, chat_id: int, sources: Sequence[Source]) -> None:
    """Forget the filter rules of sources the chat no longer has.

    Otherwise a source removed and added again later would come back filtered.
    """
    chat_rules = await store.get_filters(chat_id)
    current = current_rules(chat_rules, sources)
    if current != chat_rules:
        await store.set_filters(chat_id, current)


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


def current_rules(
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
