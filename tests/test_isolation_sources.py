"""One chat's slow sources stall only that chat: the real bot, a real Redis, the fakes.

The first two rows of issue 8's table, as a user sees them. An attacker's chat follows
feeds that trickle (a byte every 0.2 s, forever) or whose DNS never answers; while its
``/fetch`` is demonstrably still in progress (the fake news server still has the
trickling connections open; the DNS edge still holds the lookups), another chat's
``/help`` and ``/fetch`` of healthy sources are answered. Then the attacker gets its
reply, one line per slow source, once the fetch timeout has passed.

The DNS edge is stood in by the ``Guard`` the in-process bot is built with: its resolver
is given a lookup function that never answers, the way a dead DNS server behaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from fakes.news import FakeNews
from harness import bot_env
from newsbot.config import Settings
from newsbot.service import serve
from newsbot.sources.download import FETCH_THREADS, PER_HOST
from newsbot.sources.guard import Guard, Resolver, system_lookup
from newsbot.sources.parsing import parse_source
from newsbot.store import Store, connect
from test_bot import hot_titles, newest_feed_titles, say

DATA = Path(__file__).parent / "data"
ATTACKER = 666
OTHER = 4242


@contextlib.asynccontextmanager
async def bot_with_guard(env: Mapping[str, str], guard: Guard) -> AsyncIterator[None]:
    """One replica in this event loop whose feeds go through ``guard``."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(Settings.from_env(env), stop, guard))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@pytest.fixture
def healthy() -> Iterator[FakeNews]:
    """Reddit and feeds that answer at once, on a host of their own (127.0.0.2)."""
    with FakeNews(host="127.0.0.2") as fake:
        yield fake


async def wait_for(condition: object, what: str, seconds: float = 20.0) -> None:
    """Poll, without blocking the loop, for a condition that must come true."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.02)


async def store_sources(env: Mapping[str, str], chat_id: int, urls: list[str]) -> None:
    """Give a chat feed sources as /source stores them, without /source's fetch."""
    store = Store(connect(Settings.from_env(env)))
    try:
        await store.set_sources(chat_id, [parse_source(url) for url in urls])
    finally:
        await store.close()


def shown(telegram, chat_id: int, text: str, since: int = 0) -> bool:
    """Tell whether a chat has been shown a text (in any message from ``since`` on)."""
    return any(text in message.displayed for message in telegram.sent(chat_id)[since:])


def warnings_of(texts: list[str]) -> dict[str, str]:
    """Each "⚠️ source: reason" line of a reply, by source."""
    found = {}
    for line in "\n".join(texts).splitlines():
        if line.startswith("⚠️ "):
            label, _, reason = line.removeprefix("⚠️ ").partition(": ")
            found[label] = reason
    return found


@pytest.mark.alone
async def test_trickling_feeds_delay_only_their_own_chat(telegram, news, healthy, redis_url):
    # More trickling feeds than the whole fetch pool has threads, all on one host.
    trickles = [f"{news.url}/trickle?n={n}" for n in range(FETCH_THREADS + 6)]
    feed = f"{healthy.url}/feeds/rss20.xml"
    env = bot_env(
        telegram,
        redis_url,
        healthy,
        NEWSBOT_FETCH_TIMEOUT="5",
        NEWSBOT_MAX_SOURCES="100",
        NEWSBOT_CACHE_TTL="1",
    )
    news.watch_peak("/trickle")
    async with bot_with_guard(env, Guard(allow_private=True)):
        # Stored as /source would: /source itself fetches (feed discovery), which
        # would start the attack before the test looks.
        await store_sources(env, ATTACKER, trickles)
        await say(telegram, f"/source python {feed}", chat_id=OTHER)
        setup = len(telegram.sent(ATTACKER))

        telegram.push_message(ATTACKER, "/fetch")
        await wait_for(
            lambda: len(news.open_connections("/trickle")) >= PER_HOST,
            "the attacker's feeds are being fetched",
        )
        attacking = news.open_connections("/trickle")

        (help_text,) = await say(telegram, "/help", chat_id=OTHER)
        (fetched,) = await say(telegram, "/fetch", chat_id=OTHER)
        # Both answered while the attacker's first downloads were still trickling in,
        # and before the attacker's own reply.
        assert attacking <= news.open_connections("/trickle")
        assert len(telegram.sent(ATTACKER)) == setup
        assert "/fetch" in help_text
        assert hot_titles("python")[0] in fetched and newest_feed_titles()[0] in fetched

        await wait_for(
            lambda: shown(telegram, ATTACKER, trickles[-1], setup),
            "the attacker's whole reply",
            30,
        )
        replies = [m.displayed for m in telegram.sent(ATTACKER)[setup:]]
        reasons = warnings_of(replies)
        assert set(reasons) == set(trickles)
        assert all("timed out" in reason for reason in reasons.values()), reasons
        # The deadline shut the connections down; one host never had more than its share.
        await wait_for(
            lambda: not news.open_connections("/trickle"), "the trickling connections are closed"
        )
        assert news.peak_connections("/trickle") == PER_HOST

        # The attack stops (the feeds answer again): the attacker's chat recovers.
        news.set_route(
            "/trickle",
            body=(DATA / "rss20.xml").read_bytes(),
            headers={"Content-Type": "application/rss+xml"},
        )
        await asyncio.sleep(1.1)  # the remembered failures expire (NEWSBOT_CACHE_TTL=1)
        before = len(telegram.sent(ATTACKER))
        telegram.push_message(ATTACKER, "/fetch")
        await wait_for(
            lambda: shown(telegram, ATTACKER, trickles[-1], before),
            "the attacker's whole reply",
            30,
        )
        again = [m.displayed for m in telegram.sent(ATTACKER)[before:]]
        assert warnings_of(again) == {}
        assert newest_feed_titles()[0] in "\n".join(again)


