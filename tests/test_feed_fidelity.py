"""Real-world feed shapes read right: relative links, xml:base, charsets named only in the
HTTP header, titles as the wild writes them, and downloads cut off mid-document.

Each fixture in tests/data says in its first comment which real feed shape it models. The
feeds are served over loopback HTTP by the fake news server and fetched as the bot does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.news import FakeNews
from harness import bot_env, running_bot
from newsbot.errors import FetchError
from newsbot.models import Item
from newsbot.sources.download import Downloader
from newsbot.sources.guard import Guard
from newsbot.sources.rss import combine_surrogates, fetch_feed
from newsbot.sources.text import plain_text
from test_bot import say


@pytest.fixture
def downloader() -> Iterator[Downloader]:
    fetcher = Downloader(Guard(allow_private=True), timeout=5)
    yield fetcher
    fetcher.close()


def fetch(downloader: Downloader, url: str) -> list[Item]:
    _, items = fetch_feed(downloader, url, 50, None)
    assert items is not None
    return items


def test_relative_links_are_resolved_against_the_feeds_url(
    news: FakeNews, downloader: Downloader
) -> None:
    items = fetch(downloader, news.url + "/feeds/relative_links.xml")
    assert [(item.title, item.link) for item in items] == [
        ("Moving to a static site", news.url + "/posts/2024/moving/"),
        ("Relative links considered harmful", news.url + "/feeds/posts/2024/relative.html"),
    ]


def test_relative_links_follow_the_url_after_redirects(
    news: FakeNews, downloader: Downloader
) -> None:
    target = news.url + "/feeds/relative_links.xml"
    items = fetch(downloader, f"{news.url}/redirect?to={target}&status=302")
    assert items[1].link == news.url + "/feeds/posts/2024/relative.html"


def test_a_relative_content_location_is_the_base(news: FakeNews, downloader: Downloader) -> None:
    body = (news.data_dir / "relative_links.xml").read_bytes()
    news.set_route(
        "/cdn/abc123",
        body=body,
        headers={"Content-Type": "application/rss+xml", "Content-Location": "/blog/feed.xml"},
    )
    items = fetch(downloader, news.url + "/cdn/abc123")
    assert items[1].link == news.url + "/blog/posts/2024/relative.html"


def test_xml_base_applies_to_its_own_entry_only(news: FakeNews, downloader: Downloader) -> None:
    items = fetch(downloader, news.url + "/feeds/xml_base.atom.xml")
    assert [(item.title, item.link) for item in items] == [
        ("Alice on gardening", "https://alice.example.net/blog/2024/gardening.html"),
        ("Planet news", news.url + "/feeds/news/2024-11.html"),
    ]


@pytest.mark.parametrize(
    "charset, titles",
    [
        ("gbk", ["国务院发布新政策", "今日天气晴朗"]),
        ("windows-1251", ["Привет, мир", "Погода на завтра"]),
        ("shift_jis", ["日本語のタイトル", "東京の天気"]),
    ],
)
def test_a_charset_named_only_in_the_header_is_used(
    news: FakeNews, downloader: Downloader, charset: str, titles: list[str]
) -> None:
    items = fetch(downloader, f"{news.url}/feeds/charset.{charset}.xml")
    assert [item.title for item in items] == titles


def test_titles_are_plain_text_as_readers_expect(news: FakeNews, downloader: Downloader) -> None:
    items = fetch(downloader, news.url + "/feeds/tricky_titles.xml")
    assert [item.title for item in items] == [
        'It\'s "done"',  # escaped twice, decoded whatever the type
        "Release 2.0 is out",  # escaped markup in CDATA: tags stripped
        "Launch day \U0001f680 and a stray gone",  # a surrogate pair joined, a lone one dropped
        "Option<T> in Rust",  # not an HTML element: kept
        "Server maintenance tonight from 22:00 to 23:00 UTC: the forum will be…",
    ]
    assert len(items[-1].title) <= 80


def test_a_download_cut_off_mid_document_gives_a_reason_not_junk(
    news: FakeNews, downloader: Downloader
) -> None:
    with pytest.raises(FetchError, match="cut off"):
        fetch(downloader, news.url + "/feeds/truncated.xml")
    # The same feed whole is read: the reason is about the cut, not the feed.
    whole = (
        news.data_dir / "truncated.xml"
    ).read_bytes() + b"tion>x</description></item></channel></rss>\n<!-- served by a cache -->\n"
    news.set_route("/whole.xml", body=whole)
    assert [item.title for item in fetch(downloader, news.url + "/whole.xml")] == [
        "A complete item",
        "x",
    ]


def test_surrogate_references_are_combined_or_dropped() -> None:
    assert (
        combine_surrogates(b"a&#55357;&#56832;b&#xd83d;&#xDE00;c&#56832;d&#65;")
        == b"a&#128512;b&#128512;cd&#65;"
    )
    assert plain_text("&lt;b&gt;Bold&lt;/b&gt; &amp;amp; co", is_html=True) == "Bold & co"


async def test_fetch_shows_header_charset_and_surrogate_titles(telegram, news, redis_url):
    feeds = [f"{news.url}/feeds/charset.windows-1251.xml", f"{news.url}/feeds/tricky_titles.xml"]
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, "/source " + " ".join(feeds))
        (text,) = await say(telegram, "/fetch")
    assert "Привет, мир" in text
    assert "Launch day \U0001f680 and a stray gone" in text
    assert "could not be read" not in text


def test_item_ids_stay_what_they_were_before_feeds_had_a_base(
    news: FakeNews, downloader: Downloader
) -> None:
    # A relative guid (isPermaLink by default) would be resolved against the base: the
    # seen history of every chat would no longer know the feed's items.
    import hashlib

    news.set_route(
        "/ids.xml",
        body=(
            '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            "<item><title>A</title><link>/a</link><guid>a-1</guid></item>"
            "<item><title>B</title><link>/b</link></item></channel></rss>"
        ),
    )
    items = fetch(downloader, news.url + "/ids.xml")
    assert [item.link for item in items] == [news.url + "/a", news.url + "/b"]
    assert [item.id for item in items] == [
        hashlib.sha256(raw.encode()).hexdigest()[:16] for raw in ("a-1", "/b")
    ]
