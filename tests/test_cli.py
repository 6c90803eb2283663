"""The `newsbot` command as a user runs it: a real process, real Redis, the fakes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness import REDIS_SERVER, ROOT, BotProcess, bot_env, free_port, stop_process

CHAT = 515


def newsbot(
    *args: str, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python -m newsbot ARGS` with only the given configuration."""
    full_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NEWSBOT_", "TELEGRAM_", "REDIS_", "REDDIT_", "NBT_"))
    }
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "newsbot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "variable, value",
    [
        ("NEWSBOT_ITEMS_PER_SOURCE", "many"),
        ("NEWSBOT_MAX_SOURCES", "0"),
        ("NEWSBOT_CACHE_TTL", "-1"),
        ("NEWSBOT_MIN_INTERVAL", "1.5"),
        ("NEWSBOT_ALLOW_PRIVATE_URLS", "maybe"),
        ("NEWSBOT_ALLOWED_CHATS", "me, you"),
        ("NEWSBOT_HTTP_PORT", "99999"),
        ("NEWSBOT_LOG_LEVEL", "LOUD"),
        ("NEWSBOT_LOG_FORMAT", "xml"),
        ("TELEGRAM_API_URL", "api.telegram.org"),
        ("REDDIT_URL", "ftp://reddit.com"),
        ("REDIS_URL", "localhost:6379"),
    ],
)
def test_a_bad_variable_stops_the_bot_with_one_line_naming_it(variable, value):
    result = newsbot("run", env={"TELEGRAM_TOKEN": "123:abc", variable: value})
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0] and "Traceback" not in result.stderr


def test_run_without_a_token_says_how_to_get_one():
    result = newsbot("run")
    assert result.returncode == 2
    assert "TELEGRAM_TOKEN" in result.stderr and "@BotFather" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_malformed_token_is_named_but_never_printed():
    secret = "not-a-token-but-a-secret"
    result = newsbot("run", env={"TELEGRAM_TOKEN": secret})
    assert result.returncode == 2 and "TELEGRAM_TOKEN" in result.stderr
    assert secret not in result.stderr + result.stdout


def test_a_token_telegram_refuses_stops_the_bot_with_one_line(telegram):
    env = bot_env(telegram, None, TELEGRAM_TOKEN="999:wrong-token")
    result = newsbot("run", env=env)
    assert result.returncode == 2
    assert "TELEGRAM_TOKEN was refused by Telegram" in result.stderr.splitlines()[-1]
    assert "wrong-token" not in result.stderr


def test_every_command_has_help():
    for command in ("run", "console", "fetch", "check"):
        result = newsbot(command, "--help")
        assert result.returncode == 0 and "usage: newsbot" in result.stdout


def test_the_token_appears_in_no_log_line_even_at_debug(telegram, news, redis_url):
    for log_format in ("text", "json"):
        env = bot_env(
            telegram, redis_url, news, NEWSBOT_LOG_LEVEL="DEBUG", NEWSBOT_LOG_FORMAT=log_format
        )
        bot = BotProcess(env)
        try:
            before = len(telegram.sent(CHAT))
            telegram.push_message(CHAT, "/source python")
            telegram.push_message(CHAT, "/fetch")
            telegram.wait_for_sent(before + 2, CHAT, timeout=30)
            assert bot.terminate() == 0
            output = bot.output
        finally:
            bot.close()
        assert "getUpdates" in output  # DEBUG logging really was on
        assert telegram.token not in output
        assert telegram.token.split(":", 1)[1] not in output


def test_sigterm_exits_0_and_a_restart_keeps_sources_and_repeats_no_update(
    telegram, news, redis_url
):
    env = bot_env(telegram, redis_url, news)
    first = BotProcess(env)
    try:
        telegram.push_message(CHAT, "/source python, golang")
        telegram.wait_for_sent(1, CHAT, timeout=30)
        started = time.monotonic()
        assert first.terminate() == 0
        assert time.monotonic() - started < 10
    finally:
        first.close()
    telegram.push_message(CHAT, "/sources")  # arrives while no bot runs
    second = BotProcess(env)
    try:
        replies = telegram.wait_for_sent(2, CHAT, timeout=30)
        time.sleep(2)  # time enough for a wrongly repeated update to be answered
        assert second.terminate() == 0
    finally:
        second.close()
    assert [m.displayed for m in telegram.sent(CHAT)] == [
        "Your sources are now:\n• python\n• golang",
        "Your sources:\n• python\n• golang",
    ]
    assert replies