class DeadDNS:
    """The DNS edge for names under ``.dead.example``: asked, it never answers.

    Once ``revive(address)`` is called, the lookups held so far fail (as a resolver's
    timeout does) and new ones answer with ``address``.
    """

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.released = threading.Event()
        self.address: str | None = None
        self._lock = threading.Lock()

    def revive(self, address: str) -> None:
        self.address = address
        self.released.set()

    def __call__(self, host: str, port: int) -> list[str]:
        if not host.endswith(".dead.example"):
            return system_lookup(host, port)
        if self.address is not None:
            return [self.address]
        with self._lock:
            self.asked.append(host)
        self.released.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


@pytest.mark.alone
async def test_feeds_whose_dns_never_answers_delay_only_their_own_chat(
    telegram, healthy, redis_url
):
    port = healthy.url.rsplit(":", 1)[1]
    dead = [
        f"http://feed-{n}.dead.example:{port}/feeds/rss20.xml" for n in range(FETCH_THREADS + 16)
    ]
    feed = f"{healthy.url}/feeds/rss20.xml"
    dns = DeadDNS()
    # Threads enough for every lookup to reach the DNS edge, so that the test can see
    # them all in progress before the other chat speaks.
    resolver = Resolver(dns, threads=len(dead))
    env = bot_env(
        telegram,
        redis_url,
        healthy,
        NEWSBOT_FETCH_TIMEOUT="4",
        NEWSBOT_MAX_SOURCES="100",
        NEWSBOT_CACHE_TTL="1",
    )
    try:
        async with bot_with_guard(env, Guard(allow_private=True, resolver=resolver)):
            await store_sources(env, ATTACKER, dead)  # as in the trickling test
            await say(telegram, f"/source python {feed}", chat_id=OTHER)
            setup = len(telegram.sent(ATTACKER))

            telegram.push_message(ATTACKER, "/fetch")
            await wait_for(
                lambda: len(dns.asked) == len(dead), "every dead name is being looked up"
            )

            (help_text,) = await say(telegram, "/help", chat_id=OTHER)
            (fetched,) = await say(telegram, "/fetch", chat_id=OTHER)
            assert "/fetch" in help_text
            assert hot_titles("python")[0] in fetched and newest_feed_titles()[0] in fetched
            # The attacker's lookups are still unanswered, its reply not yet sent.
            assert not dns.released.is_set() and len(telegram.sent(ATTACKER)) == setup

            await wait_for(
                lambda: shown(telegram, ATTACKER, dead[-1], setup),
                "the attacker's whole reply",
                30,
            )
            reasons = warnings_of([m.displayed for m in telegram.sent(ATTACKER)[setup:]])
            assert set(reasons) == set(dead)
            assert all("did not resolve in time" in r for r in reasons.values()), reasons

            # DNS answers again (with the healthy server's address): the chat recovers.
            dns.revive(healthy.host)
            await asyncio.sleep(1.1)  # the remembered failures expire (NEWSBOT_CACHE_TTL=1)
            before = len(telegram.sent(ATTACKER))
            telegram.push_message(ATTACKER, "/fetch")
            await wait_for(
                lambda: shown(telegram, ATTACKER, dead[-1], before),
                "the attacker's whole reply",
                30,
            )
            again = [m.displayed for m in telegram.sent(ATTACKER)[before:]]
            assert warnings_of(again) == {}
            assert healthy.count("/feeds/rss20.xml") >= len(dead)
    finally:
        dns.released.set()
        resolver.close()


async def test_a_source_list_whose_dns_never_answers_delays_only_its_own_chat(
    telegram, healthy, redis_url
):
    dead = [f"http://src-{n}.dead.example/rss.xml" for n in range(20)]
    feed = f"{healthy.url}/feeds/rss20.xml"
    dns = DeadDNS()
    resolver = Resolver(dns, threads=len(dead))
    # The SSRF guard on: every name is looked up at /source; 127.0.0.2 stands in for a
    # public server.
    guard = Guard(exempt=frozenset({ipaddress.ip_address(healthy.host)}), resolver=resolver)
    env = bot_env(
        telegram, redis_url, healthy, NEWSBOT_FETCH_TIMEOUT="4", NEWSBOT_ALLOW_PRIVATE_URLS="false"
    )
    try:
        async with bot_with_guard(env, guard):
            telegram.push_message(ATTACKER, "/source " + " ".join(dead))
            await wait_for(
                lambda: len(dns.asked) == len(dead), "every name of the list is being looked up"
            )

            (reply,) = await say(telegram, f"/source {feed}", chat_id=OTHER)
            assert reply.startswith("Your sources are now")
            (fetched,) = await say(telegram, "/fetch", chat_id=OTHER)
            assert newest_feed_titles()[0] in fetched
            assert not dns.released.is_set() and telegram.sent(ATTACKER) == []

            await wait_for(lambda: telegram.sent(ATTACKER), "the attacker's reply", 30)
            (reply,) = [m.displayed for m in telegram.sent(ATTACKER)]
            assert reply.startswith("Your sources are unchanged.")
            reasons = warnings_of([reply])
            # The reply names the first ten refusals and counts the rest.
            assert set(reasons) == set(dead[:10]) and "10 more" in reply, reply
            assert all("did not resolve in time" in r for r in reasons.values()), reasons
    finally:
        dns.released.set()
        resolver.close()
