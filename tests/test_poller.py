"""The poller against the fake Telegram and a real redis-server.

What Telegram sends goes into the stream as it was sent: one update the library cannot
parse must neither block the batch nor keep the offset from moving on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from telegram import Bot

from cluster_support import OLD_API_POLL
from newsbot import keys
from newsbot.cluster.poller import Poller, chat_id


@pytest.fixture
async def poller(telegram, redis) -> AsyncIterator[Poller]:
    bot = Bot(telegram.token, base_url=f"{telegram.url}/bot")
    poller = Poller(bot, redis, "host-1-abc", poll_timeout=0)
    await poller.request.initialize()
    yield poller
    await poller.request.shutdown()


async def stream(redis: aioredis.Redis) -> list[dict[str, str]]:
    return [fields for _, fields in await redis.xrange(keys.UPDATES)]


def test_the_old_api_poll_really_is_unreadable_for_the_library():
    from telegram import Update

    with pytest.raises(TypeError, match="persistent_id"):
        Update.de_json({"update_id": 1, **OLD_API_POLL}, None)


async def test_an_unreadable_update_goes_into_the_stream_as_sent_and_the_offset_moves_on(
    telegram, redis, poller
):
    poll_id = telegram.push_update(OLD_API_POLL)
    message_id = telegram.push_message(42, "/help")

    assert await poller.run_once() == 2
    poll, message = await stream(redis)
    assert json.loads(poll["update"]) == {"update_id": poll_id, **OLD_API_POLL}
    assert poll["chat_id"] == "0"
    assert message["update_id"] == str(message_id) and message["chat_id"] == "42"
    assert await redis.get(keys.OFFSET) == str(message_id + 1)

    # The next poll confirms both to Telegram, which forgets them.
    assert await poller.run_once() == 0
    assert telegram.confirmed_offset == message_id + 1
    assert telegram.pending_updates == 0


async def test_each_entry_names_its_chats_previous_update_and_entry(telegram, redis, poller):
    first = telegram.push_message(42, "/source python")
    telegram.push_message(43, "/help")
    telegram.push_message(42, "/fetch")
    await poller.run_once()
    entries = await redis.xrange(keys.UPDATES)
    (first_id, _), _, (_, third) = entries
    assert third["after"] == str(first) and third["after_entry"] == first_id
    assert entries[0][1]["after"] == "" and entries[1][1]["after_entry"] == ""


async def test_an_update_without_an_id_is_skipped_and_the_others_appended(redis, poller):
    await poller.append(
        [
            {"message": {"chat": {"id": 1}}},
            {"update_id": "7"},
            {"update_id": 8, "message": {"chat": {"id": 1}}},
        ]
    )
    (only,) = await stream(redis)
    assert only["update_id"] == "8"
    assert await redis.get(keys.OFFSET) == "9"


async def test_telegram_errors_are_mapped_and_polling_goes_on(telegram, redis, poller):
    poller.error_backoff = 0.01
    telegram.fail_next("getUpdates", 409, "Conflict: terminated by other getUpdates request")
    assert await poller.run_once() == 0
    telegram.fail_next("getUpdates", 502)
    assert await poller.run_once() == 0
    telegram.push_message(42, "/help")
    assert await poller.run_once() == 1


@pytest.mark.parametrize(
    "update, expected",
    [
        ({"message": {"chat": {"id": 42}}}, 42),
        ({"edited_channel_post": {"chat": {"id": -1001}}}, -1001),
        ({"callback_query": {"id": "1", "message": {"chat": {"id": 7}}}}, 7),
        ({"my_chat_member": {"chat": {"id": -5}, "from": {"id": 3}}}, -5),
        ({"message_reaction": {"chat": {"id": 9}}}, 9),
        ({"inline_query": {"id": "1", "from": {"id": 3}}}, 0),
        (OLD_API_POLL, 0),
        ({"message": {"chat": {"id": "42"}}}, 0),  # not a number: not trusted
        ({"message": {"chat": {"id": True}}}, 0),
        ({"message": {"chat": "42"}}, 0),
        ({"message": None, "callback_query": {"message": []}}, 0),
    ],
)
def test_the_chat_id_is_read_defensively(update, expected):
    assert chat_id({"update_id": 1, **update}) == expected
