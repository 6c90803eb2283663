"""The `newsbot` command as a user runs it: a real process, real Redis, the fakes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import ROOT, BotProcess, bot_env

CHAT = 515


def newsbot(*args: str, env: dict[str, str] | None = None, stdin: str = "",
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m newsbot ARGS` with only the given configuration."""
    full_env = {key: value for key, value in os.environ.items()
                if not key.startswith(("NEWSBOT_", "TELEGRAM_", "REDIS_", "REDDIT_", "NBT_"))}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "newsbot", *args], input=stdin,
                          capture_output=True, text=True, env=full_env, timeout=timeout)


@pytest.mark.parametrize("variable, value", [
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
])
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
        env = bot_env(telegram, redis_url, news, NEWSBOT_LOG_LEVEL="DEBUG",
                      NEWSBOT_LOG_FORMAT=log_format)
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
        telegram, news, redis_url):
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
    result = newsbot("console", env={"REDDIT_URL": news.url},
                     stdin="/source python\n/fetch\n/subscribe 5m\n")
    assert result.returncode == 0, result.stderr
    assert "Your sources are now:\n• python" in result.stdout
    assert "Python 3.13.1 released" in result.stdout
    assert "The shortest interval is 15 minutes." in result.stdout
    assert "\npython\n• " in result.stdout  # the HTML heading shown as plain text


def test_console_says_why_a_source_cannot_be_reached():
    # Nothing listens on the discard port: a clear one-line reason, no traceback.
    result = newsbot("console", env={"REDDIT_URL": "http://127.0.0.1:9"},
                     stdin="/source python\n/fetch\n")
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
