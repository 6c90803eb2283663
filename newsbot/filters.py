"""Filter rules: the ``/filter`` syntax, and which items a chat's rules let through.

Pure functions, no I/O. A rule is a word or a ``"quoted phrase"`` (keep), ``-word`` or
``-"phrase"`` (drop), or ``/regex/`` (``-/regex/`` to drop). Words and phrases are
case-insensitive substring tests; regexes run on RE2, whose matching time is linear in
the text, so no pattern a user writes can stall the bot (``(a+)+$`` included). Every
rule looks at an item's title and link.

An item is shown when it matches no drop rule and, if there are keep rules, at least one
of them. A source's rules are the chat's ``*`` rules plus its own.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import re2

from newsbot.models import Item, SourceNews

# The chat's rules for every source at once, stored under this name.
ALL_SOURCES = "*"
MAX_RULES = 20
MAX_RULE_LENGTH = 200
# The word that clears a source's rules: "/filter SOURCE off".
OFF = "off"
# RE2's memory budget per compiled regex: ample for any 200-character pattern, and a
# bound on what one user can make the bot allocate.
REGEX_MAX_MEM = 8 << 20

RuleKind = Literal["word", "phrase", "regex"]


class FilterError(ValueError):
    """Rules that cannot be used; ``str(error)`` says why, for the user."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """One filter rule: what it looks for, and whether a match keeps or drops the item."""

    kind: RuleKind
    text: str
    drop: bool = False

    def render(self) -> str:
        """The rule as the user writes it: ``word``, ``-"a phrase"``, ``/re/``."""
        body = {"word": self.text, "phrase": f'"{self.text}"', "regex": f"/{self.text}/"}[
            self.kind
        ]
        return "-" + body if self.drop else body


def render_rules(rules: Iterable[Rule]) -> str:
    """Rules as one line the parser reads back to the same rules."""
    return " ".join(rule.render() for rule in rules)


def parse_rules(text: str) -> list[Rule]:
    """Parse the rules of a ``/filter`` command, raising FilterError with the reason."""
    rules: list[Rule] = []
    position, end = 0, len(text)
    while True:
        while position < end and text[position].isspace():
            position += 1
        if position == end:
            return rules
        rule, position = _parse_one(text, position)
        validate(rule)
        rules.append(rule)


def _parse_one(text: str, start: int) -> tuple[Rule, int]:
    """Read the rule that starts at ``start``; return it and where the next one may start."""
    drop = text.startswith("-", start)
    body = start + 1 if drop else start
    if text.startswith('"', body):
        close = text.find('"', body + 1)
        if close < 0:
            raise FilterError(f'{_excerpt(text, start)}: a phrase needs a closing "')
        after = close + 1
        if after < len(text) and not text[after].isspace():
            raise FilterError(f'{_excerpt(text, start)}: put a space after the closing "')
        return Rule("phrase", text[body + 1 : close], drop), after
    if text.startswith("/", body):
        # A regex ends at the first "/" followed by a space or the end: "/" inside one
        # is fine as long as a space does not follow it (write "\/ " for that).
        close = body + 1
        while True:
            close = text.find("/", close)
            if close < 0:
                raise FilterError(f"{_excerpt(text, start)}: a regex needs a closing /")
            if close + 1 == len(text) or text[close + 1].isspace():
                break
            close += 1
        return Rule("regex", text[body + 1 : close], drop), close + 1
    stop = body
    while stop < len(text) and not text[stop].isspace():
        stop += 1
    word = text[body:stop]
    if not word:
        raise FilterError('a lone - is not a rule: write -word, -"a phrase" or -/regex/')
    return Rule("word", word, drop), stop


def validate(rule: Rule) -> None:
    """Refuse a rule that is empty, too long, ambiguous or (a regex) does not compile."""
    shown = _shorten(rule.render())
    if len(rule.render()) > MAX_RULE_LENGTH:
        raise FilterError(f"{shown}: a rule is at most {MAX_RULE_LENGTH} characters")
    if rule.kind == "word":
        if not rule.text or any(c.isspace() or c == '"' for c in rule.text):
            raise FilterError(f"{shown}: a word has no spaces or quotes")
        if rule.text[0] in "-/":
            raise FilterError(f"{shown}: a word cannot start with - or /; quote it")
    elif rule.kind == "phrase":
        if not rule.text.strip():
            raise FilterError(f"{shown}: the phrase is empty")
        if '"' in rule.text:
            raise FilterError(f'{shown}: a phrase cannot hold a "')
    else:
        if not rule.text:
            raise FilterError(f"{shown}: the regex is empty")
        if any(
            rule.text[i] == "/" and rule.text[i + 1].isspace() for i in range(len(rule.text) - 1)
        ):
            raise FilterError(f"{shown}: write \\/ for a / before a space")
        try:
            _compile(rule.text)
        except re2.error as error:
            raise FilterError(f"{shown}: not a valid regex ({_reason(error)})") from None


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> Any:
    """Compile a regex on RE2, case-insensitive; cached, as each /fetch uses it again."""
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = REGEX_MAX_MEM
    options.log_errors = False  # a user's typo is answered to the user, not logged
    return re2.compile(pattern, options)


def _reason(error: Exception) -> str:
    reason = error.args[0] if error.args else "invalid"
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    return str(reason)


def _excerpt(text: str, start: int) -> str:
    """The word a rule starts with, for an error message about a rule that did not end."""
    return _shorten(text[start:].split(maxsplit=1)[0])


def _shorten(text: str, width: int = 40) -> str:
    """A rule cut for an error message, so a reply stays short."""
    return text if len(text) <= width else text[: width - 1] + "…"


# --- matching --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Matcher:
    """Compiled rules, ready to be asked about items."""

    keep: tuple[Rule, ...]
    drop: tuple[Rule, ...]

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> Matcher:
        rules = list(rules)
        return cls(
            keep=tuple(r for r in rules if not r.drop), drop=tuple(r for r in rules if r.drop)
        )

    def shows(self, item: Item) -> bool:
        """Tell whether the rules let an item through."""
        texts = (item.title, item.link)
        folded = tuple(text.casefold() for text in texts)
        if any(_matches(rule, texts, folded) for rule in self.drop):
            return False
        return not self.keep or any(_matches(rule, texts, folded) for rule in self.keep)


def _matches(rule: Rule, texts: tuple[str, ...], folded: tuple[str, ...]) -> bool:
    if rule.kind == "regex":
        pattern = _compile(rule.text)
        return any(pattern.search(text) is not None for text in texts)
    needle = rule.text.casefold()
    return any(needle in text for text in folded)


# --- a chat's rules --------------------------------------------------------------------

ChatRules = Mapping[str, Sequence[Rule]]


def rules_for(chat_rules: ChatRules, source_key: str) -> list[Rule]:
    """The rules that apply to one source: the chat's ``*`` rules, then its own."""
    return [*chat_rules.get(ALL_SOURCES, ()), *chat_rules.get(source_key, ())]


