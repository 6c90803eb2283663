"""The baseline of benchmark (a): a bare python-telegram-bot echo bot with run_polling.

Defaults throughout, as in python-telegram-bot's examples/echobot.py: one process, no
Redis, no rate limiter, updates processed one after another. Reads TELEGRAM_TOKEN and
TELEGRAM_API_URL; SIGTERM stops it.

With ``--newsbot-transport`` it talks to Telegram as a Newsbot replica does (aiohttp
beneath python-telegram-bot, on uvloop): the same bot then shows what Newsbot's own
work costs, apart from the transport.
"""

from __future__ import annotations

import asyncio
import os
import sys

from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Send the message's text back to its chat."""
    assert update.effective_chat is not None and update.effective_message is not None
    await context.bot.send_message(update.effective_chat.id, update.effective_message.text)


def main() -> None:
    """Poll the Bot API at TELEGRAM_API_URL until SIGTERM."""
    builder = (
        Application.builder()
        .token(os.environ["TELEGRAM_TOKEN"])
        .base_url(os.environ["TELEGRAM_API_URL"] + "/bot")
    )
    if "--newsbot-transport" in sys.argv[1:]:
        import uvloop

        from newsbot.transport import AiohttpRequest

        asyncio.set_event_loop(uvloop.new_event_loop())
        builder = builder.request(AiohttpRequest(8)).get_updates_request(AiohttpRequest(1))
    application = builder.build()
    application.add_handler(MessageHandler(filters.TEXT, echo))
    application.run_polling(allowed_updates=Update.ALL_TYPES)


if __name__ == "__main__":
    main()
