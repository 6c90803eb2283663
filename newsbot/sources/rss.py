"""RSS 0.9x/1.0/2.0 and Atom feeds, parsed by feedparser from bytes we downloaded.

feedparser never touches the network here: requests (with the guard, the timeouts and
the size cap) fetches, feedparser only parses.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import re
from typing import Any

import feedparser

from newsbot.errors import FetchError
from newsbot.models import Item
from newsbot.sources.download import Download, Downloader, Validators

ACCEPT = ("application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
          "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5")
# An internal DTD subset that declares entities: the start of every XML bomb
# ("billion laughs", external entities). No real feed needs one.
_ENTITY_DECLARATION = re.compile(rb"<!DOCTYPE[^>\[]*\[[^\]]*<!ENTITY", re.IGNORECASE)
_PROLOGUE_BYTES = 64 * 1024
_TAG = re.compile(r"<[^>]*>")
_HTML_TYPES = ("text/html", "application/xhtml+xml")


def parse_feed(body: bytes, limit: int) -> list[Item]:
    """Parse feed bytes into at most ``limit`` items, newest first."""
    if _ENTITY_DECLARATION.search(body[:_PROLOGUE_BYTES]):
        raise FetchError("not accepted: the feed declares XML entities")
    parsed = feedparser.parse(body)
    if not parsed.get("version") and not parsed.entries:
        raise FetchError("not a feed (no RSS or Atom found)")
    items = [_item(entry) for entry in parsed.entries]
    # Undated entries keep their order in the file, after the dated ones.
    items.sort(key=lambda item: -(item.published or float("-inf")))
    return items[:limit]


def _item(entry: Any) -> Item:
    title = str(entry.get("title") or "")
    if (entry.get("title_detail") or {}).get("type") in _HTML_TYPES:
        # Atom's type="html" titles arrive as markup; a title is shown as plain text.
        title = html.unescape(_TAG.sub("", title))
    title = " ".join(title.split()) or "(untitled)"
    link = str(entry.get("link") or "")
    stamp = entry.get("published_parsed") or entry.get("updated_parsed")
    published = float(calendar.timegm(stamp)) if stamp else None
    identity = str(entry.get("id") or link or title)
    return Item(id=hashlib.sha256(identity.encode()).hexdigest()[:16],
                title=title, link=link, published=published)


def fetch_feed(downloader: Downloader, url: str, limit: int,
               validators: Validators | None) -> tuple[Download, list[Item] | None]:
    """Download and parse a feed; items are None when the server answered 304."""
    download = downloader.get(url, headers={"Accept": ACCEPT}, validators=validators)
    if download.status == 304:
        return download, None
    return download, parse_feed(download.body, limit)