def count_rules(chat_rules: ChatRules) -> int:
    """How many rules a chat has, counted toward ``MAX_RULES``."""
    return sum(len(rules) for rules in chat_rules.values())


def apply(news: Sequence[SourceNews], chat_rules: ChatRules, limit: int) -> list[SourceNews]:
    """Filter each source's whole item list, then cut it to ``limit`` items.

    Filtering comes first, so a filtered source still shows ``limit`` items when the
    feed has that many that pass.
    """
    shown = []
    for block in news:
        rules = rules_for(chat_rules, block.source.key)
        items = block.items
        if rules:
            matcher = Matcher.of(rules)
            items = tuple(item for item in items if matcher.shows(item))
        shown.append(dataclasses.replace(block, items=items[:limit]))
    return shown


def to_json(chat_rules: ChatRules) -> dict[str, list[str]]:
    """A chat's rules as stored: source key -> the rules as written."""
    return {key: [rule.render() for rule in rules] for key, rules in chat_rules.items() if rules}


def from_json(data: Any) -> dict[str, list[Rule]]:
    """A chat's rules read back; a rule this version cannot read is left out."""
    chat_rules: dict[str, list[Rule]] = {}
    if not isinstance(data, dict):
        return chat_rules
    for key, written in data.items():
        rules: list[Rule] = []
        for text in written if isinstance(written, list) else []:
            try:
                rules.extend(parse_rules(str(text)))
            except FilterError:
                continue  # stored by another version; the rest of the chat's rules hold
        if rules:
            chat_rules[str(key)] = rules
    return chat_rules
