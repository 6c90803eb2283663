"""Tests of newsbot.sources: what users type, the SSRF guard, downloads, feeds and Reddit.

Parsing is tested as pure functions; downloads, feeds and Reddit make real HTTP requests
to the FakeNews server on loopback.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import ipaddress
import json
import re
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from fakes.news import BOMB, HUGE_BYTES, XXE, FakeNews
from newsbot import __version__
from newsbot.config import Settings
from newsbot.errors import FetchError, InvalidSource
from newsbot.sources.download import CHUNK, Downloader, FetchPool, Validators
from newsbot.sources.feeds import Feeds
from newsbot.sources.fetcher import url_address
from newsbot.sources.guard import Guard, Resolver, is_public
from newsbot.sources.parsing import parse_source, parse_sources, split_sources
from newsbot.sources.reddit import (
    Reddit,
    RedditRateLimited,
    parse_listing,
    parse_wait,
    post_link,
    retry_after,
)
from newsbot.sources.rss import check_budget, fetch_feed, parse_feed
from newsbot.sources.threads import DaemonPool

DATA = Path(__file__).resolve().parent / "data"
SECOND_LOOPBACK = ipaddress.ip_address("127.0.0.2")


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


# --- parsing: what the user typed ------------------------------------------------------


@pytest.mark.parametrize(
    "text, words",
    [
        ("python", ["python"]),
        ("python, golang", ["python", "golang"]),
        ("golang,rust", ["golang", "rust"]),
        ("  a ,, b\tc\n d ,", ["a", "b", "c", "d"]),
        ("", []),
        (" , ,\n", []),
    ],
)
def test_split_sources(text: str, words: list[str]) -> None:
    assert split_sources(text) == words


@pytest.mark.parametrize(
    "word, kind, key",
    [
        ("python", "reddit", "r/python"),
        ("r/python", "reddit", "r/python"),
        ("/r/Python/", "reddit", "r/python"),
        ("R/Python", "reddit", "r/python"),
        ("r/python/", "reddit", "r/python"),
        ("learn_python3", "reddit", "r/learn_python3"),
        ("abc", "reddit", "r/abc"),
        ("a" * 21, "reddit", "r/" + "a" * 21),
        ("https://example.org/feed.xml", "feed", "https://example.org/feed.xml"),
        ("HTTP://Example.ORG", "feed", "http://example.org/"),
        ("https://example.org:8443/rss?x=1#top", "feed", "https://example.org:8443/rss?x=1"),
        ("http://example.org:65535/", "feed", "http://example.org:65535/"),
        ("http://[2606:4700::1]:8080/feed", "feed", "http://[2606:4700::1]:8080/feed"),
        # Accepted by the parser: whether it may be fetched is the guard's call.
        ("http://[::1]/feed", "feed", "http://[::1]/feed"),
    ],
)
def test_parse_source_accepts(word: str, kind: str, key: str) -> None:
    source = parse_source(word)
    assert (source.kind, source.key, source.label) == (kind, key, word)


@pytest.mark.parametrize(
    "word, reason",
    [
        ("ab", "3 to 21"),
        ("a" * 22, "3 to 21"),
        ("py-thon", "subreddit"),
        ("r/ab", "subreddit"),
        ("/r/ab/", "subreddit"),
        ("r/", "subreddit"),
        ("example.org/feed.xml", "http:// or https://"),
        ("ftp://example.org/feed.xml", "http:// and https://"),
        ("file:///etc/passwd", "http:// and https://"),
        ("javascript:alert(1)", ""),
        ("http://example.org:99999/", "not a valid URL"),
        ("http://example.org:0/", "not a valid URL"),
        ("http://[::1/feed", "not a valid URL"),
        ("http://user:secret@example.org/feed", "password"),
        ("http://user@example.org/feed", "user name"),
        ("https:///feed.xml", "no host"),
        ("https://example.org/" + "a" * 2000, "longer than 2000"),
    ],
)
def test_parse_source_refuses(word: str, reason: str) -> None:
    with pytest.raises(InvalidSource, match=re.escape(reason) if reason else None) as refusal:
        parse_source(word)
    assert str(refusal.value)


def test_parse_sources_keeps_the_books_syntax() -> None:
    sources, refused = parse_sources("python, golang")
    assert [(s.kind, s.key, s.label) for s in sources] == [
        ("reddit", "r/python", "python"),
        ("reddit", "r/golang", "golang"),
    ]
    assert refused == []


def test_parse_sources_drops_duplicates_keeping_the_first() -> None:
    sources, refused = parse_sources(
        "python r/python /r/Python/ golang https://Example.org/f https://example.org/f"
    )
    assert [(s.key, s.label) for s in sources] == [
        ("r/python", "python"),
        ("r/golang", "golang"),
        ("https://example.org/f", "https://Example.org/f"),
    ]
    assert refused == []


def test_parse_sources_names_each_refusal_as_typed() -> None:
    sources, refused = parse_sources("python, ab ftp://x.org/f, https://example.org/rss")
    assert [s.key for s in sources] == ["r/python", "https://example.org/rss"]
    assert [word for word, _ in refused] == ["ab", "ftp://x.org/f"]
    assert all(reason for _, reason in refused)


_SOURCE_ALPHABET = st.sampled_from(
    [
        "r/",
        "/r/",
        "http://",
        "https://",
        "ftp://",
        "[",
        "]",
        ":",
        "@",
        "%",
        "/",
        ".",
        ",",
        " ",
        "\n",
        "#",
        "?",
        "::1",
        "99999",
        "python",
        "Example.org",
        "a",
        "_",
        "-",
        "é",
    ]
)
_SOURCE_TEXT = st.one_of(
    st.text(), st.lists(st.one_of(_SOURCE_ALPHABET, st.text(max_size=3))).map("".join)
)


@given(_SOURCE_TEXT)
def test_parse_sources_never_raises_and_keeps_keys_canonical(text: str) -> None:
    sources, refused = parse_sources(text)
    words = split_sources(text)
    assert len(sources) + len(refused) <= len(words)
    assert all(word in words for word, _ in refused)
    assert len({source.key for source in sources}) == len(sources)
    for source in sources:
        assert source.label in words
        if source.kind == "reddit":
            assert re.fullmatch(r"r/[a-z0-9_]{3,21}", source.key)
        else:
            assert source.key.startswith(("http://", "https://"))
            # The canonical key is itself a valid source with the same key.
            assert parse_source(source.key).key == source.key


# --- guard: the SSRF guard -------------------------------------------------------------


@pytest.mark.parametrize(
    "address, public",
    [
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("10.255.255.254", False),
        ("172.16.0.1", False),
        ("172.31.255.254", False),
        ("172.32.0.1", True),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::7f00:1", False),
        ("2002:7f00:1::", False),  # 6to4 wrapping 127.0.0.1
        ("2002:a00:1::", False),  # 6to4 wrapping 10.0.0.1
        ("2002:808:808::", True),  # 6to4 wrapping 8.8.8.8
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("::ffff:8.8.8.8", True),
        ("2606:4700::1", True),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    # Only classified: no connection is made to any of these.
    assert is_public(ipaddress.ip_address(address)) is public


PRIVATE_URLS = [
    "http://localhost/",
    "http://127.0.0.1:6379/",
    "https://127.0.0.1:8443/feed",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/feed",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://127.1/",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_guard_refuses_private_urls(url: str) -> None:
    with pytest.raises(InvalidSource, match="private or local"):
        Guard().check_url(url)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.org/feed", "gopher://127.0.0.1:6379/", "http:///feed"],
)
def test_guard_refuses_other_schemes_even_when_private_urls_are_allowed(url: str) -> None:
    for guard in (Guard(), Guard(allow_private=True)):
        with pytest.raises(InvalidSource, match="http"):
            guard.check_url(url)


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_allow_private_turns_the_guard_off(url: str) -> None:
    Guard(allow_private=True).check_url(url)


@pytest.mark.parametrize("url", ["http://8.8.8.8/feed", "https://[2606:4700::1]/rss"])
def test_guard_accepts_public_address_literals_without_connecting(url: str) -> None:
    Guard().check_url(url)  # the loopback guard fails the test if this connects


def test_guard_exempts_only_the_addresses_it_is_given() -> None:
    guard = Guard(exempt=frozenset({SECOND_LOOPBACK}))
    guard.check_url("http://127.0.0.2:8080/feed")
    with pytest.raises(InvalidSource):
        guard.check_url("http://127.0.0.1:8080/feed")


# --- download: HTTP for feeds ----------------------------------------------------------


@pytest.fixture
def downloader() -> Iterator[Downloader]:
    """A downloader allowed to reach the fake server on loopback."""
    fetcher = Downloader(Guard(allow_private=True), timeout=5.0)
    yield fetcher
    fetcher.close()


@pytest.fixture
def far_news() -> Iterator[FakeNews]:
    """A second fake server on 127.0.0.2, standing in for a public host."""
    with FakeNews(host=str(SECOND_LOOPBACK)) as fake:
        yield fake


def count_body_bytes(fetcher: Downloader) -> list[int]:
    """Record the size of every body chunk the downloader reads off the wire."""
    sizes: list[int] = []

    def spy(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        stream = response.raw.stream

        def counted(*a: Any, **k: Any) -> Iterator[bytes]:
            for chunk in stream(*a, **k):
                sizes.append(len(chunk))
                yield chunk

        response.raw.stream = counted  # type: ignore[method-assign]

    fetcher.session.hooks["response"].append(spy)
    return sizes


def test_conditional_get_answers_304_to_known_validators(
    news: FakeNews, downloader: Downloader
) -> None:
    url = news.url + "/feeds/rss20.xml"
    first = downloader.get(url)
    assert first.status == 200 and first.body == data("rss20.xml")
    assert first.validators.etag

    second = downloader.get(url, validators=first.validators)
    assert second.status == 304 and second.body == b""
    _, _, headers = news.requests[-1]
    assert headers["if-none-match"] == first.validators.etag
    assert "if-modified-since" not in news.requests[0][2]


def test_downloads_say_who_they_are(news: FakeNews, downloader: Downloader) -> None:
    downloader.get(news.url + "/feeds/atom.xml")
    agent = news.requests[-1][2]["user-agent"]
    assert "newsbot" in agent and __version__ in agent


def test_size_cap_stops_reading_early(news: FakeNews) -> None:
    cap = 256 * 1024
    fetcher = Downloader(Guard(allow_private=True), max_bytes=cap)
    sizes = count_body_bytes(fetcher)
    try:
        with pytest.raises(FetchError, match="too big"):
            fetcher.get(news.url + "/huge")
    finally:
        fetcher.close()
    assert cap < sum(sizes) <= cap + CHUNK < HUGE_BYTES


def test_size_cap_trusts_a_large_content_length_without_reading(news: FakeNews) -> None:
    news.set_route("/big.xml", body=b"x" * 2048)
    fetcher = Downloader(Guard(allow_private=True), max_bytes=1024)
    sizes = count_body_bytes(fetcher)
    try:
        with pytest.raises(FetchError, match="too big"):
            fetcher.get(news.url + "/big.xml")
    finally:
        fetcher.close()
    assert sum(sizes) == 0


def test_a_slow_server_times_out(news: FakeNews) -> None:
    news.slow_seconds = 3.0
    fetcher = Downloader(Guard(allow_private=True), timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(FetchError, match="timed out"):
            fetcher.get(news.url + "/slow")
    finally:
        fetcher.close()
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    "status, reason",
    [
        (404, "not found (404)"),
        (410, "not found (410)"),
        (401, "access denied (401)"),
        (403, "access denied (403)"),
        (429, "slow down (429)"),
        (500, "the server failed (500)"),
        (503, "the server failed (503)"),
        (418, "unexpected answer (418)"),
    ],
)
def test_error_statuses_become_reasons(
    news: FakeNews, downloader: Downloader, status: int, reason: str
) -> None:
    with pytest.raises(FetchError, match=re.escape(reason)):
        downloader.get(f"{news.url}/status/{status}")


def test_a_closed_port_could_not_connect(downloader: Downloader) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchError, match="could not connect"):
        downloader.get(f"http://127.0.0.1:{port}/feed.xml")


def test_redirects_are_followed(news: FakeNews, downloader: Downloader) -> None:
    target = quote("/feeds/rss10.xml")
    download = downloader.get(f"{news.url}/redirect?to={target}&status=301")
    assert download.status == 200 and download.body == data("rss10.xml")
    assert download.url == news.url + "/feeds/rss10.xml"


def test_a_redirect_loop_ends(news: FakeNews, downloader: Downloader) -> None:
    news.set_route("/loop", status=302, headers={"Location": "/loop"})
    with pytest.raises(FetchError, match="too many redirects"):
        downloader.get(news.url + "/loop")
    assert news.count("/loop") <= 10


def test_a_redirect_to_a_private_address_is_refused(news: FakeNews, far_news: FakeNews) -> None:
    fetcher = Downloader(Guard(exempt=frozenset({SECOND_LOOPBACK})))
    try:
        # The "public" server may be fetched...
        assert fetcher.get(far_news.url + "/feeds/rss20.xml").status == 200
        # ...but not a hop from it into the private network.
        target = quote(news.url + "/feeds/rss20.xml", safe="")
        with pytest.raises(InvalidSource):
            fetcher.get(f"{far_news.url}/redirect?to={target}")
    finally:
        fetcher.close()
    assert far_news.count("/redirect") == 1
    assert news.requests == []


def test_a_redirect_to_a_file_url_is_refused(far_news: FakeNews) -> None:
    fetcher = Downloader(Guard(exempt=frozenset({SECOND_LOOPBACK})))
    try:
        with pytest.raises(InvalidSource):
            fetcher.get(far_news.url + "/redirect?to=file:///etc/passwd")
    finally:
        fetcher.close()


def test_connections_to_a_private_peer_are_refused_even_past_check_url(
    news: FakeNews, far_news: FakeNews
) -> None:
    """The adapter checks the peer a connection reached (DNS rebinding defence)."""
    fetcher = Downloader(Guard(exempt=frozenset({SECOND_LOOPBACK})))
    try:
        # The session directly: no check_url before the request.
        with pytest.raises(InvalidSource):
            fetcher.session.get(news.url + "/feeds/rss20.xml", timeout=5)
        response = fetcher.session.get(far_news.url + "/feeds/rss20.xml", timeout=5)
        with response:
            assert response.status_code == 200
    finally:
        fetcher.close()
    assert news.requests == []


# --- rss: parsing feeds ----------------------------------------------------------------


def expected_rss20_titles() -> list[str]:
    """Titles of rss20.xml newest first, worked out here from the pubDates."""
    channel = ElementTree.fromstring(data("rss20.xml")).find("channel")
    assert channel is not None
    dated = [
        (
            email.utils.parsedate_to_datetime(item.findtext("pubDate", "")),
            " ".join(item.findtext("title", "").split()),
        )
        for item in channel.iter("item")
    ]
    return [title for _, title in sorted(dated, key=lambda pair: pair[0], reverse=True)]


def expected_atom_titles() -> list[str]:
    """Titles of atom.xml newest first (published, else updated)."""
    ns = {"a": "http://www.w3.org/2005/Atom"}
    root = ElementTree.fromstring(data("atom.xml"))
    dated = []
    for entry in root.findall("a:entry", ns):
        stamp = entry.findtext("a:published", None, ns) or entry.findtext("a:updated", "", ns)
        dated.append((datetime.datetime.fromisoformat(stamp), entry.findtext("a:title", "", ns)))
    return [title for _, title in sorted(dated, key=lambda pair: pair[0], reverse=True)]


def test_rss20_items_come_newest_first_across_time_zones() -> None:
    expected = expected_rss20_titles()
    assert len(expected) == 8
    items = parse_feed(data("rss20.xml"), 50)
    assert [item.title for item in items] == expected
    stamps = [item.published for item in items]
    assert all(stamp is not None for stamp in stamps)
    assert stamps == sorted(stamps, reverse=True)  # type: ignore[type-var]


def test_parse_feed_honours_the_limit() -> None:
    assert [item.title for item in parse_feed(data("rss20.xml"), 3)] == expected_rss20_titles()[:3]


def test_rss10_items_come_newest_first() -> None:
    items = parse_feed(data("rss10.xml"), 10)
    assert [item.title for item in items] == [
        "Leonid meteor shower peaks tonight",
        "New 40 cm telescope installed in the east dome",
        "Jupiter at opposition: best views of the year",
        "Open night for schools & families on Friday",
    ]
    assert items[0].link == "https://observatory.example.org/notes/leonids"


def test_rss091_without_dates_keeps_the_files_order() -> None:
    items = parse_feed(data("rss091.xml"), 10)
    assert [item.title for item in items] == [
        "Plant garlic before the first frost",
        "Mulch the rhubarb crowns",
        "Clean and oil your spades",
        "Café compost: collecting coffee grounds",  # decoded from ISO-8859-1
    ]
    assert all(item.published is None for item in items)


def test_atom_entries_come_newest_first_with_their_alternate_links() -> None:
    items = parse_feed(data("atom.xml"), 10)
    expected = [" ".join(title.split()) for title in expected_atom_titles()]
    expected = [title.replace("<em>chalk</em> &amp; rust", "chalk & rust") for title in expected]
    assert [item.title for item in items] == expected
    links = {item.title: item.link for item in items}
    assert (
        links["Weathering wagons with chalk & rust"] == "https://railway.example.io/log/weathering"
    )
    assert links["Signal box wiring finally works"] == "https://railway.example.io/log/signal-box"


@pytest.mark.parametrize(
    "file, title, link",
    [
        (
            "rss20.xml",
            'Council votes <yes> on "Fish & Chips" festival',
            "https://gazette.example.com/2024/11/fish-and-chips?ref=rss&utm_source=feed",
        ),
        (
            "rss10.xml",
            "Open night for schools & families on Friday",
            "https://observatory.example.org/notes/open-night",
        ),
        (
            "atom.xml",
            "Weathering wagons with chalk & rust",
            "https://railway.example.io/log/weathering",
        ),
    ],
)
def test_titles_and_links_are_decoded_to_plain_text(file: str, title: str, link: str) -> None:
    items = parse_feed(data(file), 50)
    assert (title, link) in [(item.title, item.link) for item in items]


def test_item_ids_are_stable_and_distinct() -> None:
    first = parse_feed(data("rss20.xml"), 50)
    again = parse_feed(data("rss20.xml"), 50)
    assert [item.id for item in first] == [item.id for item in again]
    assert len({item.id for item in first}) == len(first)


@pytest.mark.parametrize(
    "body, reason",
    [
        (data("not_a_feed.html"), "not a feed"),
        (b"", "not a feed"),
        (b"   \n", "not a feed"),
        (b'{"items": []}', "not a feed"),
        (BOMB, "entities"),
        (XXE, "entities"),
    ],
)
def test_bodies_that_are_not_usable_feeds(body: bytes, reason: str) -> None:
    with pytest.raises(FetchError, match=reason):
        parse_feed(body, 5)


def test_entity_declarations_that_slip_past_the_check_are_not_expanded() -> None:
    # A "]" in a comment ends the prologue check's look-ahead early.
    bomb = BOMB.replace(b'<!ENTITY lol "lol">', b'<!-- ] --><!ENTITY lol "lol">')
    xxe = XXE.replace(b"<!ENTITY secret", b"<!-- ] --><!ENTITY secret")
    started = time.monotonic()
    for body in (bomb, xxe):
        try:
            items = parse_feed(body, 5)
        except FetchError:
            continue
        assert all(len(item.title) < 100 for item in items)
        assert all("lollol" not in item.title for item in items)
        assert all(item.title in ("&lol9;", "Secret: &secret;", "(untitled)") for item in items)
    assert time.monotonic() - started < 2.0


def test_fetch_feed_reuses_validators(news: FakeNews, downloader: Downloader) -> None:
    url = news.url + "/feeds/atom.xml"
    download, items = fetch_feed(downloader, url, 2, None)
    assert items is not None and len(items) == 2
    assert "atom" in news.requests[-1][2]["accept"]
    again, unchanged = fetch_feed(downloader, url, 2, download.validators)
    assert again.status == 304 and unchanged is None


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/html", "not a feed"),
        ("/bomb", "entities"),
        ("/xxe", "entities"),
        ("/empty", "not a feed"),
    ],
)
def test_fetch_feed_reports_bad_feeds(
    news: FakeNews, downloader: Downloader, path: str, reason: str
) -> None:
    with pytest.raises(FetchError, match=reason):
        fetch_feed(downloader, news.url + path, 5, None)


# --- the fetchers: what News gets from each kind ----------------------------------------


def test_a_feed_fetcher_reports_a_permanent_move_by_its_key_and_a_304_as_no_items(
    news: FakeNews, downloader: Downloader
) -> None:
    news.set_route("/old.xml", 301, headers={"Location": "/feeds/rss20.xml"})
    feeds = Feeds(downloader)
    old = parse_source(news.url + "/old.xml")
    fetched = feeds.fetch(old, 5, None, time.monotonic() + 5)
    assert fetched.moved_to == parse_source(news.url + "/feeds/rss20.xml").key
    assert fetched.items == tuple(parse_feed(data("rss20.xml"), 5))
    assert fetched.validators is not None and fetched.validators.etag
    again = feeds.fetch(old, 5, fetched.validators, time.monotonic() + 5)
    assert again.items is None and again.moved_to == fetched.moved_to
    # Where it lives is no move.
    here = feeds.fetch(parse_source(news.url + "/feeds/rss20.xml"), 5, None, time.monotonic() + 5)
    assert here.moved_to is None and here.items == fetched.items


def test_a_reddit_fetcher_fetches_a_subreddit_source_by_its_name(
    news: FakeNews, reddit: Reddit
) -> None:
    fetched = reddit.fetch(parse_source("r/Python"), 5, None, time.monotonic() + 5)
    assert fetched.items is not None
    assert [item.title for item in fetched.items] == python_titles()[:5]
    assert fetched.moved_to is None and isinstance(fetched.validators, Validators)
    assert reddit.address(parse_source("golang")) == url_address(news.url)
    assert news.count("/r/python/hot.json") == 1


# --- reddit ----------------------------------------------------------------------------


def python_titles() -> list[str]:
    """Titles of reddit_python.json in hot order, stickied posts left out."""
    listing = json.loads(data("reddit_python.json"))
    return [
        child["data"]["title"]
        for child in listing["data"]["children"]
        if not child["data"].get("stickied")
    ]


@pytest.mark.parametrize("limit", [1, 5, 100])
def test_parse_listing_keeps_hot_order_without_stickies(limit: int) -> None:
    items = parse_listing(data("reddit_python.json"), limit)
    assert [item.title for item in items] == python_titles()[:limit]
    assert all(item.link.startswith("https://www.reddit.com/r/Python/comments/") for item in items)
    assert all(item.published is not None for item in items)


@pytest.mark.parametrize("body", [b"", b"<html></html>", b"[]", b'{"data": {}}', b"null"])
def test_parse_listing_refuses_what_is_not_a_listing(body: bytes) -> None:
    with pytest.raises(FetchError, match="not a listing"):
        parse_listing(body, 5)


@pytest.fixture
def reddit(news: FakeNews) -> Iterator[Reddit]:
    """An anonymous Reddit client pointed at the fake."""
    fetcher = Downloader(timeout=5.0)
    yield Reddit(Settings(reddit_url=news.url), fetcher)
    fetcher.close()


def test_reddit_fetch_returns_hot_items_as_written(news: FakeNews, reddit: Reddit) -> None:
    items, validators = reddit.hot("python", 5)
    assert items is not None
    # raw_json=1: "&" and "<" arrive as written, not as Reddit's legacy &amp; / &lt;.
    assert [item.title for item in items] == python_titles()[:5]
    assert "Pandas & Polars: a benchmark on 100M rows" in [item.title for item in items]
    assert isinstance(validators, Validators)
    headers = news.requests[-1][2]
    assert "newsbot" in headers["user-agent"] and __version__ in headers["user-agent"]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("privatesub", "private, quarantined or banned subreddit (403)"),
        ("nosuchsub", "no such subreddit (404)"),
        ("bannedsub", "(404)"),
        ("brokensub", "the server failed (503)"),
    ],
)
def test_reddit_failures_have_reasons(reddit: Reddit, name: str, reason: str) -> None:
    with pytest.raises(FetchError, match=re.escape(reason)):
        reddit.hot(name, 5)


def test_reddit_empty_subreddit_has_no_items(reddit: Reddit) -> None:
    assert reddit.hot("emptysub", 5)[0] == []


def test_reddit_refuses_a_bad_name_without_asking(news: FakeNews, reddit: Reddit) -> None:
    with pytest.raises(FetchError):
        reddit.hot("../api", 5)
    assert news.requests == []


def test_reddit_429_holds_back_the_next_request(news: FakeNews, reddit: Reddit) -> None:
    with pytest.raises(RedditRateLimited) as limited:
        reddit.hot("limitedsub", 5)
    assert limited.value.retry_after == 30
    asked = news.count("/r/")
    with pytest.raises(RedditRateLimited):
        reddit.hot("python", 5)
    assert news.count("/r/") == asked


def test_reddit_waits_when_the_window_is_used_up(news: FakeNews, reddit: Reddit) -> None:
    news.ratelimit_limit = 1
    items, _ = reddit.hot("python", 5)  # a good answer, but the last one allowed
    assert items
    with pytest.raises(RedditRateLimited):
        reddit.hot("golang", 5)
    assert news.count("/r/") == 1


def test_reddit_oauth_uses_one_token_for_many_fetches(news: FakeNews) -> None:
    news.oauth_client = ("id", "secret")
    settings = Settings.from_env(
        {"REDDIT_URL": news.url, "REDDIT_CLIENT_ID": "id", "REDDIT_CLIENT_SECRET": "secret"}
    )
    fetcher = Downloader(timeout=5.0)
    try:
        reddit = Reddit(settings, fetcher)
        for name in ("python", "golang", "python"):
            items, _ = reddit.hot(name, 3)
            assert items is not None and len(items) == 3
    finally:
        fetcher.close()
    assert news.count("/api/v1/access_token") == 1
    listings = [headers for _, path, headers in news.requests if path.startswith("/r/")]
    assert len(listings) == 3
    assert all(headers["authorization"].startswith("bearer fake-") for headers in listings)


def test_reddit_oauth_renews_a_revoked_token(news: FakeNews) -> None:
    news.oauth_client = ("id", "secret")
    settings = Settings(reddit_url=news.url, reddit_client_id="id", reddit_client_secret="secret")
    fetcher = Downloader(timeout=5.0)
    try:
        reddit = Reddit(settings, fetcher)
        assert reddit.hot("python", 3)[0]
        news.revoke_tokens()
        assert reddit.hot("python", 3)[0]
        assert reddit.hot("golang", 3)[0]
    finally:
        fetcher.close()
    assert news.count("/api/v1/access_token") == 2


def test_reddit_oauth_with_wrong_credentials_fails_without_leaking(news: FakeNews) -> None:
    news.oauth_client = ("id", "secret")
    settings = Settings(
        reddit_url=news.url, reddit_client_id="id", reddit_client_secret="wrong-secret"
    )
    fetcher = Downloader(timeout=5.0)
    try:
        with pytest.raises(FetchError) as failure:
            Reddit(settings, fetcher).hot("python", 3)
    finally:
        fetcher.close()
    assert "wrong-secret" not in str(failure.value)
    assert news.count("/r/") == 0


# --- isolation: one deadline per download, DNS included, a per-host limit ---------------


class SilentDNS:
    """A resolver edge whose lookups never answer until released (a dead DNS server)."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.released = threading.Event()

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        self.released.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


