"""The kinds of source Newsbot reads, each with its ``Fetcher``: what News fetches with.

Built once by the wiring and handed to ``News(..., fetchers=...)``. A new kind of source
is a fetcher and one more entry here (with its ``Source.kind`` in models and its syntax
in parsing); nothing in News changes.
"""

from __future__ import annotations

from newsbot.config import Settings
from newsbot.sources.download import Downloader
from newsbot.sources.feeds import Feeds
from newsbot.sources.fetcher import Fetcher, fetch_seconds
from newsbot.sources.guard import Guard
from newsbot.sources.reddit import Reddit


def default_fetchers(
    settings: Settings, guard: Guard, timeout: float | None = None
) -> dict[str, Fetcher]:
    """A fetcher for each kind: Reddit on a resolver of its own, feeds through ``guard``.

    ``timeout`` bounds each download (default: fetcher.fetch_seconds(settings)). The
    caller closes each fetcher; ``guard`` stays the caller's to close.
    """
    seconds = fetch_seconds(settings) if timeout is None else timeout
    return {
        "reddit": Reddit(settings, Downloader(timeout=seconds)),
        "feed": Feeds(Downloader(guard, timeout=seconds)),
    }
