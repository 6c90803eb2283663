"""Groups run by admins, end to end: the real bot, a real Redis, the fake Telegram.

Members of a group may read (``/help``, ``/fetch``, the listings, ``/settings``); only
its administrators (or an anonymous admin posting as the group) may change anything,
by command or by button. Telegram is asked once per user per cache window.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from harness import bot_env, running_bot, wait_sent

GROUP = -100123456789
REFUSAL = "Only this group's admins can change that."
PRESS_REFUSAL = "Only this group's admins can change its settings."


async def say(
    telegram, text: str, chat_id: int = GROUP, username: str = "alice", replies: int = 1, **options
) -> list[str]:
    """Send a message as a user and return the displayed text of the new replies."""
    before = len(telegram.sent(chat_id))
    telegram.push_message(chat_id, text, username=username, **options)
    sent = await wait_sent(telegram, before + replies, chat_id)
    return [message.displayed for message in sent[before:]]


def make_admin(telegram, username: str, status: str = "administrator") -> int:
    user_id = telegram.user_id(GROUP, username)
    telegram.set_member(GROUP, user_id, status, username=username)
    return user_id


async def test_a_member_can_change_nothing_in_a_group_by_any_command_or_button(
    telegram, news, redis_url
):
    make_admin(telegram, "boss")
    async with running_bot(bot_env(telegram, redis_url, news)):
        (reply,) = await say(telegram, "/source python", username="boss")
        assert reply == "Your sources are now:\n• python"
        (reply,) = await say(telegram, "/subscribe 6h", username="boss")
        assert "every 6 hours" in reply
        changes = [
            "/source golang",
            "/sources golang",
            "/add golang",
            "/remove python",
            "/subscribe 1d",
            "/unsubscribe",
            "/stop",
            "/add@newsbot_test_bot rust",
            "/Stop@newsbot_test_bot",
            "/filter python -rust",
            "/filter * off",
            "/tz Europe/Berlin",
            "/quiet 22:00-07:00",
            "/quiet off",
            "/import",
        ]
        for command in changes:
            (reply,) = await say(telegram, command, username="mallory")
            assert reply == REFUSAL, command
        # A file captioned /import is the command too.
        before = len(telegram.sent(GROUP))
        opml = b'<opml version="2.0"><body><outline xmlUrl="https://example.org/f"/></body></opml>'
        telegram.push_document(
            GROUP, data=opml, file_name="feeds.opml", caption="/import", username="mallory"
        )
        assert (await wait_sent(telegram, before + 1, GROUP))[-1].displayed == REFUSAL
        # The buttons refuse her too, with an alert, and the messages stay as they were.
        await say(telegram, "/settings", username="mallory")
        settings = telegram.sent(GROUP)[-1]
        (listing,) = await say(telegram, "/source", username="mallory")
        source_list = telegram.sent(GROUP)[-1]
        for message, button in (
            (settings, "Digest off"),
            (settings, "Silent on"),
            (settings, "Link previews on"),
            (source_list, "python"),
        ):
            query = telegram.press(GROUP, message.message_id, button, username="mallory")
            answer = await _answer(telegram, query)
            assert answer.get("show_alert") is True and answer["text"] == PRESS_REFUSAL
            assert telegram.message(GROUP, message.message_id) == message
        # Everything is as the admin left it; reading was never refused.
        (listing,) = await say(telegram, "/sources", username="mallory")
        assert listing == "Your sources:\n• python"
        (shown,) = await say(telegram, "/settings", username="mallory")
        assert "Digest: every 6 hours" in shown and "Silent delivery: off" in shown
        (fetched,) = await say(telegram, "/fetch", username="mallory")
        assert "python" in fetched
        (zone,) = await say(telegram, "/tz", username="mallory")
        assert zone.startswith("Your time zone is UTC")
        (quiet,) = await say(telegram, "/quiet", username="mallory")
        assert quiet.startswith("Quiet hours: off")
        (rules,) = await say(telegram, "/filter", username="mallory")
        assert rules.startswith("No filters.")
        (helped,) = await say(telegram, "/help", username="mallory")
        assert "/settings" in helped
    # One question to Telegram per user, however many commands and presses she sent.
    asked = [params["user_id"] for name, params in telegram.calls if name == "getChatMember"]
    assert sorted(asked) == sorted(
        [telegram.user_id(GROUP, "boss"), telegram.user_id(GROUP, "mallory")]
    )


async def test_an_anonymous_admin_and_the_creator_may_change_the_group(telegram, redis_url):
    make_admin(telegram, "founder", status="creator")
    async with running_bot(bot_env(telegram, redis_url)):
        (reply,) = await say(telegram, "/source golang", anonymous=True)
        assert reply == "Your sources are now:\n• golang"
        (reply,) = await say(telegram, "/add python", username="founder")
        assert reply == "Your sources:\n• golang\n• python"
        (reply,) = await say(telegram, "/remove golang", username="member")
        assert reply == REFUSAL
    asked = [params["user_id"] for name, params in telegram.calls if name == "getChatMember"]
    # The anonymous admin needed no question: the message came from the group itself.
    assert sorted(asked) == sorted(
        [telegram.user_id(GROUP, "founder"), telegram.user_id(GROUP, "member")]
    )


async def test_admin_answers_are_shared_by_replicas_and_kept_five_minutes(telegram, redis_url):
    make_admin(telegram, "boss")
    async with running_bot(bot_env(telegram, redis_url)):
        await say(telegram, "/source python", username="boss")
        await say(telegram, "/add golang", username="boss")
    # Another replica (a fresh process state, the same Redis) does not ask again.
    async with running_bot(bot_env(telegram, redis_url)):
        (reply,) = await say(telegram, "/add rust", username="boss")
        assert reply == "Your sources:\n• python\n• golang\n• rust"
    assert telegram.count("getChatMember") == 1
    client = aioredis.Redis.from_url(redis_url)
    try:
        ttl = await client.ttl(f"newsbot:admins:{GROUP}")
    finally:
        await client.aclose()
    assert 0 < ttl <= 300


async def test_a_group_that_adds_the_bot_gets_an_introduction(telegram, redis_url):
    private = 4242
    async with running_bot(bot_env(telegram, redis_url)):
        telegram.push_my_chat_member(GROUP, "member", old_status="left")
        (intro,) = [m.displayed for m in await wait_sent(telegram, 1, GROUP)]
        assert "Newsbot" in intro and "/help" in intro and "/fetch" in intro
        # A user who unblocks the bot gets no introduction: the next answer is /help's.
        telegram.push_my_chat_member(private, "member", old_status="kicked")
        (reply,) = await say(telegram, "/help", chat_id=private)
        assert reply.startswith("Newsbot brings you the news")
        assert len(telegram.sent(private)) == 1


async def _answer(telegram, query_id: str) -> dict:
    return await asyncio.to_thread(telegram.wait_for_answer, query_id)


CHANNEL = -1001777000222


async def test_commands_posted_in_a_channel_are_answered_there(telegram, news, redis_url):
    telegram.make_chat(CHANNEL, "channel", username="mychannel")
    bot_id = telegram.bot_user["id"]
    telegram.set_member(CHANNEL, bot_id, "administrator", can_post_messages=True)
    async with running_bot(bot_env(telegram, redis_url, news)):
        telegram.push_message(CHANNEL, "/source python")
        (reply,) = [m.displayed for m in await wait_sent(telegram, 1, CHANNEL)]
        assert reply == "Your sources are now:\n• python"
        telegram.push_message(CHANNEL, "/fetch")
        fetched = (await wait_sent(telegram, 2, CHANNEL))[1].displayed
        assert fetched.startswith("python\n")
    # A channel's own post needs no question to Telegram: only its admins can post.
    assert telegram.count("getChatMember") == 0


async def test_alerts_on_a_channel_are_set_from_the_private_chat_and_posted_there(
    telegram, news, redis_url
):
    owner = 4242
    telegram.make_chat(CHANNEL, "channel", username="mychannel")
    telegram.set_member(CHANNEL, owner, "creator", username="alice")
    telegram.set_member(CHANNEL, telegram.bot_user["id"], "administrator", can_post_messages=True)
    feed = f"{news.url}/channel-alerts.xml"
    news.set_route("/channel-alerts.xml", body=_rss(["Old story"]))
    async with running_bot(bot_env(telegram, redis_url, news, NEWSBOT_CACHE_TTL="1")):
        (reply,) = await say(telegram, f"/alert @mychannel {feed}", chat_id=owner)
        assert reply.startswith(f"Alerts on:\n• {feed}")
        (mine,) = await say(telegram, "/alert", chat_id=owner)
        assert mine.startswith("No alerts.")  # her own chat watches nothing
        news.set_route("/channel-alerts.xml", body=_rss(["New story", "Old story"]))
        (posted,) = await wait_sent(telegram, 1, CHANNEL)
        (listing,) = await say(telegram, "/alert @mychannel", chat_id=owner)
    assert "New story" in posted.displayed and "Old story" not in posted.displayed
    assert listing == f"Alerts on:\n• {feed}"
    assert not [m for m in telegram.sent(owner) if "New story" in m.displayed]


def _rss(titles: list[str]) -> str:
    items = "".join(
        f"<item><title>{t}</title><link>https://example.org/{t.replace(' ', '-')}</link></item>"
        for t in titles
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'
    )


async def test_a_channel_is_managed_from_the_private_chat_by_its_admin(telegram, news, redis_url):
    owner = 4242
    telegram.make_chat(CHANNEL, "channel", username="mychannel")
    telegram.set_member(CHANNEL, owner, "creator", username="alice")
    telegram.set_member(CHANNEL, 5151, "member", username="bob")
    bot_id = telegram.bot_user["id"]
    async with running_bot(bot_env(telegram, redis_url, news)):
        # Each failed check is named: the bot not in the channel, then without the right
        # to post, then a user who is no admin of it, then no such channel.
        (reply,) = await say(telegram, "/source @mychannel python", chat_id=owner)
        assert reply.startswith("I am not in @mychannel: add me")
        telegram.set_member(CHANNEL, bot_id, "administrator", can_post_messages=False)
        (reply,) = await say(telegram, "/source @mychannel python", chat_id=owner)
        assert reply.startswith("I cannot post in @mychannel")
        telegram.set_member(CHANNEL, bot_id, "administrator", can_post_messages=True)
        (reply,) = await say(telegram, "/source @mychannel python", chat_id=5151, username="bob")
        assert reply == "Only an administrator of @mychannel can manage it."
        (reply,) = await say(telegram, "/source @nosuchchannel python", chat_id=owner)
        assert reply == "I cannot find the channel @nosuchchannel."
        # The owner sets the channel's sources, by name and by id; her own stay apart.
        (reply,) = await say(telegram, "/source @mychannel python", chat_id=owner)
        assert reply == "Your sources are now:\n• python"
        (reply,) = await say(telegram, f"/add {CHANNEL} golang", chat_id=owner)
        assert reply == "Your sources:\n• python\n• golang"
        (mine,) = await say(telegram, "/sources", chat_id=owner)
        assert mine.startswith("You have no sources")
        # /fetch @mychannel posts the news into the channel.
        telegram.push_message(owner, "/fetch @mychannel")
        (posted,) = [m.displayed for m in await wait_sent(telegram, 1, CHANNEL)]
        assert posted.startswith("python\n") and "golang" in posted
        (reply,) = await say(telegram, "/subscribe @mychannel 6h", chat_id=owner)
        assert "every 6 hours" in reply
        # The channel's buttons in the private chat act on the channel.
        (menu,) = await say(telegram, "/settings @mychannel", chat_id=owner)
        assert menu.startswith(f"Settings of {CHANNEL}\nDigest: every 6 hours")
        menu_id = telegram.sent(owner)[-1].message_id
        query = telegram.press(owner, menu_id, "Silent on")
        assert (await _answer(telegram, query))["text"] == "Saved."
        assert "Silent delivery: on" in telegram.message(owner, menu_id).displayed
        (listing,) = await say(telegram, "/source @mychannel", chat_id=owner)
        assert listing == "Your sources:\n• python\n• golang"
        query = telegram.press(owner, telegram.sent(owner)[-1].message_id, "golang")
        assert (await _answer(telegram, query))["text"] == "Removed golang."
        (mine,) = await say(telegram, "/settings", chat_id=owner)
        assert "Silent delivery: off" in mine  # her own settings did not change
        telegram.push_message(owner, "/fetch @mychannel")
        posted = (await wait_sent(telegram, 2, CHANNEL))[1]
        assert posted.silent and "golang" not in posted.displayed
        # The private chat lists the channels she manages, each checked again.
        (listing,) = await say(telegram, "/channels", chat_id=owner)
        assert listing == f"Your channels:\n• Test channel {CHANNEL} (@mychannel): {CHANNEL}"
        telegram.set_member(CHANNEL, bot_id, "left")
        (listing,) = await say(telegram, "/channels", chat_id=owner)
        assert (
            listing == f"Your channels:\n• I am not in {CHANNEL}: add me to the "
            "channel as an administrator with the right to post messages."
        )
        (listing,) = await say(telegram, "/channels", chat_id=5151, username="bob")
        assert listing.startswith("You manage no channels through me yet.")
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await client.zscore("newsbot:due", CHANNEL) is not None
        assert await client.zscore("newsbot:due", owner) is None
    finally:
        await client.aclose()
