"""Buttons and the command menu, end to end: the real bot, a real Redis, the fake Telegram.

A press is answered once and edits the pressed message in place; the settings it
changes show in what the chat receives next (/fetch and digests).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis

from cluster_support import close_all, start_replicas, stream_settled
from harness import bot_env, running_bot, wait_sent

DATA = Path(__file__).parent / "data"
CHAT = 4242


async def say(telegram, text: str, chat_id: int = CHAT):
    """Send a message as the user and return the bot's (one) reply as the fake saw it."""
    before = len(telegram.sent(chat_id))
    telegram.push_message(chat_id, text)
    return (await wait_sent(telegram, before + 1, chat_id))[before]


async def press(telegram, message, button: str) -> dict:
    """Press a button of a message and return the answer to the callback query."""
    query = telegram.press(message.chat_id, message.message_id, button)
    return await asyncio.to_thread(telegram.wait_for_answer, query)


def first_link() -> str:
    posts = json.loads((DATA / "reddit_python.json").read_text())["data"]["children"]
    first = next(post["data"] for post in posts if not post["data"].get("stickied"))
    return "https://www.reddit.com" + first["permalink"]  # a post's link is its discussion


async def test_settings_buttons_change_the_settings_and_edit_the_message(
    telegram, news, redis_url
):
    async with running_bot(bot_env(telegram, redis_url, news)):
        menu = await say(telegram, "/settings")
        assert menu.displayed == (
            "Settings\nDigest: off\nLink previews: off\nSilent delivery: off"
        )
        assert telegram.buttons(CHAT, menu.message_id) == [
            "✓ Digest off",
            "Digest 1h",
            "Digest 6h",
            "Digest 1d",
            "Link previews on",
            "✓ Link previews off",
            "Silent on",
            "✓ Silent off",
        ]
        answer = await press(telegram, menu, "Digest 6h")
        assert answer["text"] == "Saved." and not answer.get("show_alert")
        shown = telegram.message(CHAT, menu.message_id)
        assert "Digest: every 6 hours" in shown.displayed
        assert "✓ Digest 6h" in telegram.buttons(CHAT, menu.message_id)
        # The same value again: said so, and the message is left as it is.
        answer = await press(telegram, menu, "Digest 6h")
        assert answer["text"] == "It was already so."
        assert telegram.message(CHAT, menu.message_id) == shown
        await press(telegram, menu, "Digest off")
        reply = await say(telegram, "/unsubscribe")
        assert reply.displayed == "You had no digest."
        # Nothing was sent for the presses: the one menu message was edited in place.
        assert len(telegram.sent(CHAT)) == 2
    answers = [params for name, params in telegram.calls if name == "answerCallbackQuery"]
    assert len(answers) == len(telegram.answers) == 3  # each press answered, once


async def test_previews_and_silence_take_effect_on_fetch_and_digests(telegram, news, redis_url):
    env = bot_env(telegram, redis_url, news, NEWSBOT_MIN_INTERVAL="1")
    async with running_bot(env):
        await say(telegram, "/source python")
        quiet = await say(telegram, "/fetch")
        assert quiet.previews_disabled and not quiet.silent and quiet.preview_url is None
        menu = await say(telegram, "/settings")
        await press(telegram, menu, "Link previews on")
        await press(telegram, menu, "Silent on")
        assert telegram.message(CHAT, menu.message_id).displayed.endswith(
            "Link previews: on\nSilent delivery: on"
        )
        fetched = await say(telegram, "/fetch")
        assert fetched.silent and not fetched.previews_disabled
        assert fetched.preview_url == first_link()
        await say(telegram, "/source python golang")  # golang's items are new
        telegram.push_message(CHAT, "/subscribe 1s")
        digest = (await wait_sent(telegram, len(telegram.sent(CHAT)) + 2, CHAT))[-1]
        assert digest.displayed.startswith("Your digest")
        assert digest.silent and digest.preview_url and not digest.previews_disabled


