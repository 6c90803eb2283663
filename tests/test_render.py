"""Tests of newsbot.render: replies are valid Telegram HTML, escaped, and split on lines.

Every message is checked with the fake Bot API's ``parse_html``, which refuses what
Telegram would refuse (unknown tags, stray ``&``, unclosed tags).
"""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fakes.telegram_api import ApiError, parse_html
from newsbot.merge import merge_news
from newsbot.models import Item, Source, SourceNews
from newsbot.render import (
    MAX_TITLE,
    MESSAGE_LIMIT,
    also_names,
    bullet_list,
    escape,
    refusals,
    render_merged,
    render_news,
    shorten,
    source_lines,
    split_message,
    to_plain,
)

TELEGRAM_LIMIT = 4096
_HREF = re.compile(r'<a href="([^"]*)">')

FEED = Source("feed", "https://example.org/feed.xml", "https://example.org/feed.xml")
PYTHON = Source("reddit", "r/python", "python")


def hrefs(message: str) -> list[str]:
    """The link targets of a message, as Telegram would read them."""
    return [html.unescape(target) for target in _HREF.findall(message)]


def item(title: str, link: str = "https://example.org/a", id: str = "1") -> Item:
    return Item(id=id, title=title, link=link, published=1732612500.0)


_LINE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=120
)


# --- escape, shorten -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, escaped",
    [
        ("plain", "plain"),
        ("", ""),
        ("<b>bold</b>", "&lt;b&gt;bold&lt;/b&gt;"),
        ("Fish & Chips", "Fish &amp; Chips"),
        ("&amp;", "&amp;amp;"),
        ('say "hi"', "say &quot;hi&quot;"),
        ("it's", "it&#x27;s"),
        ("<a href='javascript:x'>", "&lt;a href=&#x27;javascript:x&#x27;&gt;"),
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped
    assert parse_html(escaped) == text


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_escaped_text_is_shown_exactly_as_written(text: str) -> None:
    assert parse_html(escape(text)) == text


@pytest.mark.parametrize(
    "text, limit, short",
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("eleven char", 10, "eleven ch…"),
        ("word    and more", 9, "word…"),
    ],
)
def test_shorten(text: str, limit: int, short: str) -> None:
    assert shorten(text, limit) == short
    assert len(shorten(text, limit)) <= limit


# --- source_lines ----------------------------------------------------------------------


def test_source_lines_for_items() -> None:
    news = SourceNews(
        PYTHON,
        items=(
            item("Python 3.13.1 released", "https://www.reddit.com/r/Python/comments/1/"),
            item("Pandas & Polars", "https://example.org/?a=1&b=2", id="2"),
        ),
    )
    assert source_lines(news) == [
        "<b>python</b>",
        '• <a href="https://www.reddit.com/r/Python/comments/1/">Python 3.13.1 released</a>',
        '• <a href="https://example.org/?a=1&amp;b=2">Pandas &amp; Polars</a>',
    ]


def test_source_lines_for_an_error_is_one_line_naming_the_source() -> None:
    news = SourceNews(Source("reddit", "r/ab_c", "r/Ab_C"), error="no such subreddit (404)")
    assert source_lines(news) == ["⚠️ <b>r/Ab_C</b>: no such subreddit (404)"]


def test_source_lines_without_items_says_so() -> None:
    assert source_lines(SourceNews(FEED)) == [
        "<b>https://example.org/feed.xml</b>",
        "<i>no items</i>",
    ]


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(document.cookie)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "",
        "https://example.org/" + "a" * 2000,
    ],
)
def test_links_that_are_not_safe_http_are_not_linked(link: str) -> None:
    lines = source_lines(SourceNews(FEED, items=(item("Click me", link),)))
    assert lines[1] == "• Click me"
    assert "<a " not in "\n".join(lines)


def test_long_titles_are_shortened() -> None:
    lines = source_lines(SourceNews(FEED, items=(item("word " * 200),)))
    assert len(parse_html(lines[1])) <= len("• ") + MAX_TITLE
    assert parse_html(lines[1]).endswith("…")


# --- render_news -----------------------------------------------------------------------

HOSTILE = SourceNews(
    Source("feed", "https://evil.example/", 'https://evil.example/"><b>'),
    items=(
        item("<script>alert(1)</script>", "https://evil.example/x?a=1&b=2"),
        item('Tom & Jerry say "hi" & <b>bye</b>', 'https://evil.example/"onmouseover="x', id="2"),
        item("&amp; &lt; literally", "https://evil.example/<tag>", id="3"),
        item("Malicious", "javascript:alert(1)", id="4"),
        item('</a><a href="https://phish.example/">', "https://evil.example/ok", id="5"),
    ),
)


