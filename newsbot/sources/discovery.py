"""Feed autodiscovery: the feeds a web page names in ``<link rel="alternate">``.

Pure functions over a page already downloaded (within the download's size cap and
guard); the feed URLs found are checked by the guard again before anything uses them.
Parsed with the standard library's ``html.parser``, which is linear and never fetches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from newsbot.errors import FetchError

# The types a feed link may name: RSS, Atom, RDF and JSON Feed (some sites write plain
# application/json for theirs).
FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/feed+json",
        "application/json",
        "application/x.atom+xml",
        "application/x-atom+xml",
    }
)
HTML_TYPES = ("text/html", "application/xhtml+xml")
# Feed links are in the head; a page's first megabyte holds it (a 5 MB page would take
# html.parser seconds).
MAX_SCAN_BYTES = 1024 * 1024
_CHUNK = 64 * 1024
_FEED_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml|<rss|<feed|<rdf:)", re.IGNORECASE)
_HTML_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<!doctype\s+html|<html|<head)", re.IGNORECASE)
_CHARSET = re.compile(r"charset=[\"']?([\w.:-]+)", re.IGNORECASE)
NO_FEED_LINK = "not a feed but a web page, and it links to no feed"


class WebPage(FetchError):
    """The URL is a web page, not a feed; ``feeds`` are the feed URLs it names."""

    def __init__(self, feeds: list[str]) -> None:
        super().__init__(
            f"not a feed but a web page; its feed is {feeds[0]}" if feeds else NO_FEED_LINK
        )
        self.feeds = feeds


def is_web_page(body: bytes, headers: Mapping[str, str]) -> bool:
    """Tell whether a download is an HTML page rather than a feed (served as HTML or not)."""
    if _FEED_START.match(body[:1024]):
        return False  # a feed some server calls text/html
    content_type = next(
        (value for name, value in headers.items() if name.lower() == "content-type"), ""
    )
    if content_type.split(";")[0].strip().lower() in HTML_TYPES:
        return True
    return bool(_HTML_START.match(body[:1024]))


def find_feeds(body: bytes, page_url: str, headers: Mapping[str, str]) -> list[str]:
    """The absolute http(s) feed URLs a page links to, in the page's order, deduplicated.

    Relative hrefs are resolved against the page's ``<base href>`` (itself relative to
    the page URL) or the page URL.
    """
    parser = _LinkParser()
    text = body[:MAX_SCAN_BYTES].decode(_charset(headers), "replace")
    for start in range(0, len(text), _CHUNK):
        parser.feed(text[start : start + _CHUNK])
        if parser.done:
            break
    base = urljoin(page_url, parser.base) if parser.base else page_url
    found: list[str] = []
    for href in parser.hrefs:
        url = urljoin(base, href.strip())
        if urlsplit(url).scheme in ("http", "https") and url not in found:
            found.append(url)
    return found


def _charset(headers: Mapping[str, str]) -> str:
    content_type = next(
        (value for name, value in headers.items() if name.lower() == "content-type"), ""
    )
    match = _CHARSET.search(content_type)
    name = match.group(1) if match else "utf-8"
    try:
        "".encode(name)
    except LookupError:
        return "utf-8"
    return name


class _LinkParser(HTMLParser):
    """Collects ``<base href>`` and feed ``<link>`` hrefs until the head ends."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.hrefs: list[str] = []
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        found = {name.lower(): value or "" for name, value in attrs}
        if tag == "base" and self.base is None and found.get("href"):
            self.base = found["href"]
        elif tag == "link":
            rels = found.get("rel", "").lower().split()
            kind = found.get("type", "").split(";")[0].strip().lower()
            if "alternate" in rels and kind in FEED_TYPES and found.get("href"):
                self.hrefs.append(found["href"])
        elif tag == "body" and self.hrefs:
            self.done = True  # the head's links are what a page means as its feeds

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "head" and self.hrefs:
            self.done = True
