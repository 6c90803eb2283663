"""The object graph wired once (``newsbot.core``), seen from what a user and the DNS see.

One SSRF guard serves both the check of what a user types and the fetch that follows:
a feed given to ``/source`` is looked up once, not once per guard. The DNS edge is stood
in by the guard's resolver, as in test_isolation_sources; 127.0.0.2 stands in for a
public server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from fakes.news import FakeNews
from harness import bot_env
from newsbot.config import Settings
from newsbot.core import open_core
from newsbot.errors import InvalidSource
from newsbot.sources.guard import Guard, Resolver
from test_app import CHAT, message
from test_bot import newest_feed_titles


class CountingDNS:
    """A DNS that knows one name, and counts how often it is asked."""

    def __init__(self, name: str, address: str) -> None:
        self.name, self.address = name, address
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host != self.name:
            raise OSError("no such name")
        return [self.address]


@pytest.fixture
def public() -> Iterator[FakeNews]:
    """Feeds on a host of their own (127.0.0.2), exempt from the guard as if public."""
    with FakeNews(host="127.0.0.2") as fake:
        yield fake


async def test_a_feed_is_looked_up_once_for_the_check_and_the_fetch(
    telegram, redis_url, public
) -> None:
    dns = CountingDNS("feeds.example", public.host)
    resolver = Resolver(dns)
    guard = Guard(exempt=frozenset({ipaddress.ip_address(public.host)}), resolver=resolver)
    env = bot_env(telegram, redis_url, public, NEWSBOT_ALLOW_PRIVATE_URLS="false")
    settings = Settings.from_env(env)
    port = public.url.rsplit(":", 1)[1]
    feed = f"http://feeds.example:{port}/feeds/rss20.xml"
    try:
        async with open_core(settings, settings.telegram_token, guard=guard) as core:
            await core.bot_application.initialize()
            await core.handle(message(1, f"/source {feed}"))
            await core.handle(message(2, "/fetch"))
        source, fetched = (sent.displayed for sent in telegram.sent(CHAT))
        assert source.startswith("Your sources are now")
        assert newest_feed_titles()[0] in fetched
        assert public.count("/feeds/rss20.xml") >= 1
        # Checked at /source, then fetched: the one resolver remembered the answer.
        assert dns.asked == ["feeds.example"]
        # The guard the caller gave is the caller's to close: it still looks names up.
        with pytest.raises(InvalidSource, match="does not resolve"):
            await guard.check_url_async("http://other.example/feed.xml", 5)
    finally:
        resolver.close()
