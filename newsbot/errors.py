"""Newsbot's exceptions.

Third-party exceptions (requests, feedparser, redis, telegram) are mapped to these at
the edge, once, so the rest of the code speaks one language::

    NewsbotError
    ├── ConfigError        a bad environment variable; the CLI prints it and exits 2
    ├── SourceError        a source the bot cannot use; its message is shown to the user
    │   ├── InvalidSource  refused when it is set (bad name, bad URL, SSRF guard)
    │   └── FetchError     failed when fetched (missing, private, dead, slow, too big...)
    ├── Deferred           an update met an outage; it is handled again later
    │   └── Held           its reply must wait out a rate limit; not a failed try
    └── BadUpdate          an update that cannot be parsed; it is set aside, not retried
"""

from __future__ import annotations


class NewsbotError(Exception):
    """Base class of every error Newsbot raises on purpose."""


class ConfigError(NewsbotError):
    """An environment variable has a value Newsbot cannot use."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable

    @classmethod
    def invalid(cls, variable: str, value: str, expected: str) -> ConfigError:
        """The usual message: the variable, its bad value and what was expected."""
        return cls(variable, f"{variable}={value!r} is not valid: expected {expected}")


class SourceError(NewsbotError):
    """A source the bot cannot use; ``str(error)`` is a short reason for the user."""


class InvalidSource(SourceError):
    """A source refused before any request is made."""


class FetchError(SourceError):
    """A source that failed when it was fetched."""


class Deferred(NewsbotError):
    """An update could not be handled because Redis or Telegram was unreachable."""


class Held(Deferred):
    """An update's reply must wait out a rate limit: handled again once it has passed.

    Not an outage and not a failed try: a chat Telegram holds for minutes must not use
    up the tries that set a poison update aside.
    """

    def __init__(self, message: str, wait_seconds: float) -> None:
        super().__init__(message)
        self.wait_seconds = wait_seconds


class BadUpdate(NewsbotError):
    """An update the bot cannot read (e.g. of another Bot API version): never retried."""
