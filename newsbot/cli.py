"""The `newsbot` command: run, console, fetch, check.

The environment is read here, once. Bad configuration ends the program with one line
naming the variable and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence

from newsbot import __version__, render
from newsbot.config import Settings, redis_location
from newsbot.errors import ConfigError
from newsbot.logs import configure_logging, redact

EXIT_CONFIG = 2


def parser() -> argparse.ArgumentParser:
    """The command line, with --help for each command."""
    top = argparse.ArgumentParser(
        prog="newsbot",
        description="A Telegram bot that brings you the news you choose: "
        "subreddits and RSS, Atom and JSON feeds. "
        "Configured by environment variables (see README).",
    )
    top.add_argument("--version", action="version", version=f"newsbot {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "run",
        help="run the bot against Telegram (the default)",
        description="Run the bot against Telegram. Needs TELEGRAM_TOKEN.",
    )
    commands.add_parser(
        "console",
        help="chat with the bot in this terminal, no token needed",
        description="Chat with the bot in the terminal: the same commands "
        "and state, no Telegram account or token needed.",
    )
    fetch = commands.add_parser(
        "fetch",
        help="print the current news for sources",
        description="Print the current news for sources, e.g. "
        "newsbot fetch r/python https://example.org/feed.xml",
    )
    fetch.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="a subreddit (python, r/python) or a feed URL"
    )
    commands.add_parser(
        "check",
        help="check the configuration and reach Redis and Telegram",
        description="Validate the configuration and reach Redis and "
        "Telegram; exit non-zero with a one-line reason if something fails.",
    )
    return top


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the console script."""
    args = parser().parse_args(argv)
    command = args.command or "run"
    try:
        settings = Settings.from_env(os.environ if environ is None else environ)
        configure_logging(settings.log_level, settings.log_format, settings.secrets)
        if command == "run":
            return run(settings)
        if command == "console":
            from newsbot.console import chat

            asyncio.run(chat(settings))
            return 0
        if command == "fetch":
            return asyncio.run(fetch(settings, args.sources))
        return asyncio.run(check(settings))
    except ConfigError as error:
        print(f"newsbot: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def run(settings: Settings) -> int:
    """`newsbot run`."""
    if settings.telegram_token is None:
        raise ConfigError(
            "TELEGRAM_TOKEN",
            "TELEGRAM_TOKEN is not set: get a token from "
            "@BotFather, or try `newsbot console`, which needs none",
        )
    from newsbot.service import serve

    try:
        import uvloop
    except ImportError:  # no uvloop for Windows (pyproject): the stock loop does the same
        asyncio.run(serve(settings))
    else:
        # uvloop's event loop costs a replica less CPU for every socket it reads and
        # writes, Telegram's and Redis' (the README's benchmark (a)).
        uvloop.run(serve(settings))
    return 0


async def fetch(settings: Settings, words: Sequence[str]) -> int:
    """`newsbot fetch`: print news as plain text; exit 1 if any source failed."""
    from newsbot.core import open_core

    async with open_core(settings) as core:  # no token: no application
        sources, refused = await core.checker.check_words(" ".join(words))
        results = await core.news.get(sources)
    for message in render.render_news(results):
        print(render.to_plain(message))
    for word, reason in refused:
        print(f"⚠️ {word}: {reason}")
    failed = bool(refused) or any(result.error for result in results)
    return 1 if failed else 0


async def check(settings: Settings) -> int:
    """`newsbot check`: configuration, Redis and Telegram, one line each."""
    from redis.asyncio.sentinel import MasterNotFoundError
    from telegram import Bot
    from telegram.error import TelegramError

    from newsbot.core import open_store
    from newsbot.store import sentinel_master

    print("configuration: ok")
    if settings.redis_url:
        where = redis_location(settings.redis_url)  # never the URL: it may hold a password
        async with open_store(settings) as store:
            try:
                master = await sentinel_master(store.redis)
            except MasterNotFoundError:
                print(f"newsbot: no sentinel names a master: {where} (REDIS_URL)", file=sys.stderr)
                return 1
            reachable = await store.ping()
        if master is not None:
            where = f"{where}: master at {master[0]}:{master[1]}"
        if not reachable:
            print(f"newsbot: Redis at {where} does not answer (REDIS_URL)", file=sys.stderr)
            return 1
        print(f"redis: ok ({where})")
    else:
        print("redis: REDIS_URL not set; the embedded in-process store will be used")
    if settings.telegram_token is None:
        print("telegram: TELEGRAM_TOKEN not set (needed by `newsbot run`)")
        return 0
    try:
        async with Bot(
            settings.telegram_token, base_url=f"{settings.telegram_api_url}/bot"
        ) as bot:
            print(f"telegram: ok (@{bot.username})")
            info = await bot.get_webhook_info()
            print(
                webhook_line(
                    info.url,
                    info.pending_update_count,
                    info.last_error_message,
                    settings.webhook_url,
                )
            )
    except TelegramError as error:
        print(
            f"newsbot: Telegram refused or cannot be reached: "
            f"{redact(str(error), settings.secrets)}",
            file=sys.stderr,
        )
        return 1
    return 0


def webhook_line(url: str, pending: int, last_error: str | None, configured: str | None) -> str:
    """What getWebhookInfo says, in one line: the URL, the pending count, the last error.

    ``configured`` is NEWSBOT_WEBHOOK_URL: a webhook other than it (or one set while the
    bot is to poll) is pointed out, since the leader replaces or deletes it at start.
    """
    if not url:
        line = f"webhook: none set (polling); {pending} updates pending"
    else:
        line = f"webhook: {url}; {pending} updates pending"
    if last_error:
        line += f"; last error: {last_error}"
    if configured and url != configured:
        line += f" (NEWSBOT_WEBHOOK_URL is {configured}: the leader sets it at start)"
    elif not configured and url:
        line += " (NEWSBOT_WEBHOOK_URL is not set: the leader deletes it at start)"
    return line
