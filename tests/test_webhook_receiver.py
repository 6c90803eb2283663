"""The webhook receiver in-process, on the session redis-server: what each push is answered.

The replicas' HTTP side is tested end to end in test_webhook.py; here the same
``Webhook.receive`` the health server calls, with the stream it writes to read back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from harness import free_port, text_update
from newsbot import keys
from newsbot.webhook import Webhook, parse_update, webhook_path

SECRET = "s3cret-token_of-the-bot"
URL = "https://bot.example.org/telegram/hook"


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


async def stored_ids(redis: aioredis.Redis) -> list[int]:
    entries = await redis.xrange(keys.UPDATES)
    return [json.loads(fields["update"])["update_id"] for _, fields in entries]


async def test_a_push_is_stored_once_however_often_it_comes(redis):
    webhook = Webhook(redis, URL, SECRET)
    assert await webhook.receive(SECRET, body(text_update(7))) == (200, "ok")
    assert await webhook.receive(SECRET, body(text_update(7))) == (200, "ok")  # Telegram's retry
    assert await webhook.receive(SECRET, body(text_update(8))) == (200, "ok")
    assert await stored_ids(redis) == [7, 8]


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET[:-1], SECRET + "x", "ünïcode"])
async def test_a_wrong_secret_is_401_and_stores_nothing(redis, secret):
    webhook = Webhook(redis, URL, SECRET)
    assert await webhook.receive(secret, body(text_update(9))) == (401, "unauthorized")
    assert await webhook.receive(SECRET, body(text_update(10))) == (200, "ok")  # a later event
    assert await stored_ids(redis) == [10]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"update"',
        body({"message": {}}),
        body({"update_id": "7"}),
        body({"update_id": True}),
        body({"update_id": -1}),
        body({"update_id": 1.5}),
    ],
)
async def test_a_body_that_is_not_an_update_is_400_and_stored_nowhere(redis, raw):
    webhook = Webhook(redis, URL, SECRET)
    assert await webhook.receive(SECRET, raw) == (400, "not an update")
    assert await webhook.receive(SECRET, body(text_update(11))) == (200, "ok")
    assert await stored_ids(redis) == [11]


async def test_redis_away_is_503_so_telegram_retries_and_nothing_is_lost(redis_url):
    away = aioredis.Redis(port=free_port(), socket_connect_timeout=1, decode_responses=True)
    try:
        answer = await Webhook(away, URL, SECRET).receive(SECRET, body(text_update(12)))
    finally:
        await away.aclose()
    assert answer == (503, "try again")
    # Telegram's retry reaches a replica whose Redis answers: stored then, once.
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await Webhook(client, URL, SECRET).receive(SECRET, body(text_update(12))) == (
            200,
            "ok",
        )
        assert await stored_ids(client) == [12]
    finally:
        await client.aclose()


async def test_each_stored_update_names_its_chats_previous_one(redis):
    webhook = Webhook(redis, URL, SECRET)
    for update_id, chat in [(20, 1), (21, 2), (22, 1)]:
        assert await webhook.receive(SECRET, body(text_update(update_id, chat))) == (200, "ok")
    entries = {
        json.loads(f["update"])["update_id"]: f for _, f in await redis.xrange(keys.UPDATES)
    }
    assert entries[22]["after"] == "20"
    assert not entries[21].get("after")


def test_the_path_is_the_public_urls_and_parse_keeps_the_update_whole():
    assert webhook_path(URL) == "/telegram/hook"
    assert webhook_path("https://bot.example.org") == "/"
    assert parse_update(body(text_update(5))) == text_update(5)
