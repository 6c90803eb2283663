"""RSS 0.9x/1.0/2.0 and Atom feeds, parsed by feedparser from bytes we downloaded.

feedparser never touches the network here: requests (with the guard, the timeouts and
the size cap) fetches, feedparser only parses. It is told what the response said (the
final URL as the base of relative links, the charset of the ``Content-Type``), since a
feed read from bytes alone loses both.

feedparser is slow and hungry on pathological documents (700,000 nested elements in
4.7 MB took it 27 s and 367 MB), so a streaming expat pass first holds every document
to a budget of nesting depth and element count; it costs a few milliseconds and almost
no memory, and refuses with a one-line reason.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import xml.parsers.expat
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

import feedparser

from newsbot.errors import FetchError
from newsbot.models import Item
from newsbot.sources.discovery import WebPage, find_feeds, is_web_page
from newsbot.sources.download import Download, Downloader, Validators
from newsbot.sources.fetcher import MAX_ITEMS as MAX_ITEMS  # alerts take it from here
from newsbot.sources.jsonfeed import looks_like_json_feed, parse_json_feed
from newsbot.sources.text import excerpt, plain_text

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/xml;q=0.8, text/xml;q=0.8, "
    "application/json;q=0.8, */*;q=0.5"
)
# An internal DTD subset that declares entities: the start of every XML bomb
# ("billion laughs", external entities). No real feed needs one.
_ENTITY_DECLARATION = re.compile(rb"<!DOCTYPE[^>\[]*\[[^\]]*<!ENTITY", re.IGNORECASE)
_PROLOGUE_BYTES = 64 * 1024
_HTML_TYPES = ("text/html", "application/xhtml+xml")
# The budget. Real feeds nest a dozen levels (Atom with XHTML content a few more) and
# hold a few thousand elements. 50,000 elements cost feedparser about a second.
MAX_DEPTH = 100
MAX_ELEMENTS = 50_000
# A start tag, to count the elements of a document expat cannot read (feedparser's loose
# parser takes those).
_START_TAG = re.compile(rb"<[A-Za-z_]")
# A numeric character reference; an emoji written as a UTF-16 surrogate pair of them
# makes a feed ill-formed (and crashed feedparser's loose parser).
_CHARREF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")
# The end of a complete feed document: its root element closed.
_ROOT_END = re.compile(
    rb"</\s*(?:[A-Za-z_][\w.-]*:)?(?:rss|feed|RDF)\s*>\s*(?:<!--.*?-->\s*)*$", re.DOTALL
)
_TAIL_BYTES = 4096


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


def parse_feed(
    body: bytes, limit: int = MAX_ITEMS, url: str = "", headers: Mapping[str, str] | None = None
) -> list[Item]:
    """Parse feed bytes into at most ``limit`` items, newest first.

    ``url`` (where the body was downloaded from, after redirects) is the base of relative
    links; ``headers`` are the response's, for the charset of its ``Content-Type``.
    """
    if _ENTITY_DECLARATION.search(body[:_PROLOGUE_BYTES]):
        raise FetchError("not accepted: the feed declares XML entities")
    check_budget(body)
    body = combine_surrogates(body)
    parsed = feedparser.parse(body, response_headers=response_headers(url, headers or {}))
    if not parsed.get("version") and not parsed.entries:
        raise FetchError("not a feed (no RSS or Atom found)")
    if parsed.get("bozo") and not _ROOT_END.search(body[-_TAIL_BYTES:]):
        # Ill-formed and the root never closed: the download ended early. Its last
        # entry would be a fragment; better one line saying so than junk.
        raise FetchError("cut off: the feed ends in the middle of the document")
    identities = _identities(body, parsed.entries, headers or {}) if url else None
    items = [
        _item(entry, url, identities[index] if identities else None)
        for index, entry in enumerate(parsed.entries)
    ]
    # Undated entries keep their order in the file, after the dated ones.
    items.sort(key=lambda item: -(item.published or float("-inf")))
    return items[:limit]


def response_headers(url: str, headers: Mapping[str, str]) -> dict[str, str]:
    """What feedparser needs of a response: its content type and base URL.

    feedparser takes the base of relative links (and of ``xml:base``) from
    ``Content-Location``; a server's own Content-Location is relative to the URL.
    """
    found = {name.lower(): value for name, value in headers.items()}
    result = {}
    if "content-type" in found:
        result["content-type"] = found["content-type"]
    base = urljoin(url, found.get("content-location", "")) if url else ""
    if base:
        result["content-location"] = base
    return result


def combine_surrogates(body: bytes) -> bytes:
    """Write surrogate-pair character references as the one character they mean.

    ``&#55357;&#56832;`` (UTF-16 thinking) becomes ``&#128512;`` 😀; a lone surrogate,
    which no character is, is dropped.
    """
    if b"&#" not in body:
        return body
    parts: list[bytes] = []
    last = 0
    position = 0
    while True:
        found = _CHARREF.search(body, position)
        if found is None:
            break
        value = _charref_value(found)
        position = found.end()
        if not 0xD800 <= value <= 0xDFFF:
            continue
        parts.append(body[last : found.start()])
        low = _CHARREF.match(body, found.end())
        if value <= 0xDBFF and low is not None and 0xDC00 <= _charref_value(low) <= 0xDFFF:
            combined = 0x10000 + ((value - 0xD800) << 10) + (_charref_value(low) - 0xDC00)
            parts.append(b"&#%d;" % combined)
            position = low.end()
        last = position
    parts.append(body[last:])
    return b"".join(parts)


def _charref_value(match: re.Match[bytes]) -> int:
    hexadecimal, decimal = match.groups()
    return int(hexadecimal, 16) if hexadecimal is not None else int(decimal)


def _identities(body: bytes, entries: list[Any], headers: Mapping[str, str]) -> list[str] | None:
    """Entry identities as they were before feeds had a base URL, if the base changed any.

    feedparser resolves an RSS ``guid`` (and a link) against the base: ``a-1`` would
    become ``https://host/feeds/a-1`` and every item of such a feed would be news again,
    once, in every digest. An id or link not written in the document as it came out was
    resolved: then (only then) the feed is read once more without the base, for the ids.
    """
    written = [str(entry.get("id") or entry.get("link") or "") for entry in entries]
    if all(text.encode("utf-8", "ignore") in body for text in written if text):
        return None
    content_type = {
        name.lower(): value for name, value in headers.items() if name.lower() == "content-type"
    }
    raw = feedparser.parse(body, response_headers=content_type).entries
    if len(raw) != len(entries):
        return None
    return [str(entry.get("id") or entry.get("link") or "") for entry in raw]


def _item(entry: Any, base: str = "", identity: str | None = None) -> Item:
    is_html = (entry.get("title_detail") or {}).get("type") in _HTML_TYPES
    title = plain_text(str(entry.get("title") or ""), is_html)
    if not title:
        # A description-only item (RSS allows it: microblogs, status feeds) is shown by
        # the start of its text.
        summary_html = (entry.get("summary_detail") or {}).get("type") in _HTML_TYPES
        title = excerpt(plain_text(str(entry.get("summary") or ""), summary_html))
    title = title or "(untitled)"
    link = str(entry.get("link") or "")
    if link and base:
        link = urljoin(base, link)  # feedparser resolved it against its base already
    stamp = entry.get("published_parsed") or entry.get("updated_parsed")
    published = float(calendar.timegm(stamp)) if stamp else None
    identity = identity or str(entry.get("id") or link or title)
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
    return download, parse_download(download, limit)


def parse_download(download: Download, limit: int = MAX_ITEMS) -> list[Item]:
    """The items of a downloaded feed (RSS, Atom or JSON Feed), read with its response."""
    if looks_like_json_feed(download.body, download.headers):
        return parse_json_feed(download.body, limit, download.url)
    if is_web_page(download.body, download.headers):
        raise WebPage(find_feeds(download.body, download.url, download.headers))
    return parse_feed(download.body, limit, download.url, download.headers)