async def test_source_list_remove_buttons_and_a_stale_press(telegram, news, redis_url):
    long_feed = f"{news.url}/feeds/rss20.xml?" + "x" * 300  # far past 64 bytes of data
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, f"/source python golang r/rust {long_feed}")
        old = await say(telegram, "/source")
        new = await say(telegram, "/sources")
        assert telegram.buttons(CHAT, new.message_id)[:3] == ["✕ python", "✕ golang", "✕ r/rust"]
        for row in new.reply_markup["inline_keyboard"]:
            assert len(row[0]["callback_data"].encode()) <= 64
        answer = await press(telegram, new, "golang")
        assert answer["text"] == "Removed golang."
        edited = telegram.message(CHAT, new.message_id)
        assert edited.displayed == f"Your sources:\n• python\n• r/rust\n• {long_feed}"
        assert "✕ golang" not in telegram.buttons(CHAT, new.message_id)
        # The older listing still shows golang: its press says it is gone, and shows
        # the list as it is now.
        answer = await press(telegram, old, "golang")
        assert answer["text"] == "That source was already removed."
        assert telegram.message(CHAT, old.message_id).displayed == edited.displayed
        await press(telegram, new, long_feed[:20])
        listing = await say(telegram, "/sources")
        assert listing.displayed == "Your sources:\n• python\n• r/rust"


async def test_the_command_menu_is_registered_once_per_deploy(telegram, redis_url):
    async with running_bot(bot_env(telegram, redis_url)):
        await say(telegram, "/help")
    async with running_bot(bot_env(telegram, redis_url)):  # a second replica, same deploy
        await say(telegram, "/help")
    assert telegram.count("setMyCommands") == 3  # three scopes, once
    everyday = [c["command"] for c in telegram.commands("default")]
    assert everyday == ["fetch", "source", "settings", "help"]
    for scope in ("all_chat_administrators", "all_private_chats"):
        every = {c["command"] for c in telegram.commands(scope)}
        assert every == {
            "fetch",
            "source",
            "add",
            "remove",
            "subscribe",
            "unsubscribe",
            "settings",
            "help",
            "stop",
            "start",
            "channels",
        }


@pytest.mark.cluster
def test_three_replicas_answer_each_press_exactly_once(telegram, redis_url):
    chats = range(5001, 5013)
    replicas = start_replicas(telegram, redis_url, 3)
    try:
        for chat in chats:
            telegram.push_message(chat, "/settings")
        menus = {chat: telegram.wait_for_sent(1, chat, timeout=30)[0] for chat in chats}
        presses = ["Digest 6h", "Silent on", "Link previews on", "Digest 1d"]
        # Every other press is delivered twice, as after a lost getUpdates answer.
        queries = [
            telegram.press(chat, menus[chat].message_id, button, twice=chat % 2 == 0)
            for button in presses
            for chat in chats
        ]
        answers = [telegram.wait_for_answer(query, timeout=30) for query in queries]
        with redis.Redis.from_url(redis_url, decode_responses=True) as client:
            assert stream_settled(client), "updates left pending"
        # After the stream settled no late second answer can come any more.
        calls = [p for name, p in telegram.calls if name == "answerCallbackQuery"]
    finally:
        close_all(replicas)
    assert len(calls) == len(queries) == len(telegram.answers)
    assert [answer["text"] for answer in answers] == ["Saved."] * len(queries)
    for chat in chats:
        shown = telegram.message(chat, menus[chat].message_id).displayed
        assert shown == (
            "Settings\nDigest: every 1 day\nLink previews: on\nSilent delivery: on"
        ), chat


async def test_a_press_is_answered_even_when_its_message_cannot_be_edited(telegram, redis_url):
    async with running_bot(bot_env(telegram, redis_url)):
        menu = await say(telegram, "/settings")
        telegram.fail_next("editMessageText", 400, "Bad Request: message can't be edited")
        answer = await press(telegram, menu, "Silent on")
        assert answer["text"] == "Saved."
        shown = await say(telegram, "/settings")
        assert "Silent delivery: on" in shown.displayed
