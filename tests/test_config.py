"""Tests of newsbot.config: the environment variables of the contract, read once."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    "environ, field, value",
    [
        ({"TELEGRAM_TOKEN": TOKEN}, "telegram_token", TOKEN),
        ({"TELEGRAM_TOKEN": f"  {TOKEN}\n"}, "telegram_token", TOKEN),
        ({"NBT_ACCESS_TOKEN": TOKEN}, "telegram_token", TOKEN),
        ({"TELEGRAM_TOKEN": "", "NBT_ACCESS_TOKEN": TOKEN}, "telegram_token", TOKEN),
        ({"TELEGRAM_TOKEN": TOKEN, "NBT_ACCESS_TOKEN": "1:other"}, "telegram_token", TOKEN),
        (
            {"TELEGRAM_API_URL": "http://127.0.0.1:8081/"},
            "telegram_api_url",
            "http://127.0.0.1:8081",
        ),
        ({"REDIS_URL": "redis://redis:6379/0"}, "redis_url", "redis://redis:6379/0"),
        (
            {"REDIS_URL": "rediss://:pw@redis.example:6380/1"},
            "redis_url",
            "rediss://:pw@redis.example:6380/1",
        ),
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
        ({"NEWSBOT_DEAD_SOURCE_AFTER": "3600"}, "dead_source_after", 3600),
        ({"NEWSBOT_FETCH_TIMEOUT": "2.5"}, "fetch_timeout", 2.5),
        ({"NEWSBOT_ALLOW_PRIVATE_URLS": "true"}, "allow_private_urls", True),
        ({"NEWSBOT_ALLOW_PRIVATE_URLS": "1"}, "allow_private_urls", True),
        ({"NEWSBOT_ALLOW_PRIVATE_URLS": "Yes"}, "allow_private_urls", True),
        ({"NEWSBOT_ALLOW_PRIVATE_URLS": "on"}, "allow_private_urls", True),
        ({"NEWSBOT_ALLOW_PRIVATE_URLS": "false"}, "allow_private_urls", False),
        ({"NEWSBOT_ALLOW_PRIVATE_URLS": "0"}, "allow_private_urls", False),
        ({"NEWSBOT_ALLOW_PRIVATE_URLS": "OFF"}, "allow_private_urls", False),
        ({"NEWSBOT_ALLOW_PRIVATE_URLS": ""}, "allow_private_urls", False),
        ({"NEWSBOT_ALLOWED_CHATS": "12345,-100678"}, "allowed_chats", frozenset({12345, -100678})),
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
    ],
)
def test_every_variable_is_read(environ: dict[str, str], field: str, value: Any) -> None:
    assert getattr(Settings.from_env(environ), field) == value


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"HOME": "/root", "NEWSBOT_UNKNOWN": "x"}) == Settings()


@pytest.mark.parametrize(
    "variable, value",
    [
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
        ("NEWSBOT_DEAD_SOURCE_AFTER", "0"),
        ("NEWSBOT_DEAD_SOURCE_AFTER", "2592001"),
        ("NEWSBOT_DEAD_SOURCE_AFTER", "1d"),
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
    ],
)
def test_a_bad_value_names_the_variable_and_the_value(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    assert error.value.variable == variable
    message = str(error.value)
    assert variable in message and repr(value) in message
    assert "\n" not in message  # one clear line


@pytest.mark.parametrize("variable", ["TELEGRAM_TOKEN", "NBT_ACCESS_TOKEN"])
@pytest.mark.parametrize(
    "value",
    [
        "ZZsecretPartWithoutTheBotId",
        "987654321:ZZsecret part with spaces",
        "987654321:ZZsecret\nsecond-line",
        "bot987654321:ZZsecretPrefixed",
        "987654321:ZZsecret/../../getMe",
    ],
)
def test_a_malformed_token_is_refused_without_repeating_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    assert error.value.variable == variable
    message = str(error.value)
    assert variable in message
    assert "ZZsecret" not in message and "987654321" not in message


def test_repr_never_shows_the_token_or_the_reddit_secret(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_env(
        {"TELEGRAM_TOKEN": TOKEN, "REDDIT_CLIENT_ID": "app-id", "REDDIT_CLIENT_SECRET": SECRET}
    )
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


# --- strict parsing: finite values in range, ports, databases, ids, token, URLs ---------


@pytest.mark.parametrize(
    "variable, value",
    [
        ("NEWSBOT_SEND_PER_SECOND", "1e-300"),  # accepted once: a booking every 1e300 s
        ("NEWSBOT_SEND_PER_SECOND", "0.0001"),
        ("NEWSBOT_SEND_PER_SECOND", "0.5"),
        ("NEWSBOT_SEND_PER_SECOND", "nan"),
        ("NEWSBOT_SEND_PER_SECOND", "inf"),
        ("NEWSBOT_SEND_PER_SECOND", "1e400"),  # reads as inf
        ("NEWSBOT_SEND_PER_SECOND", "2e6"),
        ("NEWSBOT_SEND_PER_SECOND", "3_0"),  # Python's float() would take it
        ("NEWSBOT_SEND_PER_SECOND", "0x1e"),
        ("NEWSBOT_SEND_PER_CHAT_SECOND", "0.001"),
        ("NEWSBOT_SEND_PER_CHAT_SECOND", "-inf"),
        ("NEWSBOT_SEND_PER_GROUP_MINUTE", "0.1"),
        ("NEWSBOT_SEND_PER_GROUP_MINUTE", "NaN"),
        ("NEWSBOT_FETCH_TIMEOUT", "1e-300"),
        ("NEWSBOT_FETCH_TIMEOUT", "301"),
        ("NEWSBOT_ITEMS_PER_SOURCE", "1_0"),  # Python's int() would take these two
        ("NEWSBOT_ITEMS_PER_SOURCE", "\u0663"),  # an Arabic-Indic three
        ("NEWSBOT_HTTP_PORT", "8080.0"),
        ("NEWSBOT_HTTP_PORT", "1e3"),
        ("NEWSBOT_ALLOWED_CHATS", "1,,2"),
        ("NEWSBOT_ALLOWED_CHATS", ",,"),
        ("NEWSBOT_ALLOWED_CHATS", "1, ,2"),
        ("NEWSBOT_ALLOWED_CHATS", "0"),
        ("NEWSBOT_ALLOWED_CHATS", "1.5"),
        ("NEWSBOT_ALLOWED_CHATS", "1;2"),
        ("NEWSBOT_ALLOWED_CHATS", str(2**60)),
        ("NEWSBOT_ALLOWED_CHATS", str(-(2**60))),
        ("TELEGRAM_API_URL", "http://127.0.0.1:99999"),
        ("TELEGRAM_API_URL", "http://127.0.0.1:0"),
        ("TELEGRAM_API_URL", "http://127.0.0.1:port"),
        ("TELEGRAM_API_URL", "http:///bot"),
        ("TELEGRAM_API_URL", "http://exa mple.org"),
        ("TELEGRAM_API_URL", "http://example.org/\x00"),
        ("TELEGRAM_API_URL", "http://a..b"),
        ("TELEGRAM_API_URL", "http://-bad-.example"),
        ("TELEGRAM_API_URL", "https://api.telegram.org?x=1"),
        ("TELEGRAM_API_URL", "https://api.telegram.org/#top"),
        ("TELEGRAM_API_URL", "https://" + "a" * 2000 + ".org"),
        ("REDDIT_URL", "https://www.reddit.com:65536"),
        ("REDDIT_URL", "https://[::1"),
        ("REDIS_URL", "redis://127.0.0.1:99999/0"),
        ("REDIS_URL", "redis://127.0.0.1:0/0"),
        ("REDIS_URL", "redis://127.0.0.1/abc"),  # redis-py would quietly use database 0
        ("REDIS_URL", "redis://127.0.0.1/16"),
        ("REDIS_URL", "redis://127.0.0.1/-1"),
        ("REDIS_URL", "redis://127.0.0.1/0/1"),
        ("REDIS_URL", "redis://127.0.0.1/0?db=99"),
        ("REDIS_URL", "redis://127.0.0.1/0?foo=bar"),
        ("REDIS_URL", "redis://127.0.0.1/0?socket_timeout=soon"),
        ("REDIS_URL", "redis:///0"),
        ("REDIS_URL", "redis://127.0.0.1/0?max_connections=-1"),  # a traceback once connecting
        ("REDIS_URL", "redis://127.0.0.1/0?protocol=7"),
        ("REDIS_URL", "redis://127.0.0.1/0?ssl_cert_reqs=none"),  # only for rediss://
        ("REDIS_URL", "rediss://127.0.0.1/0?ssl_cert_reqs=bogus"),
        ("REDIS_URL", "unix://"),
        ("REDIS_URL", "unix:///run/redis.sock?db=x"),
    ],
)
def test_out_of_range_and_malformed_values_are_refused(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    assert error.value.variable == variable
    message = str(error.value)
    assert variable in message and "\n" not in message


@pytest.mark.parametrize(
    "environ, field, value",
    [
        ({"NEWSBOT_SEND_PER_SECOND": "1"}, "send_per_second", 1.0),
        ({"NEWSBOT_SEND_PER_SECOND": "1e3"}, "send_per_second", 1000.0),
        ({"NEWSBOT_SEND_PER_SECOND": "100000"}, "send_per_second", 100000.0),  # benchmarks
        ({"NEWSBOT_SEND_PER_CHAT_SECOND": "0.05"}, "send_per_chat_second", 0.05),
        ({"NEWSBOT_SEND_PER_GROUP_MINUTE": "600000"}, "send_per_group_minute", 600000.0),
        ({"NEWSBOT_FETCH_TIMEOUT": "0.5"}, "fetch_timeout", 0.5),
        ({"NEWSBOT_HTTP_PORT": "65535"}, "http_port", 65535),
        ({"NEWSBOT_ALLOWED_CHATS": "1,2,"}, "allowed_chats", frozenset({1, 2})),
        (
            {"NEWSBOT_ALLOWED_CHATS": "-1001234567890"},
            "allowed_chats",
            frozenset({-1001234567890}),
        ),
        ({"REDIS_URL": "redis://127.0.0.1/15"}, "redis_url", "redis://127.0.0.1/15"),
        ({"REDIS_URL": "redis://[::1]:6379"}, "redis_url", "redis://[::1]:6379"),
        (
            {"REDIS_URL": "redis://user:pw@redis:6379/0?db=2"},
            "redis_url",
            "redis://user:pw@redis:6379/0?db=2",
        ),
        (
            {"REDIS_URL": "unix:///run/redis.sock?db=2&password=pw"},
            "redis_url",
            "unix:///run/redis.sock?db=2&password=pw",
        ),
        (
            {"REDIS_URL": "rediss://redis/0?ssl_cert_reqs=none"},
            "redis_url",
            "rediss://redis/0?ssl_cert_reqs=none",
        ),
        (
            {"REDIS_URL": "redis://r/0?socket_timeout=2.5&retry_on_timeout=true&protocol=3"},
            "redis_url",
            "redis://r/0?socket_timeout=2.5&retry_on_timeout=true&protocol=3",
        ),
        ({"TELEGRAM_API_URL": "http://[::1]:8081"}, "telegram_api_url", "http://[::1]:8081"),
        (
            {"TELEGRAM_API_URL": "https://user:pw@bot-api.example/"},
            "telegram_api_url",
            "https://user:pw@bot-api.example",
        ),
        ({"TELEGRAM_TOKEN": "1234567890:" + "A" * 35}, "telegram_token", "1234567890:" + "A" * 35),
    ],
)
def test_values_at_the_edges_of_their_ranges_are_read(
    environ: dict[str, str], field: str, value: Any
) -> None:
    assert getattr(Settings.from_env(environ), field) == value


@pytest.mark.parametrize(
    "value",
    [
        "123456789:" + "A" * 9990,  # 10,000 characters
        "1:" + "A" * 101,
        "1" * 21 + ":AAEsecret",
        "123456789:",
    ],
)
def test_a_token_of_an_impossible_length_is_refused(value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"TELEGRAM_TOKEN": value})
    assert error.value.variable == "TELEGRAM_TOKEN" and "AAAA" not in str(error.value)


@pytest.mark.parametrize(
    "environ, secrets",
    [
        ({"REDIS_URL": "unix://:sockpw@/run/redis.sock"}, {"sockpw"}),
        ({"REDIS_URL": "unix:///run/redis.sock?password=sockpw"}, {"sockpw"}),
        ({"REDIS_URL": "redis://redis:6379/0?password=querypw"}, {"querypw"}),
        ({"REDIS_URL": "redis://default:p%40ss@redis:6379/0"}, {"p%40ss", "p@ss"}),
        ({"REDIS_URL": "redis://redis/0?password=p%21ss"}, {"p%21ss", "p!ss"}),
        ({"TELEGRAM_API_URL": "https://user:apipw@bot-api.example"}, {"apipw"}),
        ({"TELEGRAM_API_URL": "https://tokenAsUser@bot-api.example"}, {"tokenAsUser"}),
        ({"REDDIT_URL": "https://user:redditpw@reddit.example"}, {"redditpw"}),
    ],
)
def test_credentials_in_every_url_form_are_secrets(
    environ: dict[str, str], secrets: set[str]
) -> None:
    settings = Settings.from_env(environ)
    assert secrets <= set(settings.secrets)
    for secret in secrets:
        assert secret not in repr(settings)
    assert "redis" in repr(settings)  # the rest of the URL is still there to debug with


@pytest.mark.parametrize(
    "value",
    [
        "unix://:sockpw@/run/redis.sock?db=99",
        "unix:///run/redis.sock?password=sockpw&db=99",
        "redis://:sockpw@redis:99999/0",
        "redis://redis/99?password=sockpw",
    ],
)
def test_a_refused_redis_url_is_shown_without_its_password(value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"REDIS_URL": value})
    assert "REDIS_URL" in str(error.value) and "sockpw" not in str(error.value)
    assert "***" in str(error.value)


def test_a_refused_api_url_is_shown_without_its_userinfo() -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"TELEGRAM_API_URL": "https://user:apipw@bot-api.example:0"})
    assert "apipw" not in str(error.value)


@pytest.mark.parametrize("variable", ["REDDIT_CLIENT_ID", "REDDIT_CLIENT_SECRET"])
@pytest.mark.parametrize("value", ["ZZsecret" * 30, "ZZsecret with spaces", "ZZsecret\x00"])
def test_a_malformed_reddit_credential_is_refused_without_repeating_it(
    variable: str, value: str
) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    assert error.value.variable == variable and "ZZsecret" not in str(error.value)


VARIABLES = [
    "TELEGRAM_TOKEN",
    "NBT_ACCESS_TOKEN",
    "TELEGRAM_API_URL",
    "REDIS_URL",
    "REDDIT_URL",
    "REDDIT_CLIENT_ID",
    "REDDIT_CLIENT_SECRET",
    "NEWSBOT_ITEMS_PER_SOURCE",
    "NEWSBOT_MAX_SOURCES",
    "NEWSBOT_CACHE_TTL",
    "NEWSBOT_MIN_INTERVAL",
    "NEWSBOT_FETCH_TIMEOUT",
    "NEWSBOT_ALLOW_PRIVATE_URLS",
    "NEWSBOT_ALLOWED_CHATS",
    "NEWSBOT_HTTP_PORT",
    "NEWSBOT_LOG_LEVEL",
    "NEWSBOT_LOG_FORMAT",
    "NEWSBOT_SEND_PER_SECOND",
    "NEWSBOT_SEND_PER_CHAT_SECOND",
    "NEWSBOT_SEND_PER_GROUP_MINUTE",
]
_URLISH = st.from_regex(
    r"(redis|rediss|unix|http|https)://[a-z0-9:@%./?=&\[\]_-]{0,40}", fullmatch=True
)


@settings(max_examples=300, deadline=None)
@given(variable=st.sampled_from(VARIABLES), value=st.one_of(st.text(max_size=60), _URLISH))
def test_any_value_is_read_into_range_or_refused_with_a_config_error(
    variable: str, value: str
) -> None:
    try:
        read = Settings.from_env({variable: value})
    except ConfigError as error:
        assert error.variable == variable and "\n" not in str(error)
        return
    for number in (
        read.fetch_timeout,
        read.send_per_second,
        read.send_per_chat_second,
        read.send_per_group_minute,
    ):
        assert math.isfinite(number) and number > 0
    assert 0 <= read.http_port <= 65535
    assert all(0 < abs(chat) < 2**52 for chat in read.allowed_chats or ())
    for url in (read.telegram_api_url, read.reddit_url, read.redis_url or "redis://r"):
        parts = urlsplit(url)
        assert parts.port is None or 1 <= parts.port <= 65535
        assert parts.hostname or parts.scheme == "unix"
