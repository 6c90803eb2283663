"""Tests of newsbot.news: one upstream fetch per source and cache window, for everyone.

A real Redis holds the shared cache; FakeNews counts what reaches the "upstream" servers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from fakes.news import FakeNews
from newsbot import keys
from newsbot.config import Settings
from newsbot.models import Item, Source
from newsbot.news import News, source_id
from newsbot.sources.download import Downloader, Validators
from newsbot.sources.fetcher import Fetched, Fetcher, url_address
from newsbot.sources.guard import Guard
from newsbot.sources.kinds import default_fetchers
from newsbot.sources.rss import parse_feed
from newsbot.store import Store

DATA = Path(__file__).resolve().parent / "data"
RSS20 = (DATA / "rss20.xml").read_bytes()
PYTHON = Source("reddit", "r/python", "python")

MakeNews = Callable[..., News]


def feed(news: FakeNews, path: str) -> Source:
    url = news.url + path
    return Source("feed", url, url)


@pytest.fixture
async def stores(redis_url: str) -> AsyncIterator[list[Store]]:
    """Two stores on one real Redis, as two replicas have."""
    opened = [Store(aioredis.Redis.from_url(redis_url, decode_responses=True)) for _ in range(2)]
    yield opened
    for store in opened:
        await store.close()


@pytest.fixture
def make_news(news: FakeNews, stores: list[Store]) -> Iterator[MakeNews]:
    """Build News objects (replica 0 or 1) reading Reddit and feeds from the fake."""
    built: list[News] = []

    def make(replica: int = 0, **overrides: Any) -> News:
        settings = dataclasses.replace(
            Settings(reddit_url=news.url, allow_private_urls=True), **overrides
        )
        built.append(News(settings, stores[replica]))
        return built[-1]

    yield make
    for made in built:
        made.close()


async def test_concurrent_requests_for_one_source_fetch_it_once(
    news: FakeNews, make_news: MakeNews
) -> None:
    news.set_route("/busy.xml", body=RSS20, delay=0.3)
    fetcher = make_news()
    source = feed(news, "/busy.xml")
    results = await asyncio.gather(*(fetcher.get_one(source) for _ in range(20)))
    assert news.count("/busy.xml") == 1
    expected = tuple(parse_feed(RSS20, 5))
    assert all(result.error is None and result.items == expected for result in results)


async def test_concurrent_requests_for_a_subreddit_fetch_it_once(
    news: FakeNews, make_news: MakeNews
) -> None:
    fetcher = make_news()
    results = await asyncio.gather(*(fetcher.get_one(PYTHON) for _ in range(20)))
    assert news.count("/r/python/") == 1
    assert len({result.items for result in results}) == 1
    assert len(results[0].items) == 5


async def test_two_replicas_asking_at_once_fetch_once(news: FakeNews, make_news: MakeNews) -> None:
    news.set_route("/busy.xml", body=RSS20, delay=0.3)
    source = feed(news, "/busy.xml")
    first, second = make_news(0), make_news(1)
    results = await asyncio.gather(
        *(replica.get_one(source) for _ in range(5) for replica in (first, second))
    )
    assert news.count("/busy.xml") == 1
    assert all(result.items == results[0].items for result in results)
    assert len(results[0].items) == 5


async def test_the_cache_is_used_for_its_ttl_then_revalidated(
    news: FakeNews, make_news: MakeNews
) -> None:
    fetcher = make_news(cache_ttl=1)
    source = feed(news, "/feeds/rss20.xml")
    fresh = await fetcher.get_one(source)
    assert fresh.error is None and len(fresh.items) == 5
    assert (await fetcher.get_one(source)).items == fresh.items
    assert news.count("/feeds/rss20.xml") == 1

    await asyncio.sleep(1.1)
    again = await fetcher.get_one(source)
    assert news.count("/feeds/rss20.xml") == 2
    _, _, headers = news.requests[-1]
    assert headers.get("if-none-match")  # a conditional GET, which the fake answers 304
    assert again.error is None and again.items == fresh.items

    await fetcher.get_one(source)  # the 304 started a new cache window
    assert news.count("/feeds/rss20.xml") == 2


async def test_the_cache_is_shared_by_replicas(news: FakeNews, make_news: MakeNews) -> None:
    source = feed(news, "/feeds/atom.xml")
    first = await make_news(0).get_one(source)
    second = await make_news(1).get_one(source)
    assert news.count("/feeds/atom.xml") == 1
    assert second.items == first.items


async def age(store: Store, source: Source, seconds: float) -> None:
    """Make the cached fetch of a source look ``seconds`` older."""
    cached = await store.get_cached(source_id(source))
    assert cached is not None
    await store.put_cached(
        source_id(source), dataclasses.replace(cached, fetched_at=cached.fetched_at - seconds)
    )


async def test_a_failing_source_is_remembered_briefly(
    news: FakeNews, make_news: MakeNews, stores: list[Store]
) -> None:
    fetcher = make_news()
    broken = feed(news, "/status/503")
    assert (await fetcher.get_one(broken)).error == "the server failed (503)"
    assert (await fetcher.get_one(broken)).error == "the server failed (503)"
    assert news.count("/status/503") == 1

    await age(stores[0], broken, keys.ERROR_TTL_SECONDS + 1)
    await fetcher.get_one(broken)
    assert news.count("/status/503") == 2

    # Good news of the same age is still fresh: only errors expire this soon.
    working = feed(news, "/feeds/rss10.xml")
    await fetcher.get_one(working)
    await age(stores[0], working, keys.ERROR_TTL_SECONDS + 1)
    await fetcher.get_one(working)
    assert news.count("/feeds/rss10.xml") == 1


@pytest.mark.alone
async def test_the_other_sources_arrive_when_some_fail(
    news: FakeNews, make_news: MakeNews
) -> None:
    news.slow_seconds = 3.0
    sources = [
        feed(news, "/feeds/rss20.xml"),
        feed(news, "/status/404"),
        PYTHON,
        Source("reddit", "r/privatesub", "privatesub"),
        feed(news, "/slow"),
        Source("reddit", "r/nosuchsub", "r/NoSuchSub"),
        feed(news, "/html"),
        feed(news, "/feeds/atom.xml"),
    ]
    results = await make_news(fetch_timeout=0.5).get(sources)
    assert [result.source for result in results] == sources
    assert [result.error for result in results] == [
        None,
        "not found (404)",
        None,
        "private, quarantined or banned subreddit (403)",
        "timed out",
        "no such subreddit (404)",
        # A web page: discovery says it links to no feed (see test_discovery).
        "not a feed but a web page, and it links to no feed",
        None,
    ]
    assert all(results[index].items for index in (0, 2, 7))


async def test_items_per_source_is_honoured(news: FakeNews, make_news: MakeNews) -> None:
    results = await make_news(items_per_source=3).get([feed(news, "/feeds/rss20.xml"), PYTHON])
    assert [item.title for item in results[0].items] == [
        item.title for item in parse_feed(RSS20, 3)
    ]
    assert len(results[1].items) == 3
    assert "Sunday Daily Thread" not in results[1].items[0].title  # stickied: left out


async def test_private_feed_urls_are_refused_unless_allowed(
    news: FakeNews, make_news: MakeNews
) -> None:
    result = await make_news(allow_private_urls=False).get_one(feed(news, "/feeds/rss20.xml"))
    assert result.error is not None and "private or local" in result.error
    assert news.requests == []


async def test_a_replica_that_looked_before_another_stored_uses_that_fetch(
    make_news: MakeNews, news: FakeNews
) -> None:
    # Replica 1 found the cache empty; before it takes the fetch lock, replica 0 fetches
    # and stores. Replica 1 must use that fetch, not make a second one, even with no TTL.
    first, second = make_news(0, cache_ttl=0), make_news(1, cache_ttl=0)
    asked = time.time()
    await first.get_one(PYTHON)
    fetched = await second._refresh(PYTHON, source_id(PYTHON), None, asked)
    assert fetched.items and news.count("/r/python") == 1


def long_feed(count: int) -> bytes:
    items = "".join(
        f"<item><title>Story {n}</title><link>https://example.org/{n}</link>"
        f"<guid>https://example.org/{n}</guid></item>"
        for n in range(count)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Long</title>{items}'
        "</channel></rss>"
    ).encode()


async def test_the_cache_keeps_the_whole_item_list_and_a_request_gets_its_share(
    news: FakeNews, make_news: MakeNews, stores: list[Store]
) -> None:
    news.set_route(
        "/long.xml", body=long_feed(140), headers={"Content-Type": "application/rss+xml"}
    )
    source = feed(news, "/long.xml")
    fetcher = make_news(items_per_source=5)
    (shown,) = await fetcher.get([source])
    assert [item.title for item in shown.items] == [f"Story {n}" for n in range(5)]
    cached = await stores[0].get_cached(source_id(source))
    assert cached is not None and len(cached.items) == 100  # up to 100, not 5
    (everything,) = await fetcher.get([source], limit=100)
    assert [item.title for item in everything.items] == [f"Story {n}" for n in range(100)]
    assert news.count("/long.xml") == 1

    (listing,) = await fetcher.get([PYTHON], limit=100)
    assert len(listing.items) > 5  # the fixture's whole listing, stickies left out
    assert "limit=100" in next(path for _, path, _ in news.requests if path.startswith("/r/"))


async def test_cached_entries_are_read_together_and_only_the_missing_fetched(
    news: FakeNews, make_news: MakeNews, stores: list[Store]
) -> None:
    sources = [feed(news, f"/feeds/rss20.xml?copy={n}") for n in range(20)]
    fetcher = make_news()
    await fetcher.get(sources[::2])
    assert news.count("/feeds/rss20.xml") == 10
    found = await stores[0].get_cached_many([source_id(s) for s in sources])
    assert [entry is not None for entry in found] == [n % 2 == 0 for n in range(20)]
    results = await fetcher.get(sources)
    assert news.count("/feeds/rss20.xml") == 20  # only the ten missing ones
    assert [result.source for result in results] == sources
    assert all(result.items == results[0].items and result.items for result in results)
    assert await stores[0].get_cached_many([]) == []


async def test_a_trickling_source_ends_at_the_deadline_and_the_rest_arrive(
    news: FakeNews, make_news: MakeNews
) -> None:
    sources = [feed(news, "/trickle"), feed(news, "/feeds/rss20.xml"), PYTHON]
    results = await make_news(fetch_timeout=1.0).get(sources)
    assert [result.error for result in results] == ["timed out", None, None]
    assert results[1].items and results[2].items


class Headlines:
    """A kind of source News has never heard of: a text file, one "LINK TITLE" a line.

    Written against sources.fetcher alone, as a new kind of source would be: News knows
    nothing of it but the Fetcher protocol. A line without a title is a bug of this
    fetcher's own (its split raises ValueError), the kind of bug the error mapping is for.
    """

    def __init__(self, downloader: Downloader) -> None:
        self.downloader = downloader
        self.closed = False

    def address(self, source: Source) -> tuple[str, int]:
        return url_address(source.key)

    async def resolve(self, source: Source, expires: float) -> None:
        host, port = self.address(source)
        await self.downloader.resolver.resolve_async(host, port, expires - time.monotonic())

    def fetch(
        self, source: Source, limit: int, validators: Validators | None, expires: float
    ) -> Fetched:
        download = self.downloader.get(source.key, validators=validators, expires=expires)
        if download.status == 304:
            return Fetched(items=None, validators=download.validators)
        items = []
        for line in download.body.decode().splitlines()[:limit]:
            link, title = line.split(" ", 1)
            items.append(Item(id=link, title=title, link=link))
        return Fetched(items=tuple(items), validators=download.validators)

    def close(self) -> None:
        self.closed = True
        self.downloader.close()


@pytest.fixture
def with_headlines(news: FakeNews) -> Iterator[tuple[Settings, Guard, dict[str, Fetcher]]]:
    """Settings, one guard and the default fetchers plus Headlines, built once for all."""
    settings = Settings(reddit_url=news.url, allow_private_urls=True)
    guard = Guard(allow_private=True)
    fetchers: dict[str, Fetcher] = {
        **default_fetchers(settings, guard),
        "headlines": Headlines(Downloader(guard)),
    }
    yield settings, guard, fetchers
    for fetcher in fetchers.values():
        fetcher.close()
    guard.close()


HEADLINES = ["The first headline", "The second headline", "The third headline"]


async def test_a_new_kind_of_source_plugs_in_through_the_fetcher_protocol_alone(
    news: FakeNews,
    stores: list[Store],
    with_headlines: tuple[Settings, Guard, dict[str, Fetcher]],
) -> None:
    settings, guard, fetchers = with_headlines
    replicas = [News(settings, store, guard, fetchers=fetchers) for store in stores]
    try:
        source = Source("headlines", news.url + "/feeds/headlines.txt", "my headlines")
        # Twenty requests on two replicas, each for the new kind and a subreddit.
        results = await asyncio.gather(
            *(replica.get([source, PYTHON]) for _ in range(10) for replica in replicas)
        )
        assert news.count("/feeds/headlines.txt") == 1  # cached and shared like the others
        assert news.count("/r/python") == 1
        for lines, listing in results:
            assert lines.source == source and lines.error is None
            assert [item.title for item in lines.items] == HEADLINES
            assert listing.error is None and len(listing.items) == 5

        # Once the cache window has passed: a conditional GET, and the 304 keeps the items.
        await age(stores[0], source, settings.cache_ttl + 1)
        again = await replicas[1].get_one(source)
        assert news.count("/feeds/headlines.txt") == 2
        _, _, headers = news.requests[-1]
        assert headers.get("if-none-match")
        assert again.error is None and [item.title for item in again.items] == HEADLINES
    finally:
        for replica in replicas:
            replica.close()


async def test_a_fetchers_unexpected_exception_fails_only_its_own_source(
    news: FakeNews,
    stores: list[Store],
    with_headlines: tuple[Settings, Guard, dict[str, Fetcher]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings, guard, fetchers = with_headlines
    news.set_route("/broken.txt", body="https://example.org/a-link-without-a-title\n")
    broken = Source("headlines", news.url + "/broken.txt", "broken headlines")
    sources = [feed(news, "/feeds/rss20.xml"), broken, PYTHON]
    fetcher = News(settings, stores[0], guard, fetchers=fetchers)
    try:
        with caplog.at_level(logging.ERROR, logger="newsbot.news"):
            results = await fetcher.get(sources)
    finally:
        fetcher.close()
    assert [result.source for result in results] == sources
    assert [result.error for result in results] == [None, "could not be read", None]
    assert results[0].items and results[2].items
    # The bug is in the log, with its traceback; the chat only reads the one line.
    (record,) = [r for r in caplog.records if r.getMessage() == f"fetching {broken.key} failed"]
    assert record.exc_info is not None and record.exc_info[0] is ValueError


async def test_fetchers_given_to_news_stay_the_callers_and_serve_the_next_one(
    news: FakeNews,
    stores: list[Store],
    with_headlines: tuple[Settings, Guard, dict[str, Fetcher]],
) -> None:
    settings, guard, fetchers = with_headlines
    headlines = fetchers["headlines"]
    assert isinstance(headlines, Headlines)
    source = Source("headlines", news.url + "/feeds/headlines.txt", "my headlines")
    first = News(settings, stores[0], guard, fetchers=fetchers)
    assert (await first.get_one(source)).error is None
    first.close()
    assert not headlines.closed  # built once by the wiring, closed by it
    # A News built later on the same fetchers fetches with them: a source not cached.
    second = News(settings, stores[1], guard, fetchers=fetchers)
    try:
        again = await second.get_one(dataclasses.replace(source, key=source.key + "?again"))
    finally:
        second.close()
    assert again.error is None and [item.title for item in again.items] == HEADLINES
    assert news.count("/feeds/headlines.txt") == 2
