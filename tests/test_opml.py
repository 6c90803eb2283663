"""Tests of newsbot.opml: sources written as OPML 2.0 and read back, and hostile files."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes.news import BOMB, XXE
from newsbot import opml
from newsbot.errors import InvalidSource
from newsbot.models import Source
from newsbot.opml import Feed, OpmlError

DATA = Path(__file__).parent / "data"


def test_export_is_opml_2_with_one_outline_per_source_in_order():
    sources = [
        Source("reddit", "r/python", "python"),
        Source(
            "feed", "https://example.org/feed.xml?a=1&b=2", "https://example.org/feed.xml?a=1&b=2"
        ),
    ]
    root = ET.fromstring(opml.write_opml(sources, created=0))
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == "Newsbot sources"
    assert root.findtext("head/dateCreated") == "Thu, 01 Jan 1970 00:00:00 GMT"
    outlines = root.findall("body/outline")
    assert [(o.get("type"), o.get("text"), o.get("xmlUrl")) for o in outlines] == [
        ("rss", "python", "https://www.reddit.com/r/python/.rss"),
        ("rss", "https://example.org/feed.xml?a=1&b=2", "https://example.org/feed.xml?a=1&b=2"),
    ]


_NAME = st.from_regex(r"[A-Za-z0-9_]{3,21}", fullmatch=True)
_PATH = st.lists(st.from_regex(r"[A-Za-z0-9._~%-]{1,12}", fullmatch=True), max_size=3)
_SOURCE = st.builds(lambda name: Source("reddit", "r/" + name.lower(), name), _NAME) | st.builds(
    lambda host, path, query: Source(
        "feed",
        f"https://{host}.example/{'/'.join(path)}{'?' + query if query else ''}",
        f"https://{host}.example/{'/'.join(path)}{'?' + query if query else ''}",
    ),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    _PATH,
    st.from_regex(r"([a-z]{1,5}=[A-Za-z0-9&<>\"']{0,8})?", fullmatch=True),
)


@settings(deadline=None)  # a shared, loaded machine: slowness is no failure
@given(st.lists(_SOURCE, max_size=10, unique_by=lambda s: s.key))
def test_what_export_writes_import_reads_back_as_the_same_sources(sources):
    feeds = opml.read_opml(opml.write_opml(sources))
    assert [opml.source_of(feed.url).key for feed in feeds] == [s.key for s in sources]
    assert [opml.source_of(feed.url).kind for feed in feeds] == [s.kind for s in sources]


@settings(deadline=None)  # a shared, loaded machine: slowness is no failure
@given(st.text(max_size=40))
def test_any_label_survives_the_round_trip_minus_what_xml_cannot_hold(label):
    source = Source("feed", "https://example.org/feed", label)
    (feed,) = opml.read_opml(opml.write_opml([source]))
    assert feed.title == " ".join(opml._NOT_XML.sub("", label).split())


def test_a_feedly_style_export_with_folders_is_read_whole():
    feeds = opml.read_opml((DATA / "feedly_export.opml").read_bytes())
    assert [feed.url for feed in feeds] == [
        "https://news.ycombinator.com/rss",
        "https://lwn.net/headlines/rss",
        "https://blog.python.org/feeds/posts/default",
        "https://www.reddit.com/r/Python/.rss",
        "https://feeds.bbci.co.uk/news/world/rss.xml",  # Hacker News again is left out
        "https://old.reddit.com/r/golang.rss",
        "https://xkcd.com/atom.xml",
    ]
    assert feeds[0].title == "Hacker News"
    assert [opml.source_of(f.url).key for f in feeds][3:6] == [
        "r/python",
        "https://feeds.bbci.co.uk/news/world/rss.xml",
        "r/golang",
    ]


@pytest.mark.parametrize(
    "url, name",
    [
        ("https://www.reddit.com/r/Python/.rss", "Python"),
        ("https://reddit.com/r/golang", "golang"),
        ("http://old.reddit.com/r/rust/", "rust"),
        ("https://old.reddit.com/r/golang.rss", "golang"),
        ("https://www.reddit.com/r/python/comments/abc/x/", None),  # a post, not a subreddit
        ("https://www.reddit.com/r/ab/.rss", None),  # too short a name
        ("https://reddit.com.evil.example/r/python/.rss", None),
        ("https://example.org/r/python/.rss", None),
        ("ftp://reddit.com/r/python", None),
    ],
)
def test_reddit_urls_become_subreddits(url, name):
    assert opml.reddit_name(url) == name


@pytest.mark.parametrize(
    "url, reason",
    [
        ("feed.xml", "not a feed URL"),
        ("javascript:alert(1)", "not a feed URL"),
        ("file:///etc/passwd", "only http:// and https://"),
        ("https://user:pw@example.org/feed", "user name or password"),
    ],
)
def test_urls_that_are_not_feeds_are_invalid(url, reason):
    with pytest.raises(InvalidSource, match=None) as raised:
        opml.source_of(url)
    assert reason in str(raised.value)


DTD_ONLY = b"""<?xml version="1.0"?>
<!DOCTYPE opml SYSTEM "http://127.0.0.1:9/opml.dtd">
<opml version="2.0"><body><outline xmlUrl="https://example.org/feed"/></body></opml>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<opml version="2.0"><body/></opml>"""


@pytest.mark.parametrize(
    "data",
    [
        BOMB,
        XXE,
        DTD_ONLY,
        PARAMETER_ENTITY,
        BOMB.replace(b"<rss", b"<opml").replace(b"</rss>", b"</opml>"),
    ],
    ids=["billion-laughs", "xxe", "external-dtd", "parameter-entity", "opml-bomb"],
)
def test_documents_with_a_dtd_or_entities_are_refused(data):
    with pytest.raises(OpmlError, match=r"DTD|entities"):
        opml.read_opml(data)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"<rss version='2.0'><channel/></rss>", "not OPML"),
        (b"<opml><body><outline xmlUrl='x'", "not well-formed"),
        (b"\xff\xfe garbage", "not well-formed"),
        (b"<opml>" + b" " * opml.MAX_OPML_BYTES + b"</opml>", "bigger than 1024 KB"),
    ],
)
def test_what_is_not_opml_is_refused_with_the_reason(data, reason):
    with pytest.raises(OpmlError, match=None) as raised:
        opml.read_opml(data)
    assert reason in str(raised.value)


def test_outlines_without_a_url_and_odd_spellings():
    data = (
        b"<opml version='2.0'><body><outline text='folder'/>"
        b"<outline text='A' xmlurl=' https://a.example/feed '/>"
        b"<x:outline xmlns:x='urn:x' text='B' xmlUrl='https://b.example/feed'/>"
        b"</body></opml>"
    )
    assert opml.read_opml(data) == [
        Feed("https://a.example/feed", "A"),
        Feed("https://b.example/feed", "B"),
    ]
