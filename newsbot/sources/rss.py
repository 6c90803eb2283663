"""RSS 0.9x/1.0/2.0 and Atom feeds, parsed by feedparser from bytes we downloaded.

feedparser never touches the network here: requests (with the guard, the timeouts and
the size cap) fetches, feedparser only parses.

feedparser is slow and hungry on pathological documents (700,000 nested elements in
4.7 MB took it 27 s and 367 MB), so a streaming expat pass first holds every document
to a budget of nesting depth and element count; it costs a few milliseconds and almost
no memory, and refuses with a one-line reason.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import re
import xml.parsers.expat
from typing import Any

import feedparser

from newsbot.errors import FetchError
from newsbot.models import Item
from newsbot.sources.download import Download, Downloader, Validators

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)
# An internal DTD subset that declares entities: the start of every XML bomb
# ("billion laughs", external entities). No real feed needs one.
_ENTITY_DECLARATION = re.compile(rb"<!DOCTYPE[^>\[]*\[[^\]]*<!ENTITY", re.IGNORECASE)
_PROLOGUE_BYTES = 64 * 1024
_TAG = re.compile(r"<[^>]*>")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
# The budget. Real feeds nest a dozen levels (Atom with XHTML content a few more) and
# hold a few thousand elements. 50,000 elements cost feedparser about a second.
MAX_DEPTH = 100
MAX_ELEMENTS = 50_000
# A start tag, to count the elements of a document expat cannot read (feedparser's loose
# parser takes those).
_START_TAG = re.compile(rb"<[A-Za-z_]")
# Items a fetch keeps in the shared cache: filters need more than the few shown.
MAX_ITEMS = 100


class _OverBudget(Exception):
    """Raised from inside expat's callbacks to stop it at the first excess."""


def check_budget(body: bytes) -> None:
    """Refuse a document nested too deep, with too many elements, or declaring entities."""
    parser = xml.parsers.expat.ParserCreate()
    # Never read an external DTD or parameter entity: this pass only counts.
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    depth = elements = 0

    def start(name: str, attributes: Any) -> None:
        nonlocal depth, elements
        depth += 1
        elements += 1
        if depth > MAX_DEPTH:
            raise _OverBudget(f"not accepted: nested more than {MAX_DEPTH} levels deep")
        if elements > MAX_ELEMENTS:
            raise _OverBudget(f"not accepted: more than {MAX_ELEMENTS:,} XML elements")

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1

    def entity(*_: Any) -> None:
        raise _OverBudget("not accepted: the feed declares XML entities")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = entity
    try:
        parser.Parse(body, True)
    except _OverBudget as error:
        raise FetchError(str(error)) from None
    except (xml.parsers.expat.ExpatError, ValueError):
        # Not well-formed (or an encoding expat lacks): feedparser's loose parser may
        # still read it. Count its start tags instead; the loose parser is linear.
        if sum(1 for _ in _START_TAG.finditer(body)) > MAX_ELEMENTS:
            raise FetchError(f"not accepted: more than {MAX_ELEMENTS:,} XML elements") from None


def parse_feed(body: bytes, limit: int = MAX_ITEMS) -> list[Item]:
    """Parse feed bytes into at most ``limit`` items, newest first."""
    if _ENTITY_DECLARATION.search(body[:_PROLOGUE_BYTES]):
        raise FetchError("not accepted: the feed declares XML entities")
    check_budget(body)
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
    return Item(
        id=hashlib.sha256(identity.encode()).hexdigest()[:16],
        title=title,
        link=link,
        published=published,
    )


def fetch_feed(
    downloader: Downloader,
    url: str,
    limit: int,
    validators: Validators | None,
    expires: float | None = None,
) -> tuple[Download, list[Item] | None]:
    """Download and parse a feed; items are None when the server answered 304."""
    download = downloader.get(
        url, headers={"Accept": ACCEPT}, validators=validators, expires=expires
    )
    if download.status == 304:
        return download, None
    return download, parse_feed(download.body, limit)
