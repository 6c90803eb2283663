"""The former name of sources.parsing, kept only while branches that import it merge.

Import from ``newsbot.sources.parsing``; this module goes once nothing imports it.
"""

from __future__ import annotations

from newsbot.sources.parsing import (
    MAX_URL_LENGTH,
    SUBREDDIT_NAME,
    parse_source,
    parse_sources,
    split_sources,
)

__all__ = ["MAX_URL_LENGTH", "SUBREDDIT_NAME", "parse_source", "parse_sources", "split_sources"]
