"""How an update's handling went, as the consumer is told: the real application, driven
one update at a time by ``handle_update``, against the fake Telegram and a real Redis.

Handled, it returns; a reply that must wait out a 429 raises ``Held`` with the wait;
an update that meets a Redis outage raises ``Deferred`` (not ``Held``), and nothing is
said to the user until it is handled again. A deferred update goes no further: a
command whose admin check met an outage is not run without it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cluster_support import RedisProcess
from harness import bot_env
from newsbot import keys
from newsbot.app import Outcomes, build_application, handle_update
from newsbot.config import Settings
from newsbot.errors import Deferred, Held
from newsbot.handlers import App
from newsbot.news import News
from newsbot.store import Store, connect

CHAT = 5151
OTHER = 5252
GROUP = -100515151
MALLORY = 777


def message(
    update_id: int, text: str, chat_id: int = CHAT, user_id: int | None = None
) -> dict[str, Any]:
    """The update Telegram sends for a command typed in a private chat (or a group)."""
    user = {"id": user_id or chat_id, "is_bot": False, "first_name": "Ada", "username": "ada"}
    chat: dict[str, Any] = {"id": chat_id, "type": "private", "first_name": "Ada"}
    if chat_id < 0:
        chat = {"id": chat_id, "type": "supergroup", "title": "A group"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(time.time()),
            "text": text,
            "chat": chat,
            "from": user,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
        },
    }


@dataclass
class Bot:
    application: App
    outcomes: Outcomes

    async def handle(self, update: dict[str, Any]) -> None:
        await handle_update(self.application, self.outcomes, update)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server this test may stop and start."""
    with RedisProcess(tmp_path, appendonly=False) as server:
        yield server


@contextlib.asynccontextmanager
async def started(settings: Settings, rate_limited: bool = True) -> AsyncIterator[Bot]:
    """The application as a replica builds it, initialized against the fake Telegram."""
    store = Store(connect(settings), settings.items_per_source)
    news = News(settings, store)
    outcomes = Outcomes()
    assert settings.telegram_token is not None
    application = build_application(
        settings,
        store,
        news,
        settings.telegram_token,
        rate_limited=rate_limited,
        outcomes=outcomes,
    )
    await application.initialize()
    try:
        yield Bot(application, outcomes)
    finally:
        await application.shutdown()
        news.close()
        await store.close()


@pytest.fixture
async def bot(telegram: Any, redis_url: str) -> AsyncIterator[Bot]:
    async with started(Settings.from_env(bot_env(telegram, redis_url))) as running:
        yield running


async def test_a_handled_update_returns_and_leaves_no_report(telegram: Any, bot: Bot) -> None:
    await bot.handle(message(1, "/help"))
    (reply,) = telegram.sent(CHAT)
    assert reply.displayed.startswith("Newsbot brings you the news you choose")
    assert len(bot.outcomes) == 0


async def test_a_reply_that_meets_a_long_429_is_held_with_its_wait(
    telegram: Any, bot: Bot
) -> None:
    telegram.flood_chat(CHAT, 60)
    with pytest.raises(Held) as held:
        await bot.handle(message(1, "/help"))
    # Longer than a worker may wait, so not waited out in hand; at most what Telegram said.
    assert keys.RATE_MAX_WAIT_MS / 1000 < held.value.wait_seconds <= 60
    # Another chat is answered meanwhile, and the held chat got nothing, not an apology.
    await bot.handle(message(2, "/help", OTHER))
    assert len(telegram.sent(OTHER)) == 1
    assert telegram.sent(CHAT) == []
    assert len(bot.outcomes) == 0


async def test_an_update_that_meets_a_redis_outage_is_deferred_then_answered(
    telegram: Any, own_redis: RedisProcess
) -> None:
    settings = Settings.from_env(bot_env(telegram, own_redis.url))
    async with started(settings) as bot:
        await bot.handle(message(1, "/help"))
        own_redis.stop()
        with pytest.raises(Deferred) as deferred:
            await bot.handle(message(2, "/help"))
        assert not isinstance(deferred.value, Held)  # an outage, with no wait to honour
        own_redis.start()
        # Handled again once Redis is back: the real answer, and no apology before it.
        await bot.handle(message(2, "/help"))
        replies = [sent.displayed for sent in telegram.sent(CHAT)]
        assert len(replies) == 2 and replies[0] == replies[1]
        assert len(bot.outcomes) == 0


async def test_a_group_command_whose_admin_check_meets_an_outage_is_deferred_not_run(
    telegram: Any, redis_url: str
) -> None:
    telegram.make_chat(GROUP, "supergroup")
    telegram.set_member(GROUP, MALLORY, "member")
    # Telegram fails the gate's getChatMember once (no limiter here: it would retry it).
    telegram.fail_next("getChatMember", 502)
    settings = Settings.from_env(bot_env(telegram, redis_url))
    async with started(settings, rate_limited=False) as bot:
        with pytest.raises(Deferred):
            await bot.handle(message(1, "/source python", GROUP, MALLORY))
        # Handled again, the gate has its say; the list was never set meanwhile.
        await bot.handle(message(1, "/source python", GROUP, MALLORY))
        await bot.handle(message(2, "/sources", GROUP, MALLORY))
    shown = [sent.displayed for sent in telegram.sent(GROUP)]
    assert len(shown) == 2, shown  # no "Your sources are now" before the refusal
    refusal, listing = shown
    assert refusal == "Only this group's admins can change that."
    assert listing.startswith("You have no sources.")
