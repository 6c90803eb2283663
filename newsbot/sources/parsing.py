"""Turning what a user typed into sources: pure functions, no I/O.

The book's syntax is kept: ``/source python, golang`` sets two subreddits. Feed URLs
may be mixed in, and commas or spaces both separate.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from newsbot.errors import InvalidSource
from newsbot.models import Source

# Reddit's own rule for subreddit names. Checked before any URL is built from one.
SUBREDDIT_NAME = re.compile(r"[A-Za-z0-9_]{3,21}")
MAX_URL_LENGTH = 2000
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SEPARATORS = re.compile(r"[\s,]+")


def split_sources(text: str) -> list[str]:
    """Split a command's argument on commas and white space, dropping empties."""
    return [part for part in _SEPARATORS.split(text) if part]


def parse_source(word: str) -> Source:
    """Parse one subreddit name or feed URL, raising InvalidSource with a reason."""
    if _SCHEME.match(word):
        return _parse_url(word)
    name = word
    prefixed = False
    for prefix in ("/r/", "r/"):
        if name.lower().startswith(prefix):
            name, prefixed = name[len(prefix) :], True
            break
    name = name.rstrip("/")
    if SUBREDDIT_NAME.fullmatch(name):
        return Source(kind="reddit", key="r/" + name.lower(), label=word)
    if not prefixed and ("." in word or "/" in word):
        raise InvalidSource("not a feed URL: it needs http:// or https:// in front")
    raise InvalidSource("not a subreddit name: 3 to 21 letters, digits or _")


def _parse_url(word: str) -> Source:
    if len(word) > MAX_URL_LENGTH:
        raise InvalidSource(f"URL longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(word)
        port = parts.port  # raises ValueError on a port out of range
    except ValueError:
        raise InvalidSource("not a valid URL") from None
    if port == 0:  # urlsplit accepts it, but nothing can be reached on port 0
        raise InvalidSource("not a valid URL")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidSource("only http:// and https:// feeds can be followed")
    if not parts.hostname:
        raise InvalidSource("the URL has no host")
    if parts.username or parts.password:
        raise InvalidSource("URLs with a user name or password are not accepted")
    host = parts.hostname
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    key = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    return Source(kind="feed", key=key, label=word)


def parse_sources(text: str) -> tuple[list[Source], list[tuple[str, str]]]:
    """Parse a list of sources: the valid ones (deduplicated, in order) and the refusals.

    Each refusal is ``(word as typed, reason)``.
    """
    sources: list[Source] = []
    refused: list[tuple[str, str]] = []
    seen: set[str] = set()
    for word in split_sources(text):
        try:
            source = parse_source(word)
        except InvalidSource as error:
            refused.append((word, str(error)))
            continue
        if source.key not in seen:
            seen.add(source.key)
            sources.append(source)
    return sources, refused
