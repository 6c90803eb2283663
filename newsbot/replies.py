"""The shapes replies to commands share: a source list, what discovery found, refusals.

Pure functions over rendered HTML (``render``); the command groups (``source_commands``,
``opml_commands``, ``subscription_commands``) answer through the handlers' ``reply``,
whose type is ``Reply`` here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from newsbot import render
from newsbot.models import Source
from newsbot.sources.checking import Refusal

# The handlers' reply (``Handlers.reply``), as the command groups are given it.
Reply = Callable[..., Awaitable[bool]]
# A reply names at most this many refused words; a flood of them is counted, so the
# answer to one message stays one message however many words it held.
MAX_REFUSALS_SHOWN = 10


def list_reply(sources: Sequence[Source], marks: Sequence[str] = ()) -> str:
    if not sources:
        return "You have no sources. Set some with /source python, golang"
    lines = render.bullet_list(source.label for source in sources).split("\n")
    # A mark is escaped markup of its own (source_health.listing_mark), one per source.
    return "Your sources:\n" + "\n".join(
        line + mark for line, mark in zip(lines, [*marks, *[""] * len(lines)], strict=False)
    )


def with_found(head: str, found: Sequence[str]) -> str:
    """The reply's head, then what discovery found (each feed found, each move)."""
    return "\n\n".join([head, *("🔎 " + render.escape(line) for line in found)])


def with_refusals(head: str, refused: Sequence[Refusal]) -> str:
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
