"""The seam every kind of source plugs into: a ``Fetcher`` and the one ``Fetched`` it returns.

``News`` holds one fetcher per source kind (``Source.kind``) and never asks which kind it
has: it resolves the fetcher's host on the event loop first (so no download thread waits
for DNS), runs the blocking ``fetch`` on the sources' thread pool within one deadline,
keeps the items in the shared cache and maps every failure to one line for the chat.

A fetcher raises ``SourceError`` with a reason a user can read, or ``WebPage`` (a feed
URL that is a web page, with the feeds it names); anything else it raises is a bug,
logged, and the chat reads "could not be read" for that source alone.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol
from urllib.parse import urlsplit

from newsbot import keys
from newsbot.config import Settings
from newsbot.models import Item, Source
from newsbot.sources.download import GRACE_SECONDS, Validators

# Items a fetch keeps in the shared cache: filters need more than the few shown.
MAX_ITEMS = 100


@dataclasses.dataclass(frozen=True)
class Fetched:
    """What one upstream fetch of a source gave."""

    # None: the server answered 304 Not Modified, the cached items still stand.
    items: tuple[Item, ...] | None
    # For the next fetch's conditional GET.
    validators: Validators | None = None
    # The source's new key when it moved for good (a feed's 301/308), else None.
    moved_to: str | None = None


class Fetcher(Protocol):
    """Fetches the sources of one kind; owns its downloads' sessions and resolver."""

    def address(self, source: Source) -> tuple[str, int]:
        """The host (lower case) and port a fetch of ``source`` connects to."""
        ...

    async def resolve(self, source: Source, expires: float) -> None:
        """Look the host's name up on this fetcher's resolver by ``expires`` (monotonic).

        Raises SourceError with its reason (no answer in time, no such name, refused).
        """
        ...

    def fetch(
        self, source: Source, limit: int, validators: Validators | None, expires: float
    ) -> Fetched:
        """Fetch at most ``limit`` items (blocking) before ``expires`` (monotonic)."""
        ...

    def close(self) -> None:
        """Close the sessions and the resolver this fetcher owns."""
        ...


def fetch_seconds(settings: Settings) -> float:
    """How long one fetch may take: the configured timeout, within the fetch lock's life.

    The lock must outlive the fetch it guards, or a second replica would fetch the same
    source at once.
    """
    return min(settings.fetch_timeout, keys.FETCH_LOCK_SECONDS - 4 * GRACE_SECONDS)


def url_address(url: str) -> tuple[str, int]:
    """The host (lower case) and port a URL names."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0  # the download refuses the URL with its reason
    return (parts.hostname or url).lower(), port
