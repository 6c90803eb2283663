"""OPML: the chat's sources written as an OPML 2.0 file, and OPML files read back.

Pure functions, no I/O. Feed readers trade subscription lists as OPML: one ``outline``
per feed with its URL in ``xmlUrl``, often nested in folder outlines. A subreddit is
written as its Reddit RSS URL, and Reddit URLs read back become subreddits again.

An uploaded file is untrusted XML, so it is read with defusedxml: a document with a DTD
or an entity declaration is refused outright (no entity is expanded, no external one is
fetched), before anything else is looked at.
"""

from __future__ import annotations

import dataclasses
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from email.utils import formatdate
from urllib.parse import urlsplit

import defusedxml
import defusedxml.ElementTree

from newsbot.errors import InvalidSource, NewsbotError
from newsbot.models import Source
from newsbot.sources.parsing import SUBREDDIT_NAME, parse_source

EXPORT_FILE_NAME = "newsbot-sources.opml"
# The biggest OPML file the bot reads: thousands of feeds, far below Telegram's 20 MB.
MAX_OPML_BYTES = 1024 * 1024
REDDIT_HOSTS = frozenset({"reddit.com", "www.reddit.com", "old.reddit.com"})
# /r/NAME, /r/NAME/, /r/NAME/.rss and /r/NAME.rss: a subreddit's page or its feed.
_REDDIT_PATH = re.compile(r"/r/([A-Za-z0-9_]+)(?:/|/\.rss|\.rss)?")
# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class OpmlError(NewsbotError):
    """A file that cannot be imported; ``str(error)`` says why, for the user."""


@dataclasses.dataclass(frozen=True)
class Feed:
    """One feed an OPML file names: its URL and the title it gave it."""

    url: str
    title: str = ""


def feed_url(source: Source) -> str:
    """The URL a source is exported as: the feed's own, or the subreddit's RSS feed."""
    if source.kind == "reddit":
        return f"https://www.reddit.com/r/{source.key[2:]}/.rss"
    return source.key


def write_opml(sources: Sequence[Source], created: float | None = None) -> bytes:
    """The sources as an OPML 2.0 document, one outline each, in order."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = "Newsbot sources"
    ET.SubElement(head, "dateCreated").text = formatdate(
        time.time() if created is None else created, usegmt=True
    )
    body = ET.SubElement(root, "body")
    for source in sources:
        label = _NOT_XML.sub("", source.label)
        ET.SubElement(
            body, "outline", type="rss", text=label, title=label, xmlUrl=feed_url(source)
        )
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def read_opml(data: bytes) -> list[Feed]:
    """The feeds an OPML document names, in document order, each URL once.

    Raises OpmlError for what is not OPML, is malformed, or has a DTD or entities.
    """
    if len(data) > MAX_OPML_BYTES:
        raise OpmlError(f"the file is bigger than {MAX_OPML_BYTES // 1024} KB")
    try:
        root = defusedxml.ElementTree.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DTDForbidden:
        raise OpmlError("the file has a DTD (<!DOCTYPE …>), which is not accepted") from None
    except (defusedxml.EntitiesForbidden, defusedxml.ExternalReferenceForbidden):
        raise OpmlError("the file declares XML entities, which is not accepted") from None
    except ET.ParseError as error:
        raise OpmlError(f"the file is not well-formed XML ({error})") from None
    if _local(root.tag) != "opml":
        raise OpmlError("the file is not OPML (no <opml> root)")
    feeds: dict[str, Feed] = {}
    for outline in root.iter():
        if _local(outline.tag) != "outline":
            continue
        # The spec spells it xmlUrl; a few exporters write xmlurl or XMLURL.
        attributes = {name.lower(): value for name, value in outline.attrib.items()}
        url = attributes.get("xmlurl", "").strip()
        if url and url not in feeds:
            title = attributes.get("title") or attributes.get("text") or ""
            feeds[url] = Feed(url=url, title=" ".join(title.split()))
    return list(feeds.values())


def source_of(url: str) -> Source:
    """The source an OPML feed URL stands for: a subreddit for Reddit URLs, else the feed.

    Raises InvalidSource with the reason, as ``/source`` would.
    """
    subreddit = reddit_name(url)
    if subreddit is not None:
        return Source(kind="reddit", key="r/" + subreddit.lower(), label="r/" + subreddit)
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
        raise InvalidSource("not a feed URL")
    return parse_source(url)


def reddit_name(url: str) -> str | None:
    """The subreddit a Reddit URL names (``https://old.reddit.com/r/python/.rss``)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or host not in REDDIT_HOSTS:
        return None
    match = _REDDIT_PATH.fullmatch(parts.path)
    if match is None or not SUBREDDIT_NAME.fullmatch(match.group(1)):
        return None
    return match.group(1)


def _local(tag: object) -> str:
    """A tag without its namespace: ``{ns}outline`` -> ``outline``."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""