def test_render_news_is_valid_html_showing_hostile_text_as_written() -> None:
    messages = render_news(
        [HOSTILE, SourceNews(PYTHON, error='a <b> & "c"')], heading="News for <you> & me"
    )
    assert len(messages) == 1
    shown = parse_html(messages[0])
    assert shown.split("\n") == [
        "News for <you> & me",
        "",
        'https://evil.example/"><b>',
        "• <script>alert(1)</script>",
        '• Tom & Jerry say "hi" & <b>bye</b>',
        "• &amp; &lt; literally",
        "• Malicious",
        '• </a><a href="https://phish.example/">',
        "",
        '⚠️ python: a <b> & "c"',
    ]
    assert hrefs(messages[0]) == [
        "https://evil.example/x?a=1&b=2",
        'https://evil.example/"onmouseover="x',
        "https://evil.example/<tag>",
        "https://evil.example/ok",
    ]


def test_render_news_of_nothing_is_no_message() -> None:
    assert render_news([]) == []


def test_render_news_splits_long_news_into_valid_messages_in_order() -> None:
    blocks = [
        SourceNews(
            Source("reddit", f"r/sub{n}", f"sub{n}"),
            items=tuple(
                item(
                    f"Story {n}.{i} & more <" + "x" * 200,
                    f"https://example.org/{n}/{i}?q=1&r=2",
                    id=f"{n}.{i}",
                )
                for i in range(10)
            ),
        )
        for n in range(10)
    ]
    messages = render_news(blocks, heading="Digest")
    assert len(messages) > 1
    assert all(len(message) <= MESSAGE_LIMIT < TELEGRAM_LIMIT for message in messages)
    shown = [parse_html(message) for message in messages]
    titles = [line[2:] for text in shown for line in text.split("\n") if line.startswith("• ")]
    assert titles == [f"Story {n}.{i} & more <" + "x" * 200 for n in range(10) for i in range(10)]
    assert [t for m in messages for t in hrefs(m)] == [
        f"https://example.org/{n}/{i}?q=1&r=2" for n in range(10) for i in range(10)
    ]


# --- split_message ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "lines, limit, messages",
    [
        ([], 20, []),
        (["", "  ", ""], 20, []),
        (["one", "two", "three"], 20, ["one\ntwo\nthree"]),
        (["aaaaa", "bbbbb", "ccccc"], 11, ["aaaaa\nbbbbb", "ccccc"]),
        (["aaaaa", "", "bbbbb"], 6, ["aaaaa", "bbbbb"]),
        (["", "x" * 20], 20, ["x" * 20]),
        (["x" * 20, "", "y" * 20], 20, ["x" * 20, "y" * 20]),
    ],
)
def test_split_message(lines: list[str], limit: int, messages: list[str]) -> None:
    assert split_message(lines, limit) == messages


@pytest.mark.parametrize(
    "line",
    [
        "a" + "&" * 5000,
        '"' * 5000,
        "<b>" + "x" * 5000 + "</b>",
        '• <a href="https://example.org/">' + "t&amp;" * 1000 + "</a>",
    ],
    ids=["ampersands", "quotes", "bold", "link"],
)
def test_an_overlong_line_is_shortened_to_valid_html(line: str) -> None:
    (message,) = split_message([line])
    assert len(message) <= MESSAGE_LIMIT
    assert parse_html(message).endswith("…")


@given(st.lists(_LINE_TEXT, max_size=40), st.integers(min_value=40, max_value=300))
def test_split_message_keeps_every_line_whole_and_in_order(texts: list[str], limit: int) -> None:
    lines = [escape(text) for text in texts]
    messages = split_message(lines, limit)
    assert all(len(message) <= limit and message.strip() for message in messages)
    shown = [line for message in messages for line in parse_html(message).split("\n")]
    fitting = [line for line in lines if len(line) <= limit]
    expected = [text for text in texts if text.strip()]
    if len(fitting) == len(lines):
        # Nothing needed shortening: every line arrives whole, in order.
        assert [line for line in shown if line.strip()] == expected
    else:
        assert len([line for line in shown if line.strip()]) == len(expected)
        for got, text in zip([line for line in shown if line.strip()], expected):
            assert got == text or (got.endswith("…") and text.startswith(got[:-1]))


# --- to_plain and small helpers --------------------------------------------------------


@pytest.mark.parametrize(
    "markup, plain",
    [
        ("<b>python</b>", "python"),
        (
            '• <a href="https://example.org/?a=1&amp;b=2">Fish &amp; Chips</a>',
            "• Fish & Chips <https://example.org/?a=1&b=2>",
        ),
        ("⚠️ <b>r/ab</b>: not a subreddit &lt;name&gt;", "⚠️ r/ab: not a subreddit <name>"),
        ("<i>no items</i>", "no items"),
        (
            '<a href="https://a.example/">one</a> and <a href="https://b.example/">two</a>',
            "one <https://a.example/> and two <https://b.example/>",
        ),
    ],
)
def test_to_plain(markup: str, plain: str) -> None:
    assert to_plain(markup) == plain


