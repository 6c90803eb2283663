"""Settings, read once from the environment (12-factor) into a frozen dataclass.

``Settings.from_env`` is the only place that reads configuration; every other module
gets what it needs passed down. A bad value raises ``ConfigError`` naming the variable.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from newsbot.errors import ConfigError

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"
DEFAULT_REDDIT_URL = "https://www.reddit.com"
DEFAULT_HTTP_PORT = 8080
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]+")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


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

    def __repr__(self) -> str:
        # The token must never reach a log line, even through a debug repr.
        fields = dataclasses.asdict(self)
        for secret in ("telegram_token", "reddit_client_secret"):
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
        return cls(
            telegram_token=env.token(),
            telegram_api_url=env.url("TELEGRAM_API_URL", DEFAULT_TELEGRAM_API_URL),
            redis_url=env.redis_url(),
            reddit_url=env.url("REDDIT_URL", DEFAULT_REDDIT_URL),
            reddit_client_id=env.text("REDDIT_CLIENT_ID"),
            reddit_client_secret=env.text("REDDIT_CLIENT_SECRET"),
            items_per_source=env.integer("NEWSBOT_ITEMS_PER_SOURCE", 5, 1, 50),
            max_sources=env.integer("NEWSBOT_MAX_SOURCES", 20, 1, 200),
            cache_ttl=env.integer("NEWSBOT_CACHE_TTL", 300, 0, 86_400),
            min_interval=env.integer("NEWSBOT_MIN_INTERVAL", 900, 1, 7 * 86_400),
            fetch_timeout=env.number("NEWSBOT_FETCH_TIMEOUT", 10.0),
            allow_private_urls=env.boolean("NEWSBOT_ALLOW_PRIVATE_URLS", False),
            allowed_chats=env.chat_ids("NEWSBOT_ALLOWED_CHATS"),
            http_port=env.integer("NEWSBOT_HTTP_PORT", DEFAULT_HTTP_PORT, 0, 65_535),
            log_level=env.choice("NEWSBOT_LOG_LEVEL", "INFO", LOG_LEVELS),
            log_format=env.choice("NEWSBOT_LOG_FORMAT", "text", LOG_FORMATS),
            send_per_second=env.number("NEWSBOT_SEND_PER_SECOND", 30.0),
            send_per_chat_second=env.number("NEWSBOT_SEND_PER_CHAT_SECOND", 1.0),
            send_per_group_minute=env.number("NEWSBOT_SEND_PER_GROUP_MINUTE", 20.0),
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must be removed from every log line."""
        redis_password = urlsplit(self.redis_url).password if self.redis_url else None
        candidates = (self.telegram_token, self.reddit_client_secret, redis_password)
        return tuple(secret for secret in candidates if secret)


class _Env:
    """Typed reads of environment variables; each error names the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def text(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def token(self) -> str | None:
        for name in ("TELEGRAM_TOKEN", "NBT_ACCESS_TOKEN"):
            value = self.text(name)
            if value is None:
                continue
            if not _TOKEN.fullmatch(value):
                # The value itself is not printed: it may be a real token, mistyped.
                raise ConfigError(name, f"{name} is not a bot token: expected the form "
                                  "123456789:AAE... that @BotFather gives")
            return value
        return None

    def url(self, name: str, default: str) -> str:
        value = self.text(name) or default
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError.invalid(name, value, "an http:// or https:// URL")
        return value.rstrip("/")

    def redis_url(self) -> str | None:
        value = self.text("REDIS_URL")
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            password = urlsplit(value).password
            shown = value.replace(password, "***") if password else value
            raise ConfigError.invalid("REDIS_URL", shown, "a redis://, rediss:// or unix:// URL")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise ConfigError.invalid(name, value, f"a whole number from {low} to {high}")
        return number

    def number(self, name: str, default: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = 0.0
        if not 0 < number < 1e6:
            raise ConfigError.invalid(name, value, "a positive number")
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
        try:
            return frozenset(int(part) for part in re.split(r"[,\s]+", value) if part)
        except ValueError:
            raise ConfigError.invalid(name, value, "comma-separated chat ids, e.g. 12345,-100678")
