"""Tests of newsbot.filters: the /filter rule syntax and which items the rules let through."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsbot import filters
from newsbot.filters import FilterError, Rule
from newsbot.models import Item, Source, SourceNews

# --- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, rules",
    [
        ("rust", [Rule("word", "rust")]),
        ("-rust", [Rule("word", "rust", drop=True)]),
        ('"game dev"', [Rule("phrase", "game dev")]),
        ('-"game dev"', [Rule("phrase", "game dev", drop=True)]),
        ("/^Show HN/", [Rule("regex", "^Show HN")]),
        ("-/\\bhiring\\b/", [Rule("regex", "\\bhiring\\b", drop=True)]),
        ("/a/b/", [Rule("regex", "a/b")]),  # a / inside a regex
        ("/a//", [Rule("regex", "a/")]),
        ("/a b/ c", [Rule("regex", "a b"), Rule("word", "c")]),  # a regex may hold spaces
        (
            '  rust   -"go lang"\t/x+/  ',
            [Rule("word", "rust"), Rule("phrase", "go lang", True), Rule("regex", "x+")],
        ),
        ("a-b c/d", [Rule("word", "a-b"), Rule("word", "c/d")]),
        ("", []),
    ],
)
def test_parse_reads_every_rule_kind(text, rules):
    assert filters.parse_rules(text) == rules


@pytest.mark.parametrize(
    "text, reason",
    [
        ('"open', 'needs a closing "'),
        ('"a"b', "space after the closing"),
        ('""', "phrase is empty"),
        ('" "', "phrase is empty"),
        ("/open", "needs a closing /"),
        ("//", "regex is empty"),
        ("-", "lone -"),
        ("--x", "cannot start with - or /"),
        ('ab"c', "no spaces or quotes"),
        ("/(?=x)/", "not a valid regex (invalid perl operator: (?="),  # RE2 has no lookahead
        ("/(a/", "not a valid regex (missing )"),
        ("/(a)\\1/", "not a valid regex"),  # nor backreferences
        ("x" * 201, "at most 200 characters"),
    ],
)
def test_parse_refuses_bad_rules_with_the_reason(text, reason):
    with pytest.raises(FilterError, match=None) as raised:
        filters.parse_rules(text)
    assert reason in str(raised.value)


def test_a_rule_of_exactly_200_characters_is_accepted():
    assert filters.parse_rules("x" * 200) == [Rule("word", "x" * 200)]


_WORD = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters='"'), min_size=1, max_size=30
).filter(lambda w: not any(c.isspace() for c in w) and w[0] not in "-/")
_PHRASE = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters='"'), min_size=1, max_size=30
).filter(lambda p: p.strip() != "")
_REGEX = st.sampled_from(
    [
        "^Show HN",
        "a/b",
        "x+",
        "(a+)+$",
        "[0-9]{4}",
        "café|naïve",
        "\\bAI\\b",
        "a b",
        "end/",
        "(?i)MiXeD",
        "\\d+/\\d+",
    ]
)


def _valid(rule: Rule) -> bool:
    try:
        filters.validate(rule)
    except FilterError:
        return False
    return True


_RULE = (
    st.builds(Rule, st.sampled_from(["word"]), _WORD, st.booleans())
    | st.builds(Rule, st.just("phrase"), _PHRASE, st.booleans())
    | st.builds(Rule, st.just("regex"), _REGEX, st.booleans())
)


@settings(deadline=None)  # a shared, loaded machine: slowness is no failure
@given(st.lists(_RULE.filter(_valid), max_size=8))
def test_parse_reads_back_what_render_writes(rules):
    assert filters.parse_rules(filters.render_rules(rules)) == rules


@settings(deadline=None)  # a shared, loaded machine: slowness is no failure
@given(
    st.text(max_size=80)
    | st.lists(
        st.sampled_from(['"', "-", "/", " ", "a", "(", "+", "\\", "*", "x/ y", '-"', "?"])
    ).map("".join)
)
def test_parse_never_raises_anything_but_its_own_error(text):
    try:
        rules = filters.parse_rules(text)
    except FilterError:
        return
    for rule in rules:
        filters.validate(rule)  # whatever it accepts is a valid rule


# --- matching --------------------------------------------------------------------------

RUST = Item("1", "Rust 1.80 released", "https://blog.rust-lang.org/2024/rust-1.80")
GAME = Item("2", "A game dev diary", "https://example.org/games/diary")
HIRING = Item("3", "Who is hiring? (May)", "https://news.example/item?id=3")
SHOWHN = Item("4", "Show HN: a tiny Lisp", "https://example.org/lisp")
ITEMS = [RUST, GAME, HIRING, SHOWHN]


@pytest.mark.parametrize(
    "rules, shown",
    [
        ("", [RUST, GAME, HIRING, SHOWHN]),
        ("rust", [RUST]),
        ("RUST", [RUST]),  # case-insensitive
        ("rust-lang", [RUST]),  # the link counts too
        ("lisp game", [GAME, SHOWHN]),  # any keep rule
        ("-rust", [GAME, HIRING, SHOWHN]),
        ('"game dev"', [GAME]),
        ('"dev game"', []),  # a phrase is one substring
        ('-"game dev"', [RUST, HIRING, SHOWHN]),
        ("/^show hn/", [SHOWHN]),  # regexes ignore case as well
        ("-/hiring\\?/", [RUST, GAME, SHOWHN]),
        ("/[0-9]+\\.[0-9]+/", [RUST]),
        ("example -lisp", [GAME, HIRING]),  # keep, then drop
        ("-example -rust", []),
        ("/id=\\d+$/", [HIRING]),  # matched on the link alone
    ],
)
def test_an_item_is_shown_by_no_drop_and_some_keep(rules, shown):
    matcher = filters.Matcher.of(filters.parse_rules(rules))
    assert [item for item in ITEMS if matcher.shows(item)] == shown


def test_apply_filters_the_whole_list_before_the_cut():
    source = Source("feed", "https://example.org/feed", "feed")
    other = Source("reddit", "r/python", "python")
    items = tuple(
        Item(str(n), f"story {n} {'rust' if n % 3 == 0 else 'go'}", f"https://e/{n}")
        for n in range(30)
    )
    news = [
        SourceNews(source, items),
        SourceNews(other, items),
        SourceNews(Source("reddit", "r/dead", "dead"), error="no such subreddit"),
    ]
    chat_rules = {
        "https://example.org/feed": filters.parse_rules("rust"),
        "*": filters.parse_rules("-/story 0 /"),
    }
    feed, python, dead = filters.apply(news, chat_rules, 5)
    assert [i.id for i in feed.items] == ["3", "6", "9", "12", "15"]
    assert [i.id for i in python.items] == ["1", "2", "3", "4", "5"]  # only the * rule
    assert dead.error == "no such subreddit"


def test_a_pathological_regex_on_a_huge_title_is_linear():
    # On a backtracking engine this takes longer than the universe has existed.
    matcher = filters.Matcher.of(filters.parse_rules("/(a+)+$/ -/(x+x+)+y/"))
    title = "a" * 100_000 + "!"
    assert not matcher.shows(Item("1", title, "https://e/1"))
    assert matcher.shows(Item("2", "a" * 100_000, "https://e/2"))


def test_stored_rules_read_back_and_unreadable_ones_are_left_out():
    chat_rules = {
        "*": filters.parse_rules('-"sponsored post"'),
        "r/python": filters.parse_rules("/^\\[?release/ django"),
    }
    assert filters.from_json(filters.to_json(chat_rules)) == chat_rules
    assert filters.from_json({"r/x": ["/(?=a)/", "ok"], "y": "nope"}) == {
        "r/x": [Rule("word", "ok")]
    }
    assert filters.from_json(["not", "a", "dict"]) == {}
