"""Checking the sources a user names before any is stored or fetched.

The words become sources (``sources.parsing.parse_sources``, pure), then every feed's URL
passes the SSRF guard, all of them at once, on the event loop and within the fetch
deadline: no thread waits for a name whose DNS never answers. What is refused comes back
as ``(word, reason)`` pairs, the reason worded for the user. The chat commands and
`newsbot fetch` both check sources here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from newsbot.errors import InvalidSource
from newsbot.models import Source
from newsbot.sources.guard import Guard
from newsbot.sources.parsing import parse_sources

# A refused word (or "" for a refusal of the whole list) and the reason shown for it.
Refusal = tuple[str, str]


class SourceChecker:
    """Turns words into sources a fetch may reach, and refusals with their reasons."""

    def __init__(self, guard: Guard, deadline_seconds: float) -> None:
        self.guard = guard
        # The fetch deadline: a name checked here must resolve as fast as a fetch would.
        self.deadline_seconds = deadline_seconds

    async def check_words(self, text: str) -> tuple[list[Source], list[Refusal]]:
        """Parse sources and run the SSRF guard on the feeds, all in parallel."""
        sources, refused = parse_sources(text)
        accepted, more_refused = await self.guard_sources(sources)
        return accepted, refused + more_refused

    async def guard_sources(self, sources: Sequence[Source]) -> tuple[list[Source], list[Refusal]]:
        """Run the SSRF guard on parsed sources in parallel: the accepted and the refused."""
        checks = await asyncio.gather(*(self.refusal(source) for source in sources))
        accepted = [
            source for source, reason in zip(sources, checks, strict=True) if reason is None
        ]
        refused = [
            (source.label, reason)
            for source, reason in zip(sources, checks, strict=True)
            if reason is not None
        ]
        return accepted, refused

    async def refusal(self, source: Source) -> str | None:
        """Why the guard refuses a source (None when a fetch may reach it)."""
        if source.kind != "feed":
            return None  # Reddit's address is the operator's, not the user's
        try:
            await self.guard.check_url_async(source.key, self.deadline_seconds)
        except InvalidSource as error:
            return str(error)
        return None
