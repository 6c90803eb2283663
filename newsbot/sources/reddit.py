"""Subreddits, from Reddit's JSON listings (``/r/{name}/hot.json``).

Anonymous by default. With ``REDDIT_CLIENT_ID``/``REDDIT_CLIENT_SECRET`` set, Newsbot
uses app-only OAuth, which Reddit treats far more kindly than anonymous traffic.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from newsbot import __version__
from newsbot.config import DEFAULT_REDDIT_URL, Settings
from newsbot.errors import FetchError
from newsbot.models import Item, Source
from newsbot.sources.download import Download, Downloader, HTTPStatusError, Validators
from newsbot.sources.fetcher import Fetched, url_address
from newsbot.sources.parsing import SUBREDDIT_NAME

OAUTH_API_URL = "https://oauth.reddit.com"
# Reddit asks for a unique, descriptive User-Agent naming the app and a contact.
USER_AGENT = f"python:newsbot:{__version__} (self-hosted Telegram news bot)"
# Stickied posts sit on top of "hot" forever; ask for a few more so N real ones remain.
STICKY_MARGIN = 3
# A link post's target longer than this is not an article's address (and is not kept).
MAX_LINKED_URL = 2048
# Reddit's largest page; the shared cache keeps the whole of it for filters.
MAX_LIMIT = 100
# The longest wait any header can impose. Reddit's windows are ten minutes; a server
# (or a proxy in front of it) that says "99999999" must not silence every subreddit for
# years, so what it asks is clamped to this.
MAX_WAIT_SECONDS = 600.0
MIN_WAIT_SECONDS = 1.0
# Links always point at Reddit itself: a permalink is joined to this and must stay on it.
LINK_BASE = "https://www.reddit.com/"
LINK_HOST = "www.reddit.com"
_POST_ID = re.compile(r"[a-z0-9]{1,16}")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class RedditRateLimited(FetchError):
    """Reddit asked us to wait ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Reddit asks us to slow down; try again in {int(retry_after)} s")
        self.retry_after = retry_after


def parse_listing(body: bytes, limit: int = MAX_LIMIT) -> list[Item]:
    """Parse a Reddit listing into at most ``limit`` items in hot order, stickies left out."""
    try:
        listing = json.loads(body)
        children = listing["data"]["children"]
    except (ValueError, KeyError, TypeError):
        raise FetchError("Reddit sent something that is not a listing") from None
    items = []
    for child in children:
        post = child.get("data", {}) if isinstance(child, dict) else {}
        if not post.get("title") or post.get("stickied"):
            continue
        items.append(_item(post))
        if len(items) == limit:
            break
    return items


def _item(post: Mapping[str, Any]) -> Item:
    identity = str(post.get("name") or post.get("id") or post.get("permalink") or "")
    created = post.get("created_utc")
    published = None
    if isinstance(created, int | float) and math.isfinite(created):
        published = float(created)
    url = post.get("url")
    # A link post counts as the article it links to (a self post's url is itself).
    linked = None
    if isinstance(url, str) and 0 < len(url) <= MAX_LINKED_URL and not post.get("is_self"):
        linked = url
    return Item(
        id=hashlib.sha256(identity.encode()).hexdigest()[:16],
        title=" ".join(str(post["title"]).split()),
        link=post_link(post),
        published=published,
        linked_url=linked,
    )


def post_link(post: Mapping[str, Any]) -> str:
    """The post's page on Reddit; no field of the post can move the link to another host.

    A permalink is a path (``/r/python/comments/abc/title/``); one that would change the
    host once joined (``@evil.example/phish``, ``//evil.example``, ``https://evil``) is
    replaced by the post's short link, or dropped.
    """
    permalink = post.get("permalink")
    if isinstance(permalink, str) and permalink:
        link = urljoin(LINK_BASE, permalink)
        if _on_reddit(link):
            return link
    post_id = post.get("id")
    if isinstance(post_id, str) and _POST_ID.fullmatch(post_id):
        return f"{LINK_BASE}comments/{post_id}/"
    url = post.get("url")
    # With neither, a link post's own URL is all there is; the renderer links only
    # http(s) URLs.
    return url if isinstance(url, str) and not permalink else ""


def _on_reddit(link: str) -> bool:
    if "\\" in link or any(ord(char) < 33 or ord(char) == 127 for char in link):
        return False  # browsers read a backslash as a slash, and drop what is blank
    try:
        parts = urlsplit(link)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.hostname == LINK_HOST
        and port is None
        and parts.username is None
        and parts.password is None
        and parts.netloc == LINK_HOST
    )