@pytest.fixture
def silent_dns() -> Iterator[SilentDNS]:
    dns = SilentDNS()
    yield dns
    dns.released.set()


def wait_until(condition: Any, what: str, seconds: float = 10.0) -> None:
    """Poll for a condition that must come true; fail naming it if it never does."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.02)


def test_a_trickling_server_is_cut_off_at_the_deadline(news: FakeNews) -> None:
    """A byte every 0.2 s trips no per-read timeout; the watchdog ends it anyway."""
    fetcher = Downloader(Guard(allow_private=True), timeout=1.0)
    try:
        with pytest.raises(FetchError, match="timed out"):
            fetcher.get(news.url + "/trickle")
    finally:
        fetcher.close()
    assert news.count("/trickle") == 1
    # The connection itself was shut down, not merely abandoned by the caller, and at
    # the deadline: inside the headers, which take ~90 bytes, so ~18 s, to trickle out.
    wait_until(lambda: news.trickled, "the trickle connection closed")
    assert news.trickled[0] < news.trickle_head_bytes


def test_the_deadline_also_covers_the_body(news: FakeNews) -> None:
    news.trickle_seconds = 0.005  # the headers are through in ~0.5 s, the body never is
    fetcher = Downloader(Guard(allow_private=True), timeout=3.0)
    try:
        with pytest.raises(FetchError, match="timed out"):
            fetcher.get(news.url + "/trickle")
    finally:
        fetcher.close()
    wait_until(lambda: news.trickled, "the trickle connection closed")
    assert news.trickled[0] > news.trickle_head_bytes


def test_dns_that_never_answers_ends_at_the_deadline(silent_dns: SilentDNS) -> None:
    guard = Guard(resolver=Resolver(silent_dns))
    fetcher = Downloader(guard, timeout=0.5)
    try:
        with pytest.raises(InvalidSource, match="did not resolve in time"):
            fetcher.get("http://dead.example/feed.xml")
    finally:
        fetcher.close()
        guard.close()
    assert silent_dns.asked == ["dead.example"]


async def test_an_async_lookup_holds_no_thread_and_ends_at_its_timeout(
    silent_dns: SilentDNS,
) -> None:
    resolver = Resolver(silent_dns, threads=2)
    try:
        lookups = [resolver.resolve_async(f"dead-{n}.example", 80, 0.3) for n in range(20)]
        results = await asyncio.gather(*lookups, return_exceptions=True)
        assert all(
            isinstance(result, InvalidSource) and "in time" in str(result) for result in results
        )
        # Two threads were held by the dead server; the lookups queued behind them
        # were dropped at their deadline, not run later.
        assert len(silent_dns.asked) == 2
        # Literal addresses need no lookup, however busy the pool is.
        assert await resolver.resolve_async("127.0.0.1", 80, 0.3) == ["127.0.0.1"]
    finally:
        resolver.close()


def test_resolved_names_are_reused_and_kept_as_a_fallback() -> None:
    answers = {"feeds.example": ["93.184.216.34"]}
    asked: list[str] = []

    def lookup(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    resolver = Resolver(lookup)
    try:
        assert resolver.resolve("feeds.example", 80, 1) == ["93.184.216.34"]
        assert resolver.resolve("feeds.example", 80, 1) == ["93.184.216.34"]
        assert asked == ["feeds.example"]
        with pytest.raises(InvalidSource, match="does not resolve"):
            resolver.resolve("nowhere.example", 80, 1)
    finally:
        resolver.close()


async def test_the_pool_lets_one_host_have_only_its_share(
    news: FakeNews, far_news: FakeNews
) -> None:
    """Twenty trickling feeds on one host use three slots; another host is served."""
    pool = FetchPool(threads=8, per_host=3)
    fetcher = Downloader(Guard(allow_private=True), timeout=3.0)
    news.watch_peak("/trickle")

    async def fetch(url: str) -> str:
        expires = time.monotonic() + 3.0
        host = url.split("/")[2].split(":")[0]
        try:
            await pool.run(host, expires, lambda: fetcher.get(url, expires=expires))
        except FetchError as error:
            return str(error)
        return "ok"

    try:
        attack = asyncio.gather(*(fetch(f"{news.url}/trickle?n={n}") for n in range(20)))
        await asyncio.to_thread(
            wait_until, lambda: len(news.open_connections("/trickle")) == 3, "three trickles open"
        )
        first = news.open_connections("/trickle")
        assert await fetch(far_news.url + "/feeds/rss20.xml") == "ok"
        # ...while the first trickles are still being answered.
        assert first <= news.open_connections("/trickle")
        reasons = await attack
    finally:
        pool.close()
        fetcher.close()
    assert all("timed out" in reason for reason in reasons)
    assert news.peak_connections("/trickle") == 3


# --- hostile input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/nested", "nested more than 100 levels deep"),
        ("/wide", "more than 50,000 XML elements"),
    ],
)
def test_pathological_feeds_are_refused_within_a_budget(
    news: FakeNews, downloader: Downloader, path: str, reason: str
) -> None:
    download = downloader.get(news.url + path)
    assert 2_000_000 < len(download.body) < 5 * 1024 * 1024  # under the size cap
    tracemalloc.start()
    try:
        with pytest.raises(FetchError, match=re.escape(reason)):
            parse_feed(download.body, 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 1024 * 1024  # feedparser alone took 367 MB


def test_a_feed_inside_the_budget_is_read() -> None:
    body = data("rss20.xml")
    assert parse_feed(body, 5) and check_budget(body) is None


def test_a_malformed_document_is_held_to_the_budget_by_its_tags() -> None:
    body = b"<rss><channel><title>a & b</title>" + b"<x>" * 60_000
    with pytest.raises(FetchError, match="more than 50,000 XML elements"):
        parse_feed(body, 5)


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    "value, wait",
    [
        ("30", 30.0),
        ("1.5", 1.5),
        ("0", 1.0),
        (" 120 ", 120.0),
        ("99999999", 600.0),
        ("1e400", None),
        ("1e5", 600.0),
        ("-5", None),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        ("", None),
        ("30 seconds", None),
        (None, None),
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), 1.0),
        (email.utils.formatdate(NOW + 10 * 365 * 86400, usegmt=True), 600.0),
        ("Tue, 99 Foo 2024 25:61:00 GMT", None),
    ],
)
def test_retry_after_values_are_parsed_defensively_and_clamped(
    value: str | None, wait: float | None
) -> None:
    assert parse_wait(value, NOW) == wait


@pytest.mark.parametrize(
    "headers, wait",
    [
        ({"Retry-After": "99999999"}, 600.0),
        ({"Retry-After": "1e400", "X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "42"}, 42.0),
        ({"X-Ratelimit-Remaining": "0.0", "X-Ratelimit-Reset": "1e400"}, None),
        ({"X-Ratelimit-Remaining": "garbage", "X-Ratelimit-Reset": "42"}, None),
        ({"X-Ratelimit-Remaining": "nan", "X-Ratelimit-Reset": "42"}, None),
        ({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "-3"}, None),
        ({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "86400"}, 600.0),
    ],
)
def test_reddit_rate_headers_are_clamped(headers: dict[str, str], wait: float | None) -> None:
    assert retry_after(headers, NOW) == wait


@pytest.mark.parametrize(
    "retry, reset, blocked",
    [
        ("99999999", "30", 600),
        ("1e400", "1e400", 60),  # nothing usable: Reddit's usual minute
        ("-1", "garbage", 60),
    ],
)
def test_a_hostile_429_blocks_reddit_for_minutes_at_most(
    news: FakeNews, reddit: Reddit, retry: str, reset: str, blocked: int
) -> None:
    news.set_route(
        "/r/python/hot.json",
        status=429,
        body=b'{"error": 429}',
        headers={
            "Content-Type": "application/json",
            "Retry-After": retry,
            "X-Ratelimit-Remaining": "0",
            "X-Ratelimit-Reset": reset,
        },
    )
    with pytest.raises(RedditRateLimited) as limited:
        reddit.hot("python", 5)
    assert limited.value.retry_after == blocked
    assert f"try again in {blocked} s" in str(limited.value)
    news.remove_route("/r/python/hot.json")
    with pytest.raises(RedditRateLimited) as still:
        reddit.hot("python", 5)
    assert 0 < still.value.retry_after <= blocked
    assert news.count("/r/") == 1


HOSTILE_PERMALINKS = [
    "@evil.example/phish",
    "//evil.example/phish",
    "https://evil.example/x",
    "http://www.reddit.com/r/x/",
    "https://www.reddit.com:8443/r/x/",
    "https://user@www.reddit.com/r/x/",
    "\\\\evil.example/phish",
    "/r/x/\tcomments",
    "javascript:alert(1)",
]


def on_reddit(link: str) -> bool:
    """What a browser would open: https on www.reddit.com, no user name, no port."""
    parts = urlsplit(link)
    return (parts.scheme, parts.netloc) == ("https", "www.reddit.com")


@pytest.mark.parametrize("permalink", HOSTILE_PERMALINKS)
def test_no_permalink_can_move_a_link_off_reddit(permalink: str) -> None:
    link = post_link({"permalink": permalink, "id": "abc123", "url": "https://evil.example/"})
    assert on_reddit(link), link
    # Without a usable post id there is no link rather than a wrong one.
    assert post_link({"permalink": permalink, "id": "../x"}) in ("", link)


@pytest.mark.parametrize(
    "permalink, link",
    [
        (
            "/r/python/comments/abc123/title/",
            "https://www.reddit.com/r/python/comments/abc123/title/",
        ),
        ("@evil.example/phish", "https://www.reddit.com/@evil.example/phish"),
        ("//evil.example/phish", "https://www.reddit.com/comments/abc123/"),
        ("https://evil.example/x", "https://www.reddit.com/comments/abc123/"),
    ],
)
def test_permalinks_are_joined_to_reddit(permalink: str, link: str) -> None:
    assert post_link({"permalink": permalink, "id": "abc123"}) == link


def test_a_listing_with_hostile_permalinks_links_only_to_reddit(
    news: FakeNews, reddit: Reddit
) -> None:
    posts = [
        {
            "kind": "t3",
            "data": {
                "id": f"p{n}",
                "name": f"t3_p{n}",
                "title": f"Post {n}",
                "permalink": permalink,
                "url": "https://evil.example/",
                "created_utc": 1e400 if n == 0 else 1.7e9,
            },
        }
        for n, permalink in enumerate(["/r/python/comments/p0/ok/", *HOSTILE_PERMALINKS])
    ]
    listing = json.dumps({"kind": "Listing", "data": {"children": posts}}, allow_nan=True)
    news.set_route(
        "/r/hostilesub/hot.json", body=listing, headers={"Content-Type": "application/json"}
    )
    items, _ = reddit.hot("hostilesub", 20)
    assert items is not None and len(items) == len(posts)
    assert items[0].link == "https://www.reddit.com/r/python/comments/p0/ok/"
    assert items[0].published is None  # 1e400 is no time
    assert all(on_reddit(item.link) for item in items), [item.link for item in items]


def test_a_reused_connection_is_held_to_the_deadline_too(news: FakeNews) -> None:
    """The second download rides the first one's keep-alive connection."""
    fetcher = Downloader(Guard(allow_private=True), timeout=1.0)
    try:
        assert fetcher.get(news.url + "/feeds/rss20.xml").status == 200
        with pytest.raises(FetchError, match="timed out"):
            fetcher.get(news.url + "/trickle")
    finally:
        fetcher.close()
    wait_until(lambda: news.trickled, "the trickle connection closed")
    assert news.trickled[0] < news.trickle_head_bytes


