"""Tests of newsbot.merge: each article once, in the first source's block."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from newsbot.merge import Entry, MergedNews, drop_seen, item_key, merge_news
from newsbot.models import Item, Source, SourceNews
from newsbot.store import CachedNews

FEED = Source("feed", "https://example.org/feed.xml", "example.org")
MIRROR = Source("feed", "https://mirror.example/rss", "mirror.example")
PYTHON = Source("reddit", "r/python", "r/python")


def block(source: Source, *items: Item, error: str | None = None) -> SourceNews:
    return SourceNews(source, items, error)


def post(id: str, title: str, linked: str) -> Item:
    """A Reddit link post, as the listing gives it: a permalink and the URL it links to."""
    return Item(id, title, f"https://www.reddit.com/r/python/comments/{id}/x/", linked_url=linked)


def shown(merged: list[MergedNews]) -> list[list[tuple[str, tuple[str, ...]]]]:
    """What a reader sees of each block: the titles, each with its also: labels."""
    return [[(entry.item.title, entry.also) for entry in news.entries] for news in merged]


def test_one_article_from_three_sources_is_shown_once_in_the_first_block() -> None:
    merged = merge_news(
        [
            block(
                FEED,
                Item("f1", "Python 3.15 released", "https://example.org/news/315"),
                Item("f2", "Other news", "https://example.org/news/other"),
            ),
            block(MIRROR, Item("m1", "Python 3.15 is out", "https://www.example.org/news/315/")),
            block(
                PYTHON,
                post("p1", "3.15!", "https://example.org/news/315?fbclid=IwAR0x"),
                post("p2", "Unrelated", "https://elsewhere.example/x"),
            ),
        ]
    )
    assert shown(merged) == [
        [("Python 3.15 released", ("mirror.example", "r/python")), ("Other news", ())],
        [],
        [("Unrelated", ())],
    ]
    assert merged[0].entries[0].key == "https://example.org/news/315"
    assert [news.shown_above for news in merged] == [0, 1, 1]
    assert [news.source for news in merged] == [FEED, MIRROR, PYTHON]


def test_the_first_source_keeps_the_article_whichever_kind_it_is() -> None:
    merged = merge_news(
        [
            block(PYTHON, post("p1", "Link post", "https://example.org/a")),
            block(FEED, Item("f1", "Feed item", "https://example.org/a/")),
        ]
    )
    assert shown(merged) == [[("Link post", ("example.org",))], []]


def test_different_articles_with_the_same_title_stay_apart() -> None:
    merged = merge_news(
        [
            block(FEED, Item("f1", "Weekly roundup", "https://example.org/roundup/1")),
            block(MIRROR, Item("m1", "Weekly roundup", "https://mirror.example/roundup/1")),
            block(PYTHON, post("p1", "Weekly roundup", "https://example.org/roundup/2")),
        ]
    )
    assert shown(merged) == [[("Weekly roundup", ())]] * 3


def test_an_article_twice_in_one_source_is_shown_once_without_naming_itself() -> None:
    merged = merge_news(
        [
            block(
                FEED,
                Item("f1", "Story", "https://example.org/a"),
                Item("f2", "Story (updated)", "https://example.org/a?utm_source=rss"),
            ),
            block(
                MIRROR,
                Item("m1", "Story", "https://example.org/a"),
                Item("m2", "Story", "https://example.org/a#more"),
            ),
        ]
    )
    assert shown(merged) == [[("Story", ("mirror.example",))], []]
    assert [news.shown_above for news in merged] == [0, 2]


def test_items_without_a_web_address_never_merge() -> None:
    merged = merge_news(
        [
            block(FEED, Item("f1", "No link", ""), Item("f2", "Odd link", "tag:example.org,1")),
            block(MIRROR, Item("m1", "No link", ""), Item("m2", "Odd link", "tag:example.org,1")),
        ]
    )
    assert shown(merged) == [[("No link", ()), ("Odd link", ())]] * 2
    keys = [entry.key for news in merged for entry in news.entries]
    assert len(set(keys)) == 4


def test_blocks_with_errors_or_no_items_pass_through() -> None:
    merged = merge_news(
        [
            block(FEED, error="the feed answered 404"),
            block(MIRROR),
            block(PYTHON, post("p1", "Story", "https://example.org/a")),
        ]
    )
    assert merged == [
        MergedNews(FEED, (), "the feed answered 404"),
        MergedNews(MIRROR),
        MergedNews(PYTHON, (Entry(merged[2].entries[0].item, "https://example.org/a"),)),
    ]
    assert merged[0].news == block(FEED, error="the feed answered 404")


def test_merged_news_turns_back_into_plain_news() -> None:
    item = Item("f1", "Story", "https://example.org/a")
    copy = Item("m1", "S", "https://example.org/a")
    merged = merge_news([block(FEED, item), block(MIRROR, copy)])
    assert [news.news for news in merged] == [block(FEED, item), block(MIRROR)]


def test_item_key() -> None:
    assert item_key(PYTHON, post("p1", "t", "https://www.example.org/a/?ref=x")) == (
        "https://example.org/a"
    )
    assert item_key(FEED, Item("f1", "t", "")) == "https://example.org/feed.xml f1"


def test_linked_url_round_trips_through_json_and_old_items_still_load() -> None:
    linked = post("p1", "Story", "https://example.org/a")
    assert Item.from_json(linked.to_json()) == linked
    plain = Item("1", "Story", "https://example.org/a", 1.5)
    assert plain.to_json() == {
        "id": "1",
        "title": "Story",
        "link": "https://example.org/a",
        "published": 1.5,
    }
    assert (
        Item.from_json(
            {"id": "1", "title": "Story", "link": "https://example.org/a", "published": 1.5}
        )
        == plain
    )
    assert Item.from_json({**plain.to_json(), "from_a_newer_version": 1}) == plain


def test_an_article_seen_from_one_source_is_not_shown_from_another() -> None:
    # Yesterday's digest sent the feed's item; today a Reddit post links to it, with fbclid.
    yesterday = merge_news([block(FEED, Item("f1", "Story", "https://example.org/a/"))])
    seen = {entry.key for news in yesterday for entry in news.entries}
    today = merge_news(
        [
            block(
                PYTHON,
                post("p1", "Story!", "https://www.example.org/a?fbclid=x"),
                post("p2", "New story", "https://example.org/b"),
            ),
            block(FEED, Item("f1", "Story", "https://example.org/a/")),
        ]
    )
    assert shown(drop_seen(today, seen)) == [[("New story", ())], []]


_LINKS = st.sampled_from(
    [
        "https://example.org/a",
        "https://www.example.org/a/",
        "https://example.org/a?utm_source=x",
        "https://example.org/b",
        "https://example.org/b#c",
        "http://example.org/a",
        "https://mirror.example/a",
        "",
        "not a link",
    ]
)
_ITEMS = st.lists(
    st.tuples(_LINKS, st.one_of(st.none(), _LINKS), st.sampled_from("ABC")), max_size=6
)


@given(st.lists(_ITEMS, min_size=1, max_size=4))
def test_every_article_is_shown_exactly_once_where_it_first_came(
    raw: list[list[tuple[str, str | None, str]]],
) -> None:
    sources = [
        Source("feed", f"https://s{index}.example/", f"s{index}") for index in range(len(raw))
    ]
    blocks = [
        SourceNews(
            source,
            tuple(
                Item(f"{index}", title, link, linked_url=linked)
                for index, (link, linked, title) in enumerate(items)
            ),
        )
        for source, items in zip(sources, raw, strict=False)
    ]
    merged = merge_news(blocks)
    keys_in = [[item_key(block.source, item) for item in block.items] for block in blocks]
    shown_keys = [entry.key for news in merged for entry in news.entries]
    # Each article once, and in the first block that had it, in its order there.
    assert len(shown_keys) == len(set(shown_keys)) == len({k for ks in keys_in for k in ks})
    for index, news in enumerate(merged):
        first_here = [
            key
            for key in dict.fromkeys(keys_in[index])
            if not any(key in earlier for earlier in keys_in[:index])
        ]
        assert [entry.key for entry in news.entries] == first_here
        assert news.shown_above == sum(
            1 for key in keys_in[index] if any(key in earlier for earlier in keys_in[:index])
        )
        # also: exactly the later blocks that had the article, in order, never itself.
        for entry in news.entries:
            assert list(entry.also) == [
                sources[later].label
                for later in range(index + 1, len(blocks))
                if entry.key in keys_in[later]
            ]


def test_the_fetch_cache_keeps_a_link_posts_linked_url() -> None:
    # Items reach the merge through the shared fetch cache; the linked URL must survive it.
    cached = CachedNews(
        1.0,
        (
            post("p1", "Story", "https://example.org/a"),
            Item("f1", "Plain", "https://example.org/b"),
        ),
    )
    assert CachedNews.from_mapping(cached.to_mapping()) == cached