def parse_wait(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After-style value, clamped; None if unusable.

    Takes delta-seconds (also with a fraction, as Reddit's reset is sometimes sent) or
    an HTTP-date; refuses what is negative, not finite or not a number at all.
    """
    if value is None:
        return None
    text = value.strip()
    if _NUMBER.fullmatch(text):
        seconds = float(text)  # never raises on this shape; may be inf (1e400)
        if not math.isfinite(seconds) or seconds < 0:
            return None
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            return None  # not an HTTP-date (those are always GMT)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(MAX_WAIT_SECONDS, max(MIN_WAIT_SECONDS, seconds))


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds Reddit wants us to wait, from Retry-After or the X-Ratelimit headers."""
    for name in ("Retry-After", "X-Ratelimit-Reset"):
        if name == "X-Ratelimit-Reset" and _remaining(headers) > 0:
            continue
        wait = parse_wait(headers.get(name), now)
        if wait is not None:
            return wait
    return None


def _remaining(headers: Mapping[str, str]) -> float:
    """Requests left in Reddit's window; anything unreadable counts as "some left"."""
    value = headers.get("X-Ratelimit-Remaining", "1").strip()
    if not _NUMBER.fullmatch(value):
        return 1.0
    remaining = float(value)
    return remaining if math.isfinite(remaining) else 1.0


class Reddit:
    """Fetches subreddit listings, anonymously or with app-only OAuth (a ``Fetcher``).

    Its downloader is its own, unguarded (the URL is the operator's) and with a resolver
    of its own, so that users' dead feed names never queue in front of Reddit's.
    """

    def __init__(self, settings: Settings, downloader: Downloader) -> None:
        self.base_url = settings.reddit_url
        self.credentials = None
        if settings.reddit_client_id and settings.reddit_client_secret:
            self.credentials = (settings.reddit_client_id, settings.reddit_client_secret)
        self.downloader = downloader
        self._token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()
        self._blocked_until = 0.0

    def address(self, source: Source) -> tuple[str, int]:
        """Reddit's host and port: every subreddit is fetched from it."""
        return url_address(self.base_url)

    async def resolve(self, source: Source, expires: float) -> None:
        """Look Reddit's host up on this fetcher's own resolver."""
        host, port = self.address(source)
        await self.downloader.resolver.resolve_async(host, port, expires - time.monotonic())

    def fetch(
        self, source: Source, limit: int, validators: Validators | None, expires: float
    ) -> Fetched:
        """Fetch a subreddit source's hot listing."""
        items, validators = self.hot(source.key.removeprefix("r/"), limit, validators, expires)
        return Fetched(items=None if items is None else tuple(items), validators=validators)

    def close(self) -> None:
        self.downloader.close()

    def hot(
        self,
        name: str,
        limit: int = MAX_LIMIT,
        validators: Validators | None = None,
        expires: float | None = None,
    ) -> tuple[list[Item] | None, Validators]:
        """Return the hot items of a subreddit (None if unchanged) and new validators."""
        if not SUBREDDIT_NAME.fullmatch(name):
            raise FetchError("not a subreddit name")
        wait = self._blocked_until - time.monotonic()
        if wait > 0:
            raise RedditRateLimited(wait)
        base = self.base_url
        if self.credentials is not None:
            base = OAUTH_API_URL if base == DEFAULT_REDDIT_URL else base
        url = f"{base}/r/{name}/hot.json?limit={min(MAX_LIMIT, limit + STICKY_MARGIN)}&raw_json=1"
        try:
            with self.downloader.bounded(expires):  # the token request shares the deadline
                download = self._get_listing(url, validators)
        except HTTPStatusError as error:
            raise self._explain(error) from None
        if download.status in (301, 302, 303, 307, 308):
            raise FetchError("no such subreddit")
        if _remaining(download.headers) <= 0:
            # This answer is good, but Reddit would refuse the next one: wait first.
            self._block(retry_after(download.headers) or 60.0)
        items = None if download.status == 304 else parse_listing(download.body, limit)
        return items, download.validators

    def _get_listing(self, url: str, validators: Validators | None) -> Download:
        """GET a listing; with OAuth, renew a token Reddit no longer accepts, once."""
        for attempt in range(2):
            headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
            token = self._access_token() if self.credentials is not None else None
            if token is not None:
                headers["Authorization"] = "bearer " + token
            try:
                # Reddit redirects unknown subreddits to a search page: "not found".
                return self.downloader.get(
                    url, headers=headers, validators=validators, follow_redirects=False
                )
            except HTTPStatusError as error:
                if error.status != 401 or token is None or attempt:
                    raise
                # Revoked or expired early: without this, every fetch would fail
                # until the token's announced lifetime (a day) had passed. Another
                # thread may have renewed it already; then that new token is kept.
                with self._token_lock:
                    if self._token is not None and self._token[0] == token:
                        self._token = None
        raise AssertionError("unreachable")

    def _block(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, time.monotonic() + seconds)

    def _explain(self, error: HTTPStatusError) -> FetchError:
        if error.status == 404:
            return FetchError("no such subreddit (404)")
        if error.status == 403:
            return FetchError("private, quarantined or banned subreddit (403)")
        if error.status == 429:
            seconds = retry_after(error.headers) or 60.0
            self._block(seconds)
            return RedditRateLimited(seconds)
        return error

    def _access_token(self) -> str:
        with self._token_lock:
            if self._token is not None and self._token[1] > time.monotonic():
                return self._token[0]
            assert self.credentials is not None
            download = self.downloader.post(
                f"{self.base_url}/api/v1/access_token",
                data={"grant_type": "client_credentials"},
                auth=self.credentials,
            )
            try:
                answer = json.loads(download.body)
                token, lifetime = str(answer["access_token"]), float(answer["expires_in"])
            except (ValueError, KeyError, TypeError):
                raise FetchError("Reddit refused the app credentials") from None
            # Renew a minute early so a request never goes out with an expired token.
            self._token = (token, time.monotonic() + lifetime - 60)
            return token