def test_console_needs_no_token(news):
    result = newsbot(
        "console", env={"REDDIT_URL": news.url}, stdin="/source python\n/fetch\n/subscribe 5m\n"
    )
    assert result.returncode == 0, result.stderr
    assert "Your sources are now:\n• python" in result.stdout
    assert "Python 3.13.1 released" in result.stdout
    assert "The shortest interval is 15 minutes." in result.stdout
    assert "\npython\n• " in result.stdout  # the HTML heading shown as plain text


def test_console_says_why_a_source_cannot_be_reached():
    # Nothing listens on the discard port: a clear one-line reason, no traceback.
    result = newsbot(
        "console", env={"REDDIT_URL": "http://127.0.0.1:9"}, stdin="/source python\n/fetch\n"
    )
    assert result.returncode == 0
    assert "⚠️ python: could not connect" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_fetch_prints_news_and_fails_on_a_bad_source(news):
    feed = f"{news.url}/feeds/atom.xml"
    env = {"REDDIT_URL": news.url, "NEWSBOT_ALLOW_PRIVATE_URLS": "true"}
    result = newsbot("fetch", "r/python", feed, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "r/python" in result.stdout and feed in result.stdout
    assert "https://www.reddit.com/r/Python/comments/" in result.stdout
    result = newsbot("fetch", "python", "ftp://example.org/feed", env=env)
    assert result.returncode == 1
    assert "⚠️ ftp://example.org/feed: only http:// and https:// feeds" in result.stdout


def test_fetch_prints_the_good_sources_news_beside_the_reason_for_a_refused_one(news):
    # Private URLs are not allowed here: the guard refuses the loopback feed before any
    # request, and the subreddit (the operator's Reddit address, on the same fake
    # server) is fetched all the same.
    refused = f"{news.url}/feeds/atom.xml"
    result = newsbot("fetch", "r/python", refused, env={"REDDIT_URL": news.url})
    assert result.returncode == 1
    assert "https://www.reddit.com/r/Python/comments/" in result.stdout
    assert f"⚠️ {refused}: the address is private or local, which is not allowed" in result.stdout
    assert news.count("/feeds/") == 0 and news.count("/") > 0


def test_check_reaches_redis_and_telegram(telegram, redis_url):
    result = newsbot("check", env=bot_env(telegram, redis_url))
    assert result.returncode == 0, result.stderr
    assert "redis: ok" in result.stdout and "telegram: ok (@newsbot_test_bot)" in result.stdout
    result = newsbot("check", env=bot_env(telegram, "redis://127.0.0.1:9/0"))
    assert result.returncode == 1
    assert result.stderr.strip() == "newsbot: Redis at 127.0.0.1 does not answer (REDIS_URL)"


def test_python_dash_m_and_the_console_script_agree():
    result = newsbot("--version")
    assert result.returncode == 0
    from newsbot import __version__

    assert result.stdout.strip() == f"newsbot {__version__}"
    assert (Path(ROOT) / "newsbot" / "__main__.py").exists()


# --- strict configuration: one line and exit 2, never a traceback ------------------------


@pytest.mark.parametrize(
    "variable, value",
    [
        ("NEWSBOT_SEND_PER_SECOND", "1e-300"),
        ("NEWSBOT_SEND_PER_SECOND", "0.0001"),
        ("NEWSBOT_SEND_PER_SECOND", "nan"),
        ("NEWSBOT_SEND_PER_CHAT_SECOND", "inf"),
        ("NEWSBOT_ALLOWED_CHATS", "1,,2"),
        ("NEWSBOT_ALLOWED_CHATS", str(2**63)),
        ("TELEGRAM_TOKEN", "123456789:" + "A" * 9990),
        ("TELEGRAM_API_URL", "http://127.0.0.1:99999"),
        ("REDDIT_URL", "http://exa mple.org"),
        ("REDIS_URL", "redis://127.0.0.1:99999/0"),
        ("REDIS_URL", "redis://127.0.0.1:6379/99"),
        ("REDIS_URL", "redis://127.0.0.1:6379/0?socket_timeout=soon"),
        ("REDIS_URL", "redis://127.0.0.1:6379/0?nosuchoption=1"),
    ],
)
@pytest.mark.parametrize("command", ["run", "check"])
def test_an_out_of_range_or_malformed_value_is_one_line_and_exit_2(command, variable, value):
    result = newsbot(command, env={"TELEGRAM_TOKEN": "123:abc", variable: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "AAAAAAAAAA" not in result.stderr


def test_a_busy_health_port_is_one_line_and_exit_2(telegram, redis_url):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = newsbot("run", env=bot_env(telegram, redis_url, NEWSBOT_HTTP_PORT=str(port)))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"newsbot: NEWSBOT_HTTP_PORT={port} cannot be used: Address already in use"
    ], result.stderr


# --- secrets in every form of URL ----------------------------------------------------------

REDIS_PASSWORD = "Red1s!pw-7f3a"  # as redis-server knows it
REDIS_PASSWORD_IN_URL = "Red1s%21pw-7f3a"  # as written in a URL
API_PASSWORD = "api-userinfo-pw-91c2"


@pytest.fixture
def locked_redis() -> Iterator[tuple[int, str]]:
    """A redis-server with a password, on a TCP port and a unix socket."""
    directory = tempfile.mkdtemp(prefix="nb-redis-", dir="/tmp")  # socket paths are short
    socket_path = os.path.join(directory, "redis.sock")
    port = free_port()
    process = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
            "--unixsocket",
            socket_path,
            "--requirepass",
            REDIS_PASSWORD,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(unix_socket_path=socket_path, password=REDIS_PASSWORD)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        client.close()
        yield port, socket_path
    finally:
        stop_process(process)
        shutil.rmtree(directory, ignore_errors=True)


def _redis_urls(port: int, socket_path: str) -> list[str]:
    return [
        f"unix://:{REDIS_PASSWORD_IN_URL}@{socket_path}",
        f"unix://{socket_path}?password={REDIS_PASSWORD_IN_URL}",
        f"redis://127.0.0.1:{port}/0?password={REDIS_PASSWORD_IN_URL}",
        f"redis://:{REDIS_PASSWORD_IN_URL}@127.0.0.1:{port}/1",
    ]


def _api_url_with_userinfo(telegram) -> str:
    return telegram.url.replace("http://", f"http://newsbot:{API_PASSWORD}@")


def _assert_no_secret(text: str, telegram) -> None:
    for secret in (
        REDIS_PASSWORD,
        REDIS_PASSWORD_IN_URL,
        API_PASSWORD,
        telegram.token,
        telegram.token.split(":", 1)[1],
    ):
        assert secret not in text


def test_check_prints_no_password_of_any_redis_url_form(telegram, locked_redis):
    port, socket_path = locked_redis
    for url in _redis_urls(port, socket_path):
        env = bot_env(
            telegram,
            url,
            TELEGRAM_API_URL=_api_url_with_userinfo(telegram),
            NEWSBOT_LOG_LEVEL="DEBUG",
        )
        result = newsbot("check", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        where = socket_path if url.startswith("unix") else "127.0.0.1"
        assert f"redis: ok ({where})" in result.stdout  # the password was really used
        assert "telegram: ok" in result.stdout
        _assert_no_secret(result.stdout + result.stderr, telegram)
        # And when Redis does not answer, the one-line reason shows no password either.
        wrong = url.replace(REDIS_PASSWORD_IN_URL, "Wrong%21pw-secret")
        result = newsbot("check", env={**env, "REDIS_URL": wrong})
        assert result.returncode == 1
        assert "Wrong" not in result.stdout + result.stderr
        assert "does not answer (REDIS_URL)" in result.stderr


def test_no_password_or_userinfo_reaches_the_debug_log(telegram, locked_redis):
    port, socket_path = locked_redis
    for url in _redis_urls(port, socket_path)[:3]:
        env = bot_env(
            telegram,
            url,
            TELEGRAM_API_URL=_api_url_with_userinfo(telegram),
            NEWSBOT_LOG_LEVEL="DEBUG",
        )
        bot = BotProcess(env)
        try:
            before = len(telegram.sent(CHAT))
            telegram.push_message(CHAT, "/help")
            telegram.wait_for_sent(before + 1, CHAT, timeout=30)
            assert bot.terminate() == 0
            output = bot.output
        finally:
            bot.close()
        assert "getUpdates" in output  # DEBUG logging really was on
        assert "***" in output  # and the API URL with its userinfo was logged, masked
        _assert_no_secret(output, telegram)
