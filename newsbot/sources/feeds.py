"""Feeds, the ``Fetcher`` of sources of kind ``feed``: RSS, Atom and JSON Feed alike.

One implementation for every feed format: a feed URL says nothing of its format, so one
download is read by what came back (rss.parse_download: JSON Feed, RSS/Atom, or a web
page naming its feeds, raised as ``WebPage``). The URLs are users', so every download
goes through the SSRF guard and its names through the guard's resolver.
"""

from __future__ import annotations

import time

from newsbot.errors import InvalidSource
from newsbot.models import Source
from newsbot.sources.download import Downloader, Validators
from newsbot.sources.fetcher import Fetched, url_address
from newsbot.sources.parsing import parse_source
from newsbot.sources.rss import fetch_feed


class Feeds:
    """Fetches feed URLs through one guarded downloader, which it closes."""

    def __init__(self, downloader: Downloader) -> None:
        self.downloader = downloader

    def address(self, source: Source) -> tuple[str, int]:
        """The host and port of the feed's URL."""
        return url_address(source.key)

    async def resolve(self, source: Source, expires: float) -> None:
        """Look the feed's host up on the guard's resolver."""
        host, port = self.address(source)
        await self.downloader.resolver.resolve_async(host, port, expires - time.monotonic())

    def fetch(
        self, source: Source, limit: int, validators: Validators | None, expires: float
    ) -> Fetched:
        """Download and read a feed; a permanent redirect is reported as its new key."""
        download, items = fetch_feed(self.downloader, source.key, limit, validators, expires)
        moved_to = feed_key(download.moved_to)
        return Fetched(
            items=None if items is None else tuple(items),
            validators=download.validators,
            moved_to=moved_to if moved_to != source.key else None,
        )

    def close(self) -> None:
        self.downloader.close()


def feed_key(url: str | None) -> str | None:
    """A moved feed's new URL in canonical form; None if there is none we could follow."""
    if url is None:
        return None
    try:
        source = parse_source(url)
    except InvalidSource:
        return None  # a URL we would refuse from a user is not stored for one either
    return source.key if source.kind == "feed" else None
