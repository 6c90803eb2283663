"""JSON Feed 1.0 and 1.1 read like RSS and Atom, through the same fetch as any feed.

The fixtures in tests/data say (in their ``_fixture`` extension key: JSON has no comments)
which real feed shape they model; the fake news server serves them over loopback HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from fakes.news import FakeNews
from harness import bot_env, running_bot
from newsbot.errors import FetchError
from newsbot.models import Item
from newsbot.sources.download import Downloader
from newsbot.sources.guard import Guard
from newsbot.sources.jsonfeed import MAX_ELEMENTS
from newsbot.sources.rss import MAX_ITEMS, fetch_feed
from test_bot import say


@pytest.fixture
def downloader() -> Iterator[Downloader]:
    fetcher = Downloader(Guard(allow_private=True), timeout=5)
    yield fetcher
    fetcher.close()


def fetch(downloader: Downloader, url: str, limit: int = 50) -> list[Item]:
    _, items = fetch_feed(downloader, url, limit, None)
    assert items is not None
    return items


def test_a_json_feed_1_0_without_titles_shows_its_posts(
    news: FakeNews, downloader: Downloader
) -> None:
    items = fetch(downloader, news.url + "/feeds/microblog.feed.json")
    assert [(item.title, item.link) for item in items] == [
        ("Link: the open web is fine", "https://elsewhere.example/open-web"),  # external_url
        (
            "Trying out the new app today & loving it.",  # content_html
            "https://micro.example/2024/11/05/trying-out.html",
        ),
        ("Coffee first.", "https://micro.example/2024/11/04/coffee.html"),  # date_modified
    ]
    assert items[0].published == 1730822400.0  # 2024-11-05T16:00:00Z
    assert len({item.id for item in items}) == 3  # numeric ids are ids too


def test_a_json_feed_1_1_resolves_relative_urls_against_its_home_page(
    news: FakeNews, downloader: Downloader
) -> None:
    items = fetch(downloader, news.url + "/feeds/static_site_v11.json")
    assert [(item.title, item.link) for item in items] == [
        ("Newest post & news", "https://journal.example/blog/newest/"),
        ("Hello, JSON Feed 1.1", "https://journal.example/blog/hello/"),
        ("An undated page", "https://journal.example/blog/undated/"),
    ]
    assert items[-1].published is None


def test_a_json_feed_is_known_by_its_body_whatever_its_content_type(
    news: FakeNews, downloader: Downloader
) -> None:
    document = json.loads((news.data_dir / "static_site_v11.json").read_text())
    del document["home_page_url"]  # now relative to the feed's own URL
    news.set_route(
        "/blog/feed",
        body=json.dumps(document),
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    items = fetch(downloader, news.url + "/blog/feed")
    assert items[0].link == news.url + "/blog/newest/"


def test_a_json_feed_gets_a_304_like_any_feed(news: FakeNews, downloader: Downloader) -> None:
    url = news.url + "/feeds/microblog.feed.json"
    download, items = fetch_feed(downloader, url, 5, None)
    assert items and "application/feed+json" in news.requests[-1][2]["accept"]
    again, unchanged = fetch_feed(downloader, url, 5, download.validators)
    assert again.status == 304 and unchanged is None


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"version": "1", "items": []}', "not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', "without items"),
        (b"[1, 2, 3]", "not a JSON Feed"),
        (b'{"version": ', "cannot be read"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    ],
)
def test_json_that_is_not_a_usable_json_feed_has_a_reason(
    news: FakeNews, downloader: Downloader, body: bytes, reason: str
) -> None:
    news.set_route("/feed.json", body=body, headers={"Content-Type": "application/json"})
    with pytest.raises(FetchError, match=reason):
        fetch(downloader, news.url + "/feed.json")


def test_a_json_feed_is_held_to_the_item_budget(news: FakeNews, downloader: Downloader) -> None:
    def document(count: int) -> str:
        return json.dumps(
            {
                "version": "https://jsonfeed.org/version/1.1",
                "items": [
                    {
                        "id": str(n),
                        "title": f"Item {n}",
                        "date_published": f"2024-01-01T00:00:{n % 60:02d}Z",
                    }
                    for n in range(count)
                ],
            }
        )

    news.set_route(
        "/many.json",
        body=document(MAX_ELEMENTS + 1),
        headers={"Content-Type": "application/feed+json"},
    )
    with pytest.raises(FetchError, match="more than 50,000 items"):
        fetch(downloader, news.url + "/many.json")
    news.set_route(
        "/many.json", body=document(500), headers={"Content-Type": "application/feed+json"}
    )
    assert len(fetch(downloader, news.url + "/many.json", MAX_ITEMS)) == MAX_ITEMS


async def test_json_feed_items_are_shown_in_fetch(telegram, news, redis_url):
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, f"/source {news.url}/feeds/microblog.feed.json")
        (text,) = await say(telegram, "/fetch")
    assert "Link: the open web is fine" in text
    assert "Trying out the new app today & loving it." in text
    assert "⚠️" not in text
