"""Replies as Telegram HTML: pure functions from news and texts to message strings.

Every outside string (titles, links, what the user typed) goes through ``escape``;
the only markup in a reply is the markup written here. Every line is self-contained
(no tag spans two lines), so a reply can be split on any line boundary.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

from newsbot.merge import MergedNews
from newsbot.models import SourceNews

# Telegram refuses messages over 4096 characters; stay below with room to spare.
MESSAGE_LIMIT = 4000
MAX_TITLE = 250
MAX_LINK = 2000
# Other sources named after a merged item, and the length of each name, so a merged item
# reads as a line, not a list.
MAX_ALSO = 5
MAX_ALSO_LABEL = 40
_TAG = re.compile(r"<[^>]+>")
_LINK = re.compile(r'<a href="([^"]*)">(.*?)</a>')


def escape(text: str) -> str:
    """Escape a string for Telegram's HTML parse mode."""
    return html.escape(text, quote=True)


def sentence(text: str) -> str:
    """An error's text as an escaped reply sentence: capitalized, with a full stop."""
    return escape(text[:1].upper() + text[1:] + ".")


def shorten(text: str, limit: int) -> str:
    """Cut text to at most ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def source_lines(news: SourceNews) -> list[str]:
    """The lines of one source's block: its name, then its items or why there are none."""
    label = escape(shorten(news.source.label, MAX_TITLE))
    if news.error is not None:
        return [f"⚠️ <b>{label}</b>: {escape(news.error)}"]
    lines = [f"<b>{label}</b>"]
    if not news.items:
        lines.append("<i>no items</i>")
    for item in news.items:
        title = escape(shorten(item.title, MAX_TITLE))
        if item.link.startswith(("http://", "https://")) and len(item.link) <= MAX_LINK:
            lines.append(f'• <a href="{escape(item.link)}">{title}</a>')
        else:
            lines.append(f"• {title}")
    return lines


def render_news(news: Sequence[SourceNews], heading: str | None = None) -> list[str]:
    """Render news from several sources as messages below Telegram's size limit."""
    lines = [f"<b>{escape(heading)}</b>", ""] if heading else []
    for index, block in enumerate(news):
        if index:
            lines.append("")
        lines.extend(source_lines(block))
    return split_message(lines)


def merged_lines(news: MergedNews) -> list[str]:
    """The lines of a merged block: as ``source_lines``, each item naming its other sources."""
    if news.error is None and not news.entries and news.shown_above:
        return [
            f"<b>{escape(shorten(news.source.label, MAX_TITLE))}</b>",
            "<i>all shown above</i>",
        ]
    lines = source_lines(news.news)
    if news.error is None:
        # source_lines gives the block's name, then one line per item, in order.
        for index, entry in enumerate(news.entries, start=1):
            if entry.also:
                lines[index] += _also_note(lines[index], entry.also)
    return lines


def also_names(labels: Sequence[str], named: int = MAX_ALSO) -> str:
    """The other sources of an item: up to ``named`` by name, then how many more."""
    names = [shorten(label, MAX_ALSO_LABEL) for label in labels[:named]]
    if len(labels) > named:
        rest = len(labels) - named
        names.append(f"{rest} more" if names else f"{rest} other source" + "s" * (rest > 1))
    return ", ".join(names)


def _also_note(line: str, labels: Sequence[str]) -> str:
    """The ``also:`` note for an item's line, naming fewer sources if the line must stay
    below MESSAGE_LIMIT to keep its link (a long, escaped title and link take most)."""
    for named in range(min(len(labels), MAX_ALSO), -1, -1):
        note = f" <i>also: {escape(also_names(labels, named))}</i>"
        if len(line) + len(note) <= MESSAGE_LIMIT:
            break
    return note


def render_merged(news: Sequence[MergedNews], heading: str | None = None) -> list[str]:
    """Render merged news as messages below Telegram's size limit, with ``also:`` notes."""
    lines = [f"<b>{escape(heading)}</b>", ""] if heading else []
    for index, block in enumerate(news):
        if index:
            lines.append("")
        lines.extend(merged_lines(block))
    return split_message(lines)


def split_message(lines: Iterable[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Join lines into messages of at most ``limit`` characters, cutting between lines."""
    messages: list[str] = []
    current: list[str] = []
    size = 0

    def flush() -> None:
        text = "\n".join(current).strip("\n")
        if text.strip():  # Telegram refuses an empty message
            messages.append(text)

    for line in lines:
        if len(line) > limit:
            line = _shorten_markup(line, limit)
        # size counts each line with its newline: joined, current + [line] is this long.
        if current and size + len(line) > limit:
            flush()
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    flush()
    return messages


def _shorten_markup(line: str, limit: int) -> str:
    """An overlong line as escaped plain text of at most ``limit`` characters.

    Escaping lengthens text, so the cut is made on the escaped form, never inside an
    entity such as ``&amp;`` (Telegram refuses a message with a broken one).
    """
    pieces: list[str] = []
    size = 0
    for char in to_plain(line):
        piece = escape(char)
        if size + len(piece) > limit - 1:
            pieces.append("…")
            break
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)


def to_plain(text: str) -> str:
    """Turn a reply's HTML into plain text for a terminal: links as 'title <url>'."""
    parts: list[str] = []
    end = 0
    # Tags are stripped before a link's URL is added in angle brackets, which would
    # otherwise look like a tag and be stripped with them.
    for link in _LINK.finditer(text):
        parts.append(_strip_tags(text[end : link.start()]))
        parts.append(f"{_strip_tags(link.group(2))} <{html.unescape(link.group(1))}>")
        end = link.end()
    parts.append(_strip_tags(text[end:]))
    return "".join(parts)


def _strip_tags(text: str) -> str:
    return html.unescape(_TAG.sub("", text))


def bullet_list(words: Iterable[str]) -> str:
    """Escaped words as a bulleted list, one a line."""
    return "\n".join(f"• {escape(word)}" for word in words)


def refusals(refused: Iterable[tuple[str, str]]) -> str:
    """One short line for each source that was refused, naming it as the user wrote it."""
    return "\n".join(
        f"⚠️ <b>{escape(shorten(word, MAX_TITLE))}</b>: {escape(reason)}"
        for word, reason in refused
    )
