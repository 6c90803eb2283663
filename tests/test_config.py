"""Tests of newsbot.config: the environment variables of the contract, read once."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from newsbot.config import Settings
from newsbot.errors import ConfigError

TOKEN = "123456789:AAEexampleToken_with-dash"
SECRET = "reddit-app-secret-0123"


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.telegram_token, settings.redis_url) == (None, None)
    assert settings.telegram_api_url == "https://api.telegram.org"
    assert settings.reddit_url == "https://www.reddit.com"
    assert (settings.reddit_client_id, settings.reddit_client_secret) == (None, None)
    assert settings.items_per_source == 5
    assert settings.max_sources == 20
    assert settings.cache_ttl == 300
    assert settings.min_interval == 900
    assert settings.allow_private_urls is False
    assert settings.allowed_chats is None
    assert settings.http_port == 8080
    assert (settings.log_level, settings.log_format) == ("INFO", "text")


def test_settings_cannot_change_once_read() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().cache_ttl = 1  # type: ignore[misc]


@pytest.mark.parametrize("environ, field, value", [
    ({"TELEGRAM_TOKEN": TOKEN}, "telegram_token", TOKEN),
    ({"TELEGRAM_TOKEN": f"  {TOKEN}\n"}, "telegram_token", TOKEN),
    ({"NBT_ACCESS_TOKEN": TOKEN}, "telegram_token", TOKEN),
    ({"TELEGRAM_TOKEN": "", "NBT_ACCESS_TOKEN": TOKEN}, "telegram_token", TOKEN),
    ({"TELEGRAM_TOKEN": TOKEN, "NBT_ACCESS_TOKEN": "1:other"}, "telegram_token", TOKEN),
    ({"TELEGRAM_API_URL": "http://127.0.0.1:8081/"}, "telegram_api_url",
     "http://127.0.0.1:8081"),
    ({"REDIS_URL": "redis://redis:6379/0"}, "redis_url", "redis://redis:6379/0"),
    ({"REDIS_URL": "rediss://:pw@redis.example:6380/1"}, "redis_url",
     "rediss://:pw@redis.example:6380/1"),
    ({"REDIS_URL": "unix:///run/redis.sock"}, "redis_url", "unix:///run/redis.sock"),
    ({"REDIS_URL": ""}, "redis_url", None),
    ({"REDDIT_URL": "http://127.0.0.1:8082"}, "reddit_url", "http://127.0.0.1:8082"),
    ({"REDDIT_CLIENT_ID": "app-id"}, "reddit_client_id", "app-id"),
    ({"REDDIT_CLIENT_SECRET": SECRET}, "reddit_client_secret", SECRET),
    ({"NEWSBOT_ITEMS_PER_SOURCE": "7"}, "items_per_source", 7),
    ({"NEWSBOT_ITEMS_PER_SOURCE": " 1 "}, "items_per_source", 1),
    ({"NEWSBOT_MAX_SOURCES": "50"}, "max_sources", 50),
    ({"NEWSBOT_CACHE_TTL": "0"}, "cache_ttl", 0),
    ({"NEWSBOT_CACHE_TTL": "600"}, "cache_ttl", 600),
    ({"NEWSBOT_MIN_INTERVAL": "60"}, "min_interval", 60),
    ({"NEWSBOT_FETCH_TIMEOUT": "2.5"}, "fetch_timeout", 2.5),
    ({"NEWSBOT_ALLOW_PRIVATE_URLS": "true"}, "allow_private_urls", True),
    ({"NEWSBOT_ALLOW_PRIVATE_URLS": "1"}, "allow_private_urls", True),
    ({"NEWSBOT_ALLOW_PRIVATE_URLS": "Yes"}, "allow_private_urls", True),
    ({"NEWSBOT_ALLOW_PRIVATE_URLS": "on"}, "allow_private_urls", True),
    ({"NEWSBOT_ALLOW_PRIVATE_URLS": "false"}, "allow_private_urls", False),
    ({"NEWSBOT_ALLOW_PRIVATE_URLS": "0"}, "allow_private_urls", False),
    ({"NEWSBOT_ALLOW_PRIVATE_URLS": "OFF"}, "allow_private_urls", False),
    ({"NEWSBOT_ALLOW_PRIVATE_URLS": ""}, "allow_private_urls", False),
    ({"NEWSBOT_ALLOWED_CHATS": "12345,-100678"}, "allowed_chats",
     frozenset({12345, -100678})),
    ({"NEWSBOT_ALLOWED_CHATS": " 1, 2 3,"}, "allowed_chats", frozenset({1, 2, 3})),
    ({"NEWSBOT_ALLOWED_CHATS": ""}, "allowed_chats", None),
    ({"NEWSBOT_HTTP_PORT": "0"}, "http_port", 0),
    ({"NEWSBOT_HTTP_PORT": "9090"}, "http_port", 9090),
    ({"NEWSBOT_LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
    ({"NEWSBOT_LOG_LEVEL": "Warning"}, "log_level", "WARNING"),
    ({"NEWSBOT_LOG_FORMAT": "JSON"}, "log_format", "json"),
    ({"NEWSBOT_LOG_FORMAT": "text"}, "log_format", "text"),
    ({"NEWSBOT_SEND_PER_SECOND": "10"}, "send_per_second", 10.0),
    ({"NEWSBOT_SEND_PER_CHAT_SECOND": "0.5"}, "send_per_chat_second", 0.5),
    ({"NEWSBOT_SEND_PER_GROUP_MINUTE": "12"}, "send_per_group_minute", 12.0),
])
def test_every_variable_is_read(environ: dict[str, str], field: str, value: Any) -> None:
    assert getattr(Settings.from_env(environ), field) == value


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"HOME": "/root", "NEWSBOT_UNKNOWN": "x"}) == Settings()


@pytest.mark.parametrize("variable, value", [
    ("TELEGRAM_API_URL", "ftp://api.telegram.org"),
    ("TELEGRAM_API_URL", "api.telegram.org"),
    ("TELEGRAM_API_URL", "http://"),
    ("REDDIT_URL", "www.reddit.com"),
    ("REDIS_URL", "localhost:6379"),
    ("REDIS_URL", "http://redis:6379/0"),
    ("NEWSBOT_ITEMS_PER_SOURCE", "0"),
    ("NEWSBOT_ITEMS_PER_SOURCE", "51"),
    ("NEWSBOT_ITEMS_PER_SOURCE", "five"),
    ("NEWSBOT_ITEMS_PER_SOURCE", "5.0"),
    ("NEWSBOT_MAX_SOURCES", "0"),
    ("NEWSBOT_MAX_SOURCES", "201"),
    ("NEWSBOT_CACHE_TTL", "-1"),
    ("NEWSBOT_CACHE_TTL", "5m"),
    ("NEWSBOT_CACHE_TTL", "86401"),
    ("NEWSBOT_MIN_INTERVAL", "0"),
    ("NEWSBOT_MIN_INTERVAL", "15m"),
    ("NEWSBOT_FETCH_TIMEOUT", "0"),
    ("NEWSBOT_FETCH_TIMEOUT", "-1"),
    ("NEWSBOT_FETCH_TIMEOUT", "nan"),
    ("NEWSBOT_FETCH_TIMEOUT", "inf"),
    ("NEWSBOT_FETCH_TIMEOUT", "ten"),
    ("NEWSBOT_ALLOW_PRIVATE_URLS", "maybe"),
    ("NEWSBOT_ALLOW_PRIVATE_URLS", "2"),
    ("NEWSBOT_ALLOWED_CHATS", "alice"),
    ("NEWSBOT_ALLOWED_CHATS", "12,@channel"),
    ("NEWSBOT_HTTP_PORT", "65536"),
    ("NEWSBOT_HTTP_PORT", "-1"),
    ("NEWSBOT_HTTP_PORT", "http"),
    ("NEWSBOT_LOG_LEVEL", "verbose"),
    ("NEWSBOT_LOG_FORMAT", "xml"),
    ("NEWSBOT_SEND_PER_SECOND", "0"),
    ("NEWSBOT_SEND_PER_CHAT_SECOND", "fast"),
    ("NEWSBOT_SEND_PER_GROUP_MINUTE", "-20"),
])
def test_a_bad_value_names_the_variable_and_the_value(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    assert error.value.variable == variable
    message = str(error.value)
    assert variable in message and repr(value) in message
    assert "\n" not in message  # one clear line


@pytest.mark.parametrize("variable", ["TELEGRAM_TOKEN", "NBT_ACCESS_TOKEN"])
@pytest.mark.parametrize("value", [
    "ZZsecretPartWithoutTheBotId",
    "987654321:ZZsecret part with spaces",
    "987654321:ZZsecret\nsecond-line",
    "bot987654321:ZZsecretPrefixed",
    "987654321:ZZsecret/../../getMe",
])
def test_a_malformed_token_is_refused_without_repeating_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    assert error.value.variable == variable
    message = str(error.value)
    assert variable in message
    assert "ZZsecret" not in message and "987654321" not in message


def test_repr_never_shows_the_token_or_the_reddit_secret(
        caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_env({"TELEGRAM_TOKEN": TOKEN, "REDDIT_CLIENT_ID": "app-id",
                                  "REDDIT_CLIENT_SECRET": SECRET})
    for text in (repr(settings), str(settings), f"{settings}", f"{settings!r}"):
        assert TOKEN not in text and TOKEN.split(":")[1] not in text
        assert SECRET not in text
        assert "app-id" in text  # the rest is still there to debug with
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("newsbot.test").debug("settings: %s / %r", settings, settings)
    assert TOKEN not in caplog.text and SECRET not in caplog.text
    assert set(settings.secrets) == {TOKEN, SECRET}


def test_a_redis_password_is_a_secret_too() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://:hunter2@redis:6379/0"})
    assert "hunter2" not in repr(settings) and "redis://:***@redis:6379/0" in repr(settings)
    assert settings.secrets == ("hunter2",)
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"REDIS_URL": "http://:hunter2@redis:6379/0"})
    assert "REDIS_URL" in str(error.value) and "hunter2" not in str(error.value)


def test_repr_of_settings_without_secrets_is_plain() -> None:
    assert "***" not in repr(Settings())
    assert Settings().secrets == ()
