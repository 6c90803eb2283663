"""Tests of newsbot.canonical: one spelling for every URL of an article."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from newsbot.canonical import (
    TRACKING_PARAMETERS,
    TRACKING_PREFIXES,
    article_key,
    canonical_url,
    is_web_url,
)


@pytest.mark.parametrize(
    "url, canonical",
    [
        # Scheme and host case, www., default ports, trailing slash, fragment.
        ("HTTPS://WWW.Example.ORG/News/Story", "https://example.org/News/Story"),
        ("https://example.org:443/a", "https://example.org/a"),
        ("http://example.org:80/a", "http://example.org/a"),
        ("https://example.org:80/a", "https://example.org:80/a"),
        ("http://example.org:8080/a", "http://example.org:8080/a"),
        ("http://example.org:/a", "http://example.org/a"),
        ("https://example.org/a/", "https://example.org/a"),
        ("https://example.org/a///", "https://example.org/a"),
        ("https://example.org", "https://example.org/"),
        ("https://example.org/", "https://example.org/"),
        ("https://example.org//", "https://example.org/"),
        ("https://example.org/a#comments", "https://example.org/a"),
        ("https://example.org./a", "https://example.org/a"),
        ("https://www.example.org/a/?utm_source=rss#top", "https://example.org/a"),
        # The path keeps its case: servers may tell /A from /a.
        ("https://example.org/A/b", "https://example.org/A/b"),
        # Only a leading www. label is dropped.
        ("https://www2.example.org/a", "https://www2.example.org/a"),
        ("https://news.www.example.org/a", "https://news.www.example.org/a"),
        # Tracking parameters go, in any case; others stay, in their order, with their values.
        (
            "https://example.org/a?utm_source=x&utm_medium=y&utm_campaign=z",
            "https://example.org/a",
        ),
        ("https://example.org/a?id=7&utm_source=x&page=2", "https://example.org/a?id=7&page=2"),
        ("https://example.org/a?page=2&id=7", "https://example.org/a?page=2&id=7"),
        ("https://example.org/a?UTM_Source=x&FBCLID=1&GClid=2&id=3", "https://example.org/a?id=3"),
        ("https://example.org/a?fbclid=IwAR0abc", "https://example.org/a"),
        ("https://example.org/a?ref=hn&ref_src=twsrc%5Etfw", "https://example.org/a"),
        (
            "https://example.org/a?mc_cid=1&mc_eid=2&_hsenc=3&_hsmi=4&mkt_tok=5",
            "https://example.org/a",
        ),
        ("https://example.org/a?q=rust&ref=1", "https://example.org/a?q=rust"),
        (
            "https://example.org/a?reference=1&prefix=2",
            "https://example.org/a?reference=1&prefix=2",
        ),
        ("https://example.org/a?id=1&&id=2&", "https://example.org/a?id=1&id=2"),
        ("https://example.org/a?", "https://example.org/a"),
        ("https://example.org/a?flag", "https://example.org/a?flag"),
        ("https://example.org/a?q=a+b&x=", "https://example.org/a?q=a+b&x="),
        # Percent-encoding: unreserved characters decoded, other escapes uppercased.
        ("https://example.org/%7euser/%61", "https://example.org/~user/a"),
        ("https://example.org/a%2fb?q=%e2%82%ac", "https://example.org/a%2Fb?q=%E2%82%AC"),
        ("https://example.org/a%2Fb", "https://example.org/a%2Fb"),
        ("https://example.org/100%", "https://example.org/100%25"),
        ("https://example.org/caf\u00e9", "https://example.org/caf%C3%A9"),
        ("https://example.org/a b", "https://example.org/a%20b"),
        # IDN hosts: Unicode and punycode spellings meet in punycode.
        ("https://M\u00fcnchen.example/a", "https://xn--mnchen-3ya.example/a"),
        ("https://xn--mnchen-3ya.example/a", "https://xn--mnchen-3ya.example/a"),
        ("https://www.b\u00fccher.de/", "https://xn--bcher-kva.de/"),
        # IP literals.
        ("http://127.0.0.1:80/a", "http://127.0.0.1/a"),
        ("http://[2001:DB8:0:0::1]:8080/a/", "http://[2001:db8::1]:8080/a"),
        # Surrounding whitespace.
        ("  https://example.org/a \n", "https://example.org/a"),
    ],
)
def test_canonical_url(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "   ",
        "not a url",
        "example.org/a",
        "//example.org/a",
        "ftp://example.org/a/",
        "mailto:someone@example.org",
        "javascript:alert(1)",
        "https://",
        "https:///a",
        "http://[::1",
        "http://example.org:99999/",
        "http://example.org:port/",
        "http://exa mple.org/",
        "http://exa<mple.org/",
        "http://\ud800/",
        "\x00",
        "http://\u00e4" + "a" * 70 + ".org/",  # a label too long for IDNA
    ],
)
def test_junk_comes_back_stripped(junk: str) -> None:
    assert canonical_url(f" {junk} ") == junk.strip()


def test_every_tracking_parameter_is_removed() -> None:
    names = sorted(TRACKING_PARAMETERS) + [prefix + "anything" for prefix in TRACKING_PREFIXES]
    query = "&".join(f"{name}=1" for name in names)
    assert canonical_url(f"https://example.org/a?keep=1&{query}&also=2") == (
        "https://example.org/a?keep=1&also=2"
    )


@pytest.mark.parametrize(
    "a, b",
    [
        ("https://example.org/2026/story", "https://www.example.org/2026/story/"),
        ("http://example.org/story?utm_source=feed", "HTTP://EXAMPLE.org:80/story#x"),
        ("https://example.org/story", "https://example.org:443/story?fbclid=x&gclid=y"),
    ],
)
def test_spellings_of_one_article_meet(a: str, b: str) -> None:
    assert canonical_url(a) == canonical_url(b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("https://example.org/story", "https://example.org/story-2"),
        ("https://example.org/story", "https://example.org/Story"),
        ("https://example.org/story?id=1", "https://example.org/story?id=2"),
        ("https://example.org/story?page=1&id=2", "https://example.org/story?id=2&page=1"),
        ("https://example.org/story", "https://example.com/story"),
        ("https://example.org/story", "https://news.example.org/story"),
        ("http://example.org:8080/story", "http://example.org/story"),
        ("https://example.org/a%2Fb", "https://example.org/a/b"),
    ],
)
def test_different_articles_stay_apart(a: str, b: str) -> None:
    assert canonical_url(a) != canonical_url(b)


@pytest.mark.parametrize(
    "link, linked, key",
    [
        # A Reddit link post counts as the article it links to.
        (
            "https://www.reddit.com/r/python/comments/abc/story/",
            "https://www.example.org/story/?fbclid=x",
            "https://example.org/story",
        ),
        # A self post links to itself, a crosspost to Reddit: the post's own link counts.
        (
            "https://www.reddit.com/r/python/comments/abc/story/",
            "https://www.reddit.com/r/python/comments/abc/story/",
            "https://reddit.com/r/python/comments/abc/story",
        ),
        (
            "https://www.reddit.com/r/python/comments/abc/story/",
            "https://old.reddit.com/r/other/comments/def/x/",
            "https://reddit.com/r/python/comments/abc/story",
        ),
        (
            "https://www.reddit.com/r/pics/comments/abc/x/",
            "https://i.redd.it/abc.jpg",
            "https://reddit.com/r/pics/comments/abc/x",
        ),
        # Relative, empty, other schemes or junk: the post's own link counts.
        (
            "https://www.reddit.com/r/a/comments/abc/x/",
            "/r/a/comments/abc/x/",
            "https://reddit.com/r/a/comments/abc/x",
        ),
        (
            "https://www.reddit.com/r/a/comments/abc/x/",
            "",
            "https://reddit.com/r/a/comments/abc/x",
        ),
        (
            "https://www.reddit.com/r/a/comments/abc/x/",
            "ftp://example.org/f",
            "https://reddit.com/r/a/comments/abc/x",
        ),
        # A site whose name merely ends in reddit.com is an outside site.
        (
            "https://www.reddit.com/r/a/comments/abc/x/",
            "https://notreddit.com/a",
            "https://notreddit.com/a",
        ),
        # A feed item has no linked URL.
        ("https://www.example.org/story/?utm_medium=rss", None, "https://example.org/story"),
    ],
)
def test_article_key(link: str, linked: str | None, key: str) -> None:
    assert article_key(link, linked) == key


@pytest.mark.parametrize(
    "url, web",
    [
        ("https://example.org/", True),
        ("http://x/", True),
        ("https:///a", False),
        ("ftp://x/", False),
        ("junk", False),
        ("", False),
    ],
)
def test_is_web_url(url: str, web: bool) -> None:
    assert is_web_url(url) is web


# URLs built from parts that are each odd in some way, and arbitrary text besides.
_LABEL = st.from_regex(r"[A-Za-z0-9\u00e0-\u00ff-]{1,12}", fullmatch=True)
_HOSTS = st.one_of(
    st.builds(
        lambda user, www, labels: user + ("www." if www else "") + ".".join(labels),
        st.sampled_from(["", "user@", "u:P%41ss@", "@"]),
        st.booleans(),
        st.lists(_LABEL, min_size=1, max_size=3),
    ),
    st.sampled_from(["[::1]", "[2001:DB8::0:1]", "127.0.0.1", "[v1.x]"]),
)
_PIECE = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="?#"), max_size=12)
_FIELDS = st.lists(
    st.one_of(
        st.sampled_from([*sorted(TRACKING_PARAMETERS), "utm_source", "UTM_Medium", "id", "q"]),
        _PIECE,
    ).flatmap(lambda name: st.builds(lambda v: f"{name}={v}", _PIECE)),
    max_size=4,
)
_URLS = st.builds(
    lambda scheme, host, port, path, fields, fragment: (
        f"{scheme}://{host}{port}/{path}" + ("?" + "&".join(fields) if fields else "") + fragment
    ),
    st.sampled_from(["http", "https", "HTTP", "Https"]),
    _HOSTS,
    st.sampled_from(["", ":80", ":443", ":8080", ":"]),
    _PIECE,
    _FIELDS,
    st.sampled_from(["", "#", "#top"]),
)


@given(st.one_of(_URLS, st.text()))
@example("https://example.org/%%61b")
@example("https://example.org/%")
def test_canonical_url_is_idempotent(url: str) -> None:
    once = canonical_url(url)
    assert canonical_url(once) == once


@given(_URLS)
def test_canonical_url_drops_tracking_and_fragment(url: str) -> None:
    canonical = canonical_url(url)
    parts = urllib.parse.urlsplit(canonical)
    names = [field.partition("=")[0].lower() for field in parts.query.split("&") if field]
    assert not any(
        name in TRACKING_PARAMETERS or name.startswith(TRACKING_PREFIXES) for name in names
    )
    assert "#" not in canonical
    host = parts.netloc.rpartition("@")[2]
    assert host == host.lower() and not host.startswith("www.")


@given(st.lists(st.from_regex(r"[a-z]{1,6}=[a-z0-9]{0,4}", fullmatch=True), max_size=5))
def test_unrelated_query_parameters_are_kept_in_order(fields: list[str]) -> None:
    fields = [field for field in fields if field.partition("=")[0] not in TRACKING_PARAMETERS]
    tracked = ["utm_source=rss", *fields, "fbclid=abc"]
    query = "&".join(fields)
    assert canonical_url("https://example.org/a?" + "&".join(tracked)) == (
        "https://example.org/a" + (f"?{query}" if query else "")
    )


@given(
    st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True),
)
def test_different_paths_never_meet(a: str, b: str) -> None:
    same = canonical_url(f"https://example.org/{a}") == canonical_url(f"https://example.org/{b}")
    assert same is (a == b)
