"""Text of feed items as a user reads it: plain text from whatever markup a feed used.

Pure functions, shared by the RSS/Atom and JSON Feed readers.
"""

from __future__ import annotations

import html
import re

_TAG = re.compile(r"<[^>]*>")
# HTML elements that turn up in titles as markup (escaped, or in CDATA). Only these are
# stripped from a plain-text title: "Option<T> in Rust" keeps its <T>.
_HTML_TAG = re.compile(
    r"</?(?:a|abbr|b|big|blockquote|br|cite|code|del|div|em|font|h[1-6]|hr|i|img|ins|"
    r"kbd|li|mark|ol|p|pre|q|s|small|span|strike|strong|sub|sup|tt|u|ul)\b[^<>]*>",
    re.IGNORECASE,
)
# Markup escaped once more than its type says is common; three rounds undo any real case.
_DECODE_ROUNDS = 3
# How long an excerpt of the description stands in for a missing title.
EXCERPT_CHARS = 80


def plain_text(text: str, is_html: bool = False) -> str:
    """A title as plain text: entities decoded, markup stripped, white space collapsed.

    Markup (``type="html"``) loses every tag; text loses only real HTML elements, which
    arrive escaped or in CDATA, however many times they were escaped.
    """
    for _ in range(_DECODE_ROUNDS):
        text = (_TAG if is_html else _HTML_TAG).sub("", text)
        decoded = html.unescape(text)
        if decoded == text:
            break
        text, is_html = decoded, False
    # Whatever lone surrogate is left (a character reference html.unescape passed on)
    # cannot be stored or sent.
    text = text.encode("utf-8", "ignore").decode("utf-8") if _has_surrogate(text) else text
    return " ".join(text.split())


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The start of a description as a stand-in title: at most ``limit`` characters."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:-") + "…"
