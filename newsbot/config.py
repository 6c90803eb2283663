"""Settings, read once from the environment (12-factor) into a frozen dataclass.

``Settings.from_env`` is the only place that reads configuration; every other module
gets what it needs passed down. A bad value raises ``ConfigError`` naming the variable.

Reading is strict, because a value accepted here and refused later is retried forever
(or silences the bot): numbers are plain decimals within a documented range, URLs have
a scheme, a well-formed host and a port in range, and credentials in URLs are secrets
that error messages and logs mask.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from newsbot import redis_url as sentinel_url
from newsbot.errors import ConfigError

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"
DEFAULT_REDDIT_URL = "https://www.reddit.com"
DEFAULT_HTTP_PORT = 8080
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# A bot id, a colon and the secret (35 characters today); the bounds only keep out values
# that cannot be a token, such as a whole file pasted into the variable.
_TOKEN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,100}")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?"
)
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")  # white space and control characters
# What setWebhook takes as secret_token: 1-256 characters of A-Z, a-z, 0-9, _ and -.
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
MAX_URL_LENGTH = 2000
# Reddit's app ids and secrets are a few dozen characters.
MAX_CREDENTIAL = 200
# Redis' default `databases 16`; a bot that shares a server takes one of those.
REDIS_DATABASES = 16
# Bot API chat ids have at most 52 significant bits.
MAX_CHAT_ID = 2**52
# The query parameters a REDIS_URL may carry, each with the test of its value: redis-py
# passes any other one to the connection as a keyword, and checks some values only when
# it first connects, which would fail (or be retried) long after the start.
_SECONDS = re.compile(r"([0-9]{1,4}(\.[0-9]*)?|\.[0-9]+)")
_WORD = re.compile(r"[\x21-\x7e]{1,200}")
_REDIS_QUERY: dict[str, Callable[[str], bool]] = {
    "db": lambda value: value.isascii() and value.isdigit(),  # range checked apart
    "password": lambda value: True,
    "username": lambda value: True,
    "client_name": lambda value: bool(_WORD.fullmatch(value)),
    "socket_timeout": lambda value: bool(_SECONDS.fullmatch(value)) and float(value) > 0,
    "socket_connect_timeout": lambda value: bool(_SECONDS.fullmatch(value)) and float(value) > 0,
    "health_check_interval": lambda value: bool(_SECONDS.fullmatch(value)),
    "max_connections": lambda value: (
        value.isascii() and value.isdigit() and 1 <= int(value) <= 100_000
    ),
    "retry_on_timeout": lambda value: value.lower() in _TRUE | _FALSE - {""},
    "protocol": lambda value: value in ("2", "3"),
}
_REDISS_QUERY: dict[str, Callable[[str], bool]] = {
    "ssl_cert_reqs": lambda value: value.lower() in ("none", "optional", "required"),
    "ssl_check_hostname": lambda value: value.lower() in _TRUE | _FALSE - {""},
}
_REDIS_PASSWORDS = ("password", "sentinel_password")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything Newsbot can be configured with."""

    telegram_token: str | None = None
    telegram_api_url: str = DEFAULT_TELEGRAM_API_URL
    redis_url: str | None = None
    reddit_url: str = DEFAULT_REDDIT_URL
    reddit_client_id: str | None = None
    reddit_client_secret: str | None = None
    items_per_source: int = 5
    max_sources: int = 20
    cache_ttl: int = 300
    min_interval: int = 900
    fetch_timeout: float = 10.0
    allow_private_urls: bool = False
    allowed_chats: frozenset[int] | None = None
    http_port: int = DEFAULT_HTTP_PORT
    log_level: str = "INFO"
    log_format: str = "text"
    # Telegram's limits for bots, shared by all replicas through Redis.
    send_per_second: float = 30.0
    send_per_chat_second: float = 1.0
    send_per_group_minute: float = 20.0
    # Webhook mode: Telegram pushes updates to this URL; the secret is required with it.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    # Seconds a source fails before each chat using it is told (source_health).
    dead_source_after: int = 86_400

    def __repr__(self) -> str:
        # The token must never reach a log line, even through a debug repr.
        fields = dataclasses.asdict(self)
        for secret in ("telegram_token", "reddit_client_secret", "webhook_secret"):
            if fields[secret]:
                fields[secret] = "***"
        text = "Settings(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from environment variables, raising ConfigError on a bad one."""
        env = _Env(environ)
        webhook_url, webhook_secret = env.webhook()
        settings = cls(
            telegram_token=env.token(),
            telegram_api_url=env.url("TELEGRAM_API_URL", DEFAULT_TELEGRAM_API_URL),
            redis_url=env.redis_url(),
            reddit_url=env.url("REDDIT_URL", DEFAULT_REDDIT_URL),
            reddit_client_id=env.credential("REDDIT_CLIENT_ID"),
            reddit_client_secret=env.credential("REDDIT_CLIENT_SECRET"),
            items_per_source=env.integer("NEWSBOT_ITEMS_PER_SOURCE", 5, 1, 50),
            max_sources=env.integer("NEWSBOT_MAX_SOURCES", 20, 1, 200),
            cache_ttl=env.integer("NEWSBOT_CACHE_TTL", 300, 0, 86_400),
            min_interval=env.integer("NEWSBOT_MIN_INTERVAL", 900, 1, 7 * 86_400),
            fetch_timeout=env.number("NEWSBOT_FETCH_TIMEOUT", 10.0, 0.5, 300),
            allow_private_urls=env.boolean("NEWSBOT_ALLOW_PRIVATE_URLS", False),
            allowed_chats=env.chat_ids("NEWSBOT_ALLOWED_CHATS"),
            http_port=env.integer("NEWSBOT_HTTP_PORT", DEFAULT_HTTP_PORT, 0, 65_535),
            log_level=env.choice("NEWSBOT_LOG_LEVEL", "INFO", LOG_LEVELS),
            log_format=env.choice("NEWSBOT_LOG_FORMAT", "text", LOG_FORMATS),
            # Lower bounds: slower than this, the bot would look dead (a digest to 100
            # chats taking minutes); upper bounds only keep the arithmetic sane, the
            # functional tests and benchmarks switch pacing off with large values.
            send_per_second=env.number("NEWSBOT_SEND_PER_SECOND", 30.0, 1, 1e6),
            send_per_chat_second=env.number("NEWSBOT_SEND_PER_CHAT_SECOND", 1.0, 0.05, 1e6),
            send_per_group_minute=env.number("NEWSBOT_SEND_PER_GROUP_MINUTE", 20.0, 1, 1e6),
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            # Up to 30 days: a failing source's streak lives in its cache entry, which
            # each failed fetch (at most 6 hours apart) keeps for another week.
            dead_source_after=env.integer("NEWSBOT_DEAD_SOURCE_AFTER", 86_400, 1, 30 * 86_400),
        )
        if settings.webhook_url and not settings.http_port:
            raise ConfigError(
                "NEWSBOT_HTTP_PORT",
                "NEWSBOT_HTTP_PORT=0 turns off the port "
                "the webhook (NEWSBOT_WEBHOOK_URL) is served on",
            )
        return settings

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must be removed from every log line."""
        candidates = [self.telegram_token, self.reddit_client_secret, self.webhook_secret]
        for url in (self.redis_url, self.telegram_api_url, self.reddit_url):
            candidates += url_secrets(url) if url else []
        # Longest first: a secret that contains another is replaced whole.
        found = sorted({secret for secret in candidates if secret}, key=len, reverse=True)
        return tuple(found)


def url_secrets(url: str) -> list[str]:
    """The credentials in a URL, as written and percent-decoded: userinfo and passwords.

    A user name alone counts as a credential (some services take a token there); next
    to a password it is only a name.
    """
    try:
        parts = urlsplit(url)
        password, username = parts.password, parts.username
    except ValueError:
        return []
    found = []
    if password:
        found += [password, unquote(password)]
    elif username:
        found += [username, unquote(username)]
    for name, value in _query(parts):
        if name in _REDIS_PASSWORDS and value:
            found.append(value)
    for raw in parts.query.split("&"):
        name, _, value = raw.partition("=")
        if unquote(name) in _REDIS_PASSWORDS and value:
            found.append(value)
    return [secret for secret in found if secret]


def redis_location(url: str) -> str:
    """Where a Redis URL points, without credentials: its host, its socket's path, or
    the sentinels and the master they are asked for."""
    if sentinel_url.is_sentinel(url):
        return sentinel_url.parse(url).location
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return parts.hostname or "localhost"


def _query(parts: SplitResult) -> list[tuple[str, str]]:
    return parse_qsl(parts.query, keep_blank_values=True)


class _Env:
    """Typed reads of environment variables; each error names the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def text(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def credential(self, name: str) -> str | None:
        """An app id or secret: one word of printable characters, never shown back."""
        value = self.text(name)
        if value is not None and (len(value) > MAX_CREDENTIAL or _UNSAFE.search(value)):
            raise ConfigError(
                name,
                f"{name} is not valid: expected at most "
                f"{MAX_CREDENTIAL} characters without spaces",
            )
        return value

    def token(self) -> str | None:
        for name in ("TELEGRAM_TOKEN", "NBT_ACCESS_TOKEN"):
            value = self.text(name)
            if value is None:
                continue
            if not _TOKEN.fullmatch(value):
                # The value itself is not printed: it may be a real token, mistyped.
                raise ConfigError(
                    name,
                    f"{name} is not a bot token: expected the form "
                    "123456789:AAE... that @BotFather gives",
                )
            return value
        return None

    def url(self, name: str, default: str) -> str:
        """A base URL: http(s), a well-formed host, a port in range, no query."""
        value = self.text(name) or default
        expected = "an http:// or https:// URL with a host (and a port from 1 to 65535)"
        problem = _url_problem(value, ("http", "https"))
        if problem is None:
            if "?" in value or "#" in value:
                problem = "no query or fragment"
        if problem is not None:
            raise ConfigError.invalid(name, _masked(value), f"{expected}; {problem}")
        return value.rstrip("/")

    def webhook(self) -> tuple[str | None, str | None]:
        """NEWSBOT_WEBHOOK_URL (http(s), a host, a path) and NEWSBOT_WEBHOOK_SECRET,
        required with it; the secret alone is refused too, as a half-done setup."""
        url = self.text("NEWSBOT_WEBHOOK_URL")
        secret = self.environ.get("NEWSBOT_WEBHOOK_SECRET", "").strip() or None
        if url is not None:
            problem = _url_problem(url, ("http", "https"))
            if problem is None and ("?" in url or "#" in url):
                problem = "no query or fragment"
            if problem is not None:
                raise ConfigError.invalid(
                    "NEWSBOT_WEBHOOK_URL",
                    _masked(url),
                    f"the https:// URL Telegram is to call, e.g. "
                    f"https://bot.example.org/telegram; {problem}",
                )
        if secret is not None and not _WEBHOOK_SECRET.fullmatch(secret):
            # The value is not shown: it is a secret, perhaps a real one mistyped.
            raise ConfigError(
                "NEWSBOT_WEBHOOK_SECRET",
                "NEWSBOT_WEBHOOK_SECRET is not "
                "valid: expected 1 to 256 characters of A-Z, a-z, 0-9, _ and -",
            )
        if url is not None and secret is None:
            raise ConfigError(
                "NEWSBOT_WEBHOOK_SECRET",
                "NEWSBOT_WEBHOOK_URL is set but "
                "NEWSBOT_WEBHOOK_SECRET is not: the webhook needs a secret",
            )
        if url is None and secret is not None:
            raise ConfigError(
                "NEWSBOT_WEBHOOK_URL",
                "NEWSBOT_WEBHOOK_SECRET is set but "
                "NEWSBOT_WEBHOOK_URL is not: set both for webhook mode",
            )
        return url, secret

    def redis_url(self) -> str | None:
        """REDIS_URL: redis://, rediss://, unix:// or redis+sentinel://, with a database
        that exists."""
        value = self.text("REDIS_URL")
        if value is None:
            return None
        if sentinel_url.is_sentinel(value):
            problem = _sentinel_problem(value)
        else:
            problem = _url_problem(value, ("redis", "rediss", "unix"))
            if problem is None:
                problem = _redis_problem(value)
        if problem is not None:
            raise ConfigError.invalid(
                "REDIS_URL",
                _masked(value),
                "a redis://, rediss://, unix:// or redis+sentinel:// URL, e.g. "
                "redis://redis:6379/0 or redis+sentinel://s1:26379,s2:26379/mymaster/0; "
                f"{problem}",
            )
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        number = int(value) if _INTEGER.fullmatch(value) else low - 1
        if not low <= number <= high:
            raise ConfigError.invalid(name, value, f"a whole number from {low} to {high}")
        return number

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        number = float(value) if _DECIMAL.fullmatch(value) else math.nan
        # NaN fails both comparisons; 1e400 reads as inf and fails the upper bound.
        if not (math.isfinite(number) and low <= number <= high):
            raise ConfigError.invalid(name, value, f"a number from {low:g} to {high:g}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.environ.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError.invalid(name, value, "true or false")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name)
        if value is None:
            return default
        normalised = value.upper() if choices is LOG_LEVELS else value.lower()
        if normalised not in choices:
            raise ConfigError.invalid(name, value, "one of " + ", ".join(choices))
        return normalised

    def chat_ids(self, name: str) -> frozenset[int] | None:
        value = self.text(name)
        if value is None:
            return None
        # Separators are commas and white space; a trailing comma is harmless, but two
        # commas in a row mean an id went missing (a typo, or an unset shell variable).
        ids = [part.strip() for part in value.strip(", \t\n").split(",")]
        words = [word for part in ids for word in part.split()]
        valid = all(ids) and all(
            _INTEGER.fullmatch(word) and 0 < abs(int(word)) < MAX_CHAT_ID for word in words
        )
        if not valid or not words:
            raise ConfigError.invalid(
                name,
                value,
                "comma-separated chat ids, e.g. 12345,-100678 (non-zero "
                "integers of at most 52 bits, no empty entries)",
            )
        return frozenset(int(word) for word in words)


def _url_problem(value: str, schemes: tuple[str, ...]) -> str | None:
    """What is wrong with a URL's form, or None: scheme, host, port, no stray characters."""
    if len(value) > MAX_URL_LENGTH:
        return f"at most {MAX_URL_LENGTH} characters"
    if _UNSAFE.search(value):
        return "no spaces or control characters"
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError when out of 0-65535 or not a number
    except ValueError:
        return "the port must be a number from 1 to 65535"
    if parts.scheme.lower() not in schemes:
        return "the scheme must be " + " or ".join(schemes)
    if port == 0:
        return "the port must be a number from 1 to 65535"
    if parts.scheme == "unix":
        return None if parts.path not in ("", "/") else "the path of the socket is missing"
    host = parts.hostname
    if not host:
        return "the host is missing"
    if not (_HOST_NAME.fullmatch(host) or _is_ip(host)):
        return "the host is not a valid name or address"
    return None


def _redis_problem(value: str) -> str | None:
    """What redis-py would refuse, or silently ignore, in a Redis URL."""
    parts = urlsplit(value)
    databases: list[str] = []
    if parts.scheme != "unix" and parts.path not in ("", "/"):
        databases.append(parts.path[1:])
    known = {**_REDIS_QUERY, **(_REDISS_QUERY if parts.scheme == "rediss" else {})}
    for name, given in _query(parts):
        if name not in known:
            return f"unknown query parameter {name!r}"
        if not known[name](given):
            return f"{name}={given!r} is not a valid value"
        if name == "db":
            databases.append(given)
    for database in databases:
        if not (database.isascii() and database.isdigit() and int(database) < REDIS_DATABASES):
            return f"the database must be a number from 0 to {REDIS_DATABASES - 1}"
    try:
        from redis.connection import parse_url  # pure: parses, connects to nothing

        parse_url(value)  # type: ignore[no-untyped-call]
    except ValueError as error:
        return str(error).rstrip(".")
    return None


def _sentinel_problem(value: str) -> str | None:
    """What is wrong with a redis+sentinel:// URL, or None."""
    if len(value) > MAX_URL_LENGTH:
        return f"at most {MAX_URL_LENGTH} characters"
    if _UNSAFE.search(value):
        return "no spaces or control characters"
    try:
        sentinel_url.parse(value, REDIS_DATABASES)
    except ValueError as error:
        return str(error)
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _masked(value: str) -> str:
    """A URL fit for an error message: every credential replaced with ***."""
    for secret in sorted(url_secrets(value), key=len, reverse=True):
        value = value.replace(secret, "***")
    return value
