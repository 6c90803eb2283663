"""Feed discovery and moved feeds, as a user sees them.

A web page given to /source or /add stands for the first feed it links to; a page without
a feed link is refused; a feed that moved permanently (301, 308) is stored under its new
URL for every chat holding it, one that moved temporarily (302, 307) is not. The pages in
tests/data say in their first comment which real page shape they model.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.news import FakeNews
from harness import bot_env, running_bot
from newsbot.sources.discovery import WebPage, find_feeds
from newsbot.sources.download import Downloader
from newsbot.sources.guard import Guard
from newsbot.sources.rss import fetch_feed
from test_bot import newest_feed_titles, say
from test_isolation_sources import bot_with_guard

DATA = Path(__file__).parent / "data"
OTHER = 5151


@pytest.fixture
def downloader() -> Iterator[Downloader]:
    fetcher = Downloader(Guard(allow_private=True), timeout=5)
    yield fetcher
    fetcher.close()


def test_feed_links_are_found_in_page_order_and_resolved() -> None:
    page = (DATA / "hugo_page.html").read_bytes()
    assert find_feeds(page, "https://rail.example/blog/posts/", {}) == [
        "https://rail.example/feeds/atom.xml"
    ]  # against <base href>, not the page
    page = (DATA / "micro_page.html").read_bytes()
    assert find_feeds(page, "https://micro.example/about/", {}) == [
        "https://micro.example/about/microblog.feed.json"
    ]
    links = (
        b'<html><head><link rel="alternate stylesheet" type="text/css" href="/a.css">'
        b'<link rel="alternate" type="application/rss+xml" href="/f?a=1&amp;b=2">'
        b'<link rel="alternate" type="application/rss+xml" href="javascript:x()">'
        b'<link rel="alternate" type="application/atom+xml" href="/f?a=1&b=2">'
        b"</head><body>"
    )
    assert find_feeds(links, "http://x.example/p", {}) == ["http://x.example/f?a=1&b=2"]


def test_a_web_page_names_its_feeds_to_the_fetcher(news: FakeNews, downloader: Downloader) -> None:
    with pytest.raises(WebPage) as raised:
        fetch_feed(downloader, news.url + "/feeds/wordpress_page.html", 5, None)
    assert raised.value.feeds == [news.url + "/feeds/rss20.xml", news.url + "/feeds/rss10.xml"]
    with pytest.raises(WebPage, match="links to no feed") as raised:
        fetch_feed(downloader, news.url + "/html", 5, None)
    assert raised.value.feeds == []


@pytest.mark.parametrize(
    "hops, moved",
    [
        ([301], "/feeds/rss20.xml"),
        ([308], "/feeds/rss20.xml"),
        ([301, 308], "/feeds/rss20.xml"),
        ([301, 302], "/hop1"),  # permanent up to the temporary hop, no further
        ([302, 301], None),
        ([302], None),
        ([307], None),
    ],
)
def test_only_leading_permanent_redirects_count_as_a_move(
    news: FakeNews, downloader: Downloader, hops: list[int], moved: str | None
) -> None:
    target = "/feeds/rss20.xml"
    for index in reversed(range(len(hops))):
        news.set_route(f"/hop{index}", hops[index], headers={"Location": target})
        target = f"/hop{index}"
    download = downloader.get(news.url + "/hop0")
    assert download.url == news.url + "/feeds/rss20.xml"
    assert download.moved_to == (news.url + moved if moved else None)


async def test_a_page_with_an_absolute_feed_link_adds_its_feed(telegram, news, redis_url):
    page = f"{news.url}/feeds/wordpress_page.html"
    feed = f"{news.url}/feeds/rss20.xml"
    async with running_bot(bot_env(telegram, redis_url, news)):
        (reply,) = await say(telegram, f"/source python {page}")
        assert reply.startswith(f"Your sources are now:\n• python\n• {feed}"), reply
        assert f"🔎 Found the feed of {page}: {feed}" in reply
        (listing,) = await say(telegram, "/sources")
        assert listing == f"Your sources:\n• python\n• {feed}"
        (text,) = await say(telegram, "/fetch")
    assert newest_feed_titles()[0] in text
    assert news.count("/feeds/rss20.xml") == 1  # /fetch was served from /source's fetch


async def test_a_page_with_a_relative_link_and_base_href_adds_its_feed(telegram, news, redis_url):
    news.set_route(
        "/blog/posts/",
        body=(DATA / "hugo_page.html").read_bytes(),
        headers={"Content-Type": "text/html; charset=utf-8"},
    )
    micro = f"{news.url}/feeds/micro_page.html"
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, "/source python")
        (reply,) = await say(telegram, f"/add {news.url}/blog/posts/ {micro}")
        atom, json_feed = f"{news.url}/feeds/atom.xml", f"{news.url}/feeds/microblog.feed.json"
        assert reply.startswith(f"Your sources:\n• python\n• {atom}\n• {json_feed}"), reply
        assert f"🔎 Found the feed of {micro}: {json_feed}" in reply
        (text,) = await say(telegram, "/fetch")
    assert "Signal box wiring finally works" in text and "Coffee first." in text


async def test_a_page_without_a_feed_link_is_refused(telegram, news, redis_url):
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, "/source python")
        (reply,) = await say(telegram, f"/add {news.url}/html")
        assert reply.startswith("Your sources:\n• python\n\nNot added:")
        assert "not a feed but a web page, and it links to no feed" in reply
        (reply,) = await say(telegram, f"/source {news.url}/html")
        assert reply.startswith("Your sources are unchanged.")
        (listing,) = await say(telegram, "/sources")
    assert listing == "Your sources:\n• python"


async def test_a_discovered_feed_passes_the_guard(telegram, news, redis_url):
    news.set_route(
        "/sneaky",
        body='<html><head><link rel="alternate" '
        'type="application/rss+xml" href="file:///etc/passwd">'
        '<link rel="alternate" type="application/rss+xml" '
        'href="http://user:pw@feeds.example/x"></head></html>',
        headers={"Content-Type": "text/html"},
    )
    async with running_bot(bot_env(telegram, redis_url, news)):
        (reply,) = await say(telegram, f"/source python {news.url}/sneaky")
    assert reply.startswith("Your sources are now:\n• python\n\nNot added:"), reply
    assert "user name or password" in reply


async def test_a_discovered_feed_on_a_private_address_is_refused(telegram, news, redis_url):
    # The SSRF guard on; 127.0.0.2 stands in for a public site whose page links to a
    # feed on a private address (127.0.0.1, where the other fake listens).
    with FakeNews(host="127.0.0.2") as public:
        public.set_route(
            "/",
            headers={"Content-Type": "text/html"},
            body=(
                '<html><head><link rel="alternate" type="application/rss+xml" '
                f'href="{news.url}/feeds/rss20.xml"></head></html>'
            ),
        )
        guard = Guard(exempt=frozenset({ipaddress.ip_address(public.host)}))
        env = bot_env(telegram, redis_url, public, NEWSBOT_ALLOW_PRIVATE_URLS="false")
        try:
            async with bot_with_guard(env, guard):
                (reply,) = await say(telegram, f"/source python {public.url}/")
        finally:
            guard.close()
    assert reply.startswith("Your sources are now:\n• python\n\nNot added:"), reply
    assert f"its feed {news.url}/feeds/rss20.xml" in reply and "private" in reply
    assert news.count("/feeds/") == 0  # the private feed was never fetched


async def test_a_feed_that_moved_for_good_is_shown_at_its_new_url_in_every_chat(
    telegram, news, redis_url
):
    old, new = f"{news.url}/old.xml", f"{news.url}/feeds/rss20.xml"
    news.set_route("/old.xml", body=(DATA / "rss20.xml").read_bytes())
    env = bot_env(telegram, redis_url, news, NEWSBOT_CACHE_TTL="1")
    async with running_bot(env):
        for chat in (CHAT_A, CHAT_B):
            await say(telegram, f"/source python {old}", chat_id=chat)
        await say(telegram, f"/filter {old} council", chat_id=CHAT_B)
        news.set_route("/old.xml", 301, headers={"Location": "/feeds/rss20.xml"})
        await asyncio.sleep(1.1)  # the cached fetch of the old URL runs out (TTL 1 s)
        (text,) = await say(telegram, "/fetch", chat_id=CHAT_A)
        assert newest_feed_titles()[0] in text
        for chat in (CHAT_A, CHAT_B):
            (listing,) = await say(telegram, "/sources", chat_id=chat)
            assert listing == f"Your sources:\n• python\n• {new}"
        (rules,) = await say(telegram, "/filter", chat_id=CHAT_B)
        assert f"• {new}: council" in rules  # the filter followed its feed
        # A user giving the old URL now gets the new one stored at once.
        (reply,) = await say(telegram, f"/source {old}", chat_id=OTHER)
    assert reply.startswith(f"Your sources are now:\n• {new}"), reply
    assert f"🔎 {old} moved to {new}" in reply


async def test_a_temporary_redirect_keeps_the_url_given(telegram, news, redis_url):
    old = f"{news.url}/old.xml"
    news.set_route("/old.xml", 302, headers={"Location": "/feeds/rss20.xml"})
    async with running_bot(bot_env(telegram, redis_url, news)):
        (reply,) = await say(telegram, f"/source {old}", chat_id=CHAT_A)
        assert reply == f"Your sources are now:\n• {old}"
        (text,) = await say(telegram, "/fetch", chat_id=CHAT_A)
        assert newest_feed_titles()[0] in text
        (listing,) = await say(telegram, "/sources", chat_id=CHAT_A)
    assert listing == f"Your sources:\n• {old}"


CHAT_A, CHAT_B = 6161, 6262