def test_to_plain_shows_every_link_of_rendered_news() -> None:
    (message,) = render_news([HOSTILE])
    plain = to_plain(message)
    for target in hrefs(message):
        assert f"<{target}>" in plain
    assert "<script>alert(1)</script> <https://evil.example/x?a=1&b=2>" in plain


def test_bullet_list_and_refusals_escape_what_the_user_typed() -> None:
    assert bullet_list(["r/python", "<b>"]) == "• r/python\n• &lt;b&gt;"
    text = refusals([("a&b", "not a subreddit name"), ("<x>", "bad")])
    assert parse_html(text) == "⚠️ a&b: not a subreddit name\n⚠️ <x>: bad"


def test_parse_html_is_strict_enough_to_catch_missing_escapes() -> None:
    # The checks above rely on it: unescaped text must be refused.
    for bad in ("Fish & Chips", "<script>", "<b>open"):
        with pytest.raises(ApiError):
            parse_html(bad)


def test_merged_news_names_the_other_sources_of_an_item() -> None:
    mirror = Source("feed", "https://mirror.example/rss", "mirror.example")
    reddit = Source("reddit", "r/python", "r/python")
    merged = merge_news(
        [
            SourceNews(
                FEED,
                (
                    item("Story", "https://example.org/a"),
                    item("Other", id="2", link="https://x.org/b"),
                ),
            ),
            SourceNews(mirror, (item("Story", "https://www.example.org/a/"),)),
            SourceNews(
                reddit,
                (
                    Item(
                        "3",
                        "Story",
                        "https://www.reddit.com/r/python/comments/3/s/",
                        linked_url="https://example.org/a?fbclid=1",
                    ),
                    item("<New>", "https://y.org/c", id="4"),
                ),
            ),
            SourceNews(Source("feed", "https://down.example/", "down.example"), error="gone"),
        ]
    )
    [message] = render_merged(merged, heading="Digest")
    parse_html(message)
    assert to_plain(message).split("\n") == [
        "Digest",
        "",
        "https://example.org/feed.xml",
        "• Story <https://example.org/a> also: mirror.example, r/python",
        "• Other <https://x.org/b>",
        "",
        "mirror.example",
        "all shown above",
        "",
        "r/python",
        "• <New> <https://y.org/c>",
        "",
        "⚠️ down.example: gone",
    ]


def test_merged_news_without_duplicates_renders_as_plain_news() -> None:
    news = [SourceNews(FEED, (item("A & B"),)), SourceNews(PYTHON), SourceNews(PYTHON, error="x")]
    assert render_merged(merge_news(news), heading="h") == render_news(news, heading="h")


@given(st.lists(st.text(max_size=300), min_size=1, max_size=40))
def test_also_labels_are_escaped_and_shortened(labels: list[str]) -> None:
    blocks = [
        SourceNews(
            Source("feed", f"https://s{index}.example/", label),
            (item("Story", "https://example.org/a"),),
        )
        for index, label in enumerate(labels)
    ]
    for message in render_merged(merge_news(blocks)):
        assert len(message) <= MESSAGE_LIMIT
        parse_html(message)


@pytest.mark.parametrize(
    "count, names",
    [
        (1, "s0"),
        (5, "s0, s1, s2, s3, s4"),
        (6, "s0, s1, s2, s3, s4, 1 more"),
        (30, "s0, s1, s2, s3, s4, 25 more"),
    ],
)
def test_also_names_a_few_sources(count: int, names: str) -> None:
    assert also_names([f"s{index}" for index in range(count)]) == names


@pytest.mark.parametrize(
    "count, named, names",
    [
        (3, 2, "s0, s1, 1 more"),
        (3, 0, "3 other sources"),
        (1, 0, "1 other source"),
        (2, 2, "s0, s1"),
    ],
)
def test_also_names_fewer(count: int, named: int, names: str) -> None:
    assert also_names([f"s{index}" for index in range(count)], named) == names


def test_also_names_shortens_long_labels() -> None:
    assert also_names(["x" * 100, "r/python"]) == "x" * 39 + "…, r/python"


@given(st.lists(st.one_of(st.text(max_size=300), st.just('"' * 300)), min_size=2, max_size=40))
@example(['"' * 299 + chr(65 + index) for index in range(12)])
def test_an_item_with_many_other_sources_keeps_its_link(labels: list[str]) -> None:
    blocks = [
        SourceNews(
            Source("feed", f"https://s{index}.example/", label),
            (item('"' * 400, "https://example.org/" + "a" * 1900),),
        )
        for index, label in enumerate(labels)
    ]
    messages = render_merged(merge_news(blocks))
    assert [link for message in messages for link in hrefs(message)] == [
        "https://example.org/" + "a" * 1900
    ]
