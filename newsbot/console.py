"""`newsbot console`: chat with the bot in a terminal, no Telegram account needed.

The same handlers and store as in Telegram: only the Bot API is replaced, by a request
object that answers ``getMe`` itself and prints what ``sendMessage`` would have sent.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, TextIO

from telegram.request import BaseRequest, RequestData

from newsbot import render
from newsbot.config import Settings
from newsbot.core import Core, open_core
from newsbot.digests import Digests
from newsbot.errors import Deferred

# Telegram wants a token of this shape; it is never sent anywhere.
CONSOLE_TOKEN = "0:console"  # noqa: S105 (a placeholder, not a secret)
CHAT_ID = 1
BOT_USER = {"id": 1, "is_bot": True, "first_name": "Newsbot", "username": "newsbot"}
PROMPT = "you> "


class ConsoleRequest(BaseRequest):
    """A Bot API that lives in the terminal: replies are printed, not sent."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.message_id = 0

    async def initialize(self) -> None:
        """Nothing to connect to."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    @property
    def read_timeout(self) -> float | None:
        return None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[int, bytes]:
        endpoint = url.rsplit("/", 1)[-1]
        params = request_data.parameters if request_data else {}
        result: Any = True
        if endpoint == "getMe":
            result = BOT_USER
        elif endpoint == "sendMessage":
            self.message_id += 1
            text = str(params.get("text", ""))
            self.out.write("\n" + render.to_plain(text) + "\n\n")
            self.out.flush()
            result = {
                "message_id": self.message_id,
                "date": int(time.time()),
                "chat": {"id": params.get("chat_id"), "type": "private"},
                "from": BOT_USER,
                "text": render.to_plain(text),
            }
        return 200, json.dumps({"ok": True, "result": result}).encode()


def message_update(update_id: int, text: str) -> dict[str, Any]:
    """The update Telegram would send for a text typed in a private chat."""
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": int(time.time()),
        "text": text,
        "chat": {"id": CHAT_ID, "type": "private", "first_name": "you"},
        "from": {"id": CHAT_ID, "is_bot": False, "first_name": "you"},
    }
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0]
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    return {"update_id": update_id, "message": message}


async def chat(settings: Settings, lines: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
    """Read commands from ``lines`` until end of input, printing the bot's replies."""
    async with open_core(
        settings, CONSOLE_TOKEN, request=ConsoleRequest(out), rate_limited=False
    ) as core:
        await _converse(core, settings, lines, out)


async def _converse(core: Core, settings: Settings, lines: TextIO, out: TextIO) -> None:
    """The console's loop: a line read, an update handled, until end of input."""
    application = core.bot_application
    stop = asyncio.Event()
    await application.initialize()
    digests = asyncio.create_task(Digests(core.store, core.news, application.bot).run(stop))
    where = "Redis at REDIS_URL" if settings.redis_url else "memory (set REDIS_URL to keep it)"
    out.write(
        f"Newsbot console: type /help, or /source python then /fetch. "
        f"State is kept in {where}. Ctrl-D quits.\n"
    )
    try:
        # Unique across sessions, like Telegram's: a kept store remembers which replies
        # of which update went out (keys.PARTS_SENT), and must not take a new /help for
        # an old one.
        update_id = time.time_ns() // 1_000_000
        while True:
            if lines.isatty():
                out.write(PROMPT)
                out.flush()
            line = await asyncio.to_thread(lines.readline)
            if not line:
                break
            if line.strip():
                update_id += 1
                try:
                    await core.handle(message_update(update_id, line.strip()))
                except Deferred as error:
                    # Redis is away (or Telegram's stand-in held it): no answer now.
                    out.write(f"\n(no answer now: {error}; try again)\n\n")
    finally:
        stop.set()
        await digests