async def test_the_async_check_refuses_like_the_blocking_one(silent_dns: SilentDNS) -> None:
    guard = Guard(resolver=Resolver(silent_dns))
    try:
        with pytest.raises(InvalidSource, match="private or local"):
            await guard.check_url_async("http://127.0.0.1/feed.xml")
        with pytest.raises(InvalidSource, match="only http"):
            await guard.check_url_async("file:///etc/passwd")
        with pytest.raises(InvalidSource, match="did not resolve in time"):
            await guard.check_url_async("http://dead.example/feed.xml", timeout=0.2)
        await guard.check_url_async("http://93.184.216.34/feed.xml")
    finally:
        guard.close()


def test_a_lookup_that_never_returns_does_not_keep_the_process_from_exiting() -> None:
    """getaddrinfo cannot be cancelled; a stopping replica must not wait for it."""
    script = (
        "import threading\n"
        "from newsbot.errors import InvalidSource\n"
        "from newsbot.sources.guard import Resolver\n"
        "resolver = Resolver(lambda host, port: threading.Event().wait() or [])\n"
        "try:\n"
        "    resolver.resolve('dead.example', 80, 0.1)\n"
        "except InvalidSource as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "the host name did not resolve in time"


def test_a_daemon_pool_is_bounded_and_drops_what_is_queued_at_shutdown() -> None:
    pool = DaemonPool(2, "test-pool")
    release = threading.Event()
    running = [pool.submit(release.wait) for _ in range(2)]
    queued = [pool.submit(lambda: "ran") for _ in range(3)]
    wait_until(lambda: all(future.running() for future in running), "both threads busy")
    assert not any(future.running() or future.done() for future in queued)
    pool.shutdown()
    assert all(future.cancelled() for future in queued)
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
    release.set()
    assert all(future.result(5) is True for future in running)
