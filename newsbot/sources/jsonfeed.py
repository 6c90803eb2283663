"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1): items like RSS and Atom ones.

Pure functions over downloaded bytes; the fetch is rss.fetch_feed's, so a JSON Feed has
the same guard, deadline, size cap and conditional GET as any feed. A document counts as
a JSON Feed by its content type (``application/feed+json``, ``application/json``) or,
whatever the server calls it, by being a JSON object whose ``version`` is a JSON Feed URL.

Budgets like the XML ones: the body is already within the download's size cap; nesting
deeper than the parser's recursion limit and more than ``MAX_ELEMENTS`` items refuse the
document with a one-line reason.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

from newsbot.errors import FetchError
from newsbot.models import Item
from newsbot.sources.text import excerpt, plain_text

# Both versions' URLs start with this; some feeds write http:// for it.
VERSION_PREFIXES = ("https://jsonfeed.org/version/1", "http://jsonfeed.org/version/1")
JSON_TYPES = ("application/feed+json", "application/json")
# Items a JSON Feed may hold: as many as a feed may have XML elements.
MAX_ELEMENTS = 50_000
# How far into the body the sniffing looks for the version, before any parse.
_SNIFF_BYTES = 4096


def looks_like_json_feed(body: bytes, headers: Mapping[str, str]) -> bool:
    """Tell whether a download should be read as a JSON Feed (not whether it is a good one)."""
    content_type = next(
        (value for name, value in headers.items() if name.lower() == "content-type"), ""
    )
    if content_type.split(";")[0].strip().lower() in JSON_TYPES:
        return True
    head = body[:_SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{") and b"jsonfeed.org/version/1" in head


def parse_json_feed(body: bytes, limit: int, url: str = "") -> list[Item]:
    """Parse a JSON Feed into at most ``limit`` items, newest first."""
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except RecursionError:
        raise FetchError("not accepted: JSON nested too deep") from None
    except (UnicodeDecodeError, ValueError):
        raise FetchError("not a feed (JSON that cannot be read)") from None
    if not isinstance(document, dict) or not str(document.get("version", "")).startswith(
        VERSION_PREFIXES
    ):
        raise FetchError("not a feed (JSON, but not a JSON Feed)")
    entries = document.get("items")
    if not isinstance(entries, list):
        raise FetchError("not a feed (a JSON Feed without items)")
    if len(entries) > MAX_ELEMENTS:
        raise FetchError(f"not accepted: more than {MAX_ELEMENTS:,} items")
    home = document.get("home_page_url")
    # Relative item URLs are relative to the site the feed names, else to the feed.
    base = urljoin(url, home) if isinstance(home, str) and home else url
    items = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        title = plain_text(_text(entry.get("title")))
        if not title:
            title = excerpt(
                plain_text(_text(entry.get("content_text")) or _text(entry.get("summary")))
            )
        if not title:
            title = excerpt(plain_text(_text(entry.get("content_html")), is_html=True))
        link = _text(entry.get("url")) or _text(entry.get("external_url"))
        if link and base:
            link = urljoin(base, link)
        published = _timestamp(entry.get("date_published")) or _timestamp(
            entry.get("date_modified")
        )
        identity = _text(entry.get("id")) or link or title
        items.append(
            Item(
                id=hashlib.sha256(identity.encode("utf-8", "replace")).hexdigest()[:16],
                title=title or "(untitled)",
                link=link,
                published=published,
            )
        )
    # As for RSS: newest first, undated ones after the dated in the file's order.
    items.sort(key=lambda item: -(item.published or float("-inf")))
    return items[:limit]


def _text(value: Any) -> str:
    """A string field as text; JSON Feed 1.0 feeds sometimes give ids as numbers."""
    if isinstance(value, str):
        return value.encode("utf-8", "ignore").decode("utf-8")  # no lone surrogates
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _timestamp(value: Any) -> float | None:
    """An RFC 3339 date as a Unix time; None if missing or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)  # RFC 3339 needs a zone; UTC
    return stamp.timestamp()
