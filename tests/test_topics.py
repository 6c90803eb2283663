"""Forum topics end to end: answers in the topic asked from, digests in the topic bound.

A deleted topic makes Telegram answer ``400 message thread not found``: the digest or
alert then goes to General once with a notice, and from then on to General without one.
"""

from __future__ import annotations

from harness import bot_env, running_bot, wait_sent

FORUM = -1009000000001
NEWS_TOPIC, CHAT_TOPIC = 7, 9


def _feed(titles: list[str]) -> bytes:
    items = "".join(
        f"<item><title>{title}</title><link>https://example.org/{title.replace(' ', '-')}</link>"
        f"<guid>https://example.org/{title.replace(' ', '-')}</guid>"
        f"<pubDate>Tue, 26 Nov 2024 {23 - n:02d}:00:00 +0000</pubDate></item>"
        for n, title in enumerate(titles)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Test</title>'
        f"{items}</channel></rss>"
    ).encode()


async def test_commands_are_answered_in_the_topic_they_came_from(telegram, news, redis_url):
    telegram.add_topic(FORUM, NEWS_TOPIC, "News")
    telegram.add_topic(FORUM, CHAT_TOPIC, "Chat")
    async with running_bot(bot_env(telegram, redis_url, news)):
        telegram.push_message(FORUM, "/source python", thread_id=NEWS_TOPIC)
        await wait_sent(telegram, 1, FORUM)
        telegram.push_message(FORUM, "/fetch", thread_id=CHAT_TOPIC)
        await wait_sent(telegram, 2, FORUM)
        telegram.push_message(FORUM, "/help")  # in General
        sent = await wait_sent(telegram, 3, FORUM)
    assert [(m.thread_id, m.displayed.split("\n")[0]) for m in sent] == [
        (NEWS_TOPIC, "Your sources are now:"),
        (CHAT_TOPIC, "python"),
        (None, "Newsbot brings you the news you choose: subreddits and RSS, Atom and JSON feeds."),
    ]


async def test_digest_goes_to_its_topic_and_to_general_once_the_topic_is_gone(
    telegram, news, redis_url
):
    telegram.add_topic(FORUM, NEWS_TOPIC, "News")
    feed = f"{news.url}/topic.xml"
    news.set_route(
        "/topic.xml", body=_feed(["First story"]), headers={"Content-Type": "application/rss+xml"}
    )
    env = bot_env(telegram, redis_url, news, NEWSBOT_MIN_INTERVAL="1", NEWSBOT_CACHE_TTL="0")
    async with running_bot(env):
        telegram.push_message(FORUM, f"/source {feed}", thread_id=NEWS_TOPIC)
        await wait_sent(telegram, 1, FORUM)
        telegram.push_message(FORUM, "/subscribe 1s", thread_id=NEWS_TOPIC)
        first = (await wait_sent(telegram, 3, FORUM))[2]
        assert "First story" in first.displayed and first.thread_id == NEWS_TOPIC
        telegram.delete_topic(FORUM, NEWS_TOPIC)
        news.set_route(
            "/topic.xml",
            body=_feed(["Second story", "First story"]),
            headers={"Content-Type": "application/rss+xml"},
        )
        notice, second = (await wait_sent(telegram, 5, FORUM))[3:5]
        news.set_route(
            "/topic.xml",
            body=_feed(["Third story", "Second story"]),
            headers={"Content-Type": "application/rss+xml"},
        )
        third = (await wait_sent(telegram, 6, FORUM))[5]
    assert (
        notice.thread_id is None
        and "topic" in notice.displayed
        and notice.displayed.count("\n") == 0
    )
    assert second.thread_id is None and "Second story" in second.displayed
    assert "First story" not in second.displayed
    assert third.thread_id is None and "Third story" in third.displayed
    # Telegram was asked for the gone topic once (the binding went with its answer):
    # /source's and /subscribe's answers and the first digest went in, one was refused.
    into_topic = [
        params
        for name, params in telegram.calls
        if name == "sendMessage" and params.get("message_thread_id") == NEWS_TOPIC
    ]
    assert len(into_topic) == 4
    assert len([m for m in telegram.sent(FORUM) if m.thread_id == NEWS_TOPIC]) == 3
    assert sum("gone" in m.displayed for m in telegram.sent(FORUM)) == 1


async def test_alerts_go_to_their_topic_and_to_general_once_the_topic_is_gone(
    telegram, news, redis_url
):
    telegram.add_topic(FORUM, NEWS_TOPIC, "News")
    rss = {"Content-Type": "application/rss+xml"}
    news.set_route("/alerts.xml", body=_feed(["Old story"]), headers=rss)
    async with running_bot(bot_env(telegram, redis_url, news, NEWSBOT_CACHE_TTL="1")):
        telegram.push_message(FORUM, f"/alert {news.url}/alerts.xml", thread_id=NEWS_TOPIC)
        await wait_sent(telegram, 1, FORUM)
        news.set_route("/alerts.xml", body=_feed(["First story", "Old story"]), headers=rss)
        first = (await wait_sent(telegram, 2, FORUM))[1]
        telegram.delete_topic(FORUM, NEWS_TOPIC)
        news.set_route("/alerts.xml", body=_feed(["Second story", "First story"]), headers=rss)
        notice, second = (await wait_sent(telegram, 4, FORUM))[2:4]
        news.set_route("/alerts.xml", body=_feed(["Third story", "Second story"]), headers=rss)
        third = (await wait_sent(telegram, 5, FORUM))[4]
    assert first.thread_id == NEWS_TOPIC and "First story" in first.displayed
    assert notice.thread_id is None and "topic" in notice.displayed
    assert second.thread_id is None and "Second story" in second.displayed
    # The alerts were moved to General with the refusal: no second notice, no second try.
    assert third.thread_id is None and "Third story" in third.displayed
    assert sum("gone" in m.displayed for m in telegram.sent(FORUM)) == 1
    into_topic = [
        params
        for name, params in telegram.calls
        if name == "sendMessage" and params.get("message_thread_id") == NEWS_TOPIC
    ]
    assert len(into_topic) == 3  # /alert's answer, the first alert, the refused second


async def test_a_reply_to_a_topic_deleted_meanwhile_goes_to_general(telegram, redis_url):
    telegram.add_topic(FORUM, CHAT_TOPIC, "Chat")
    async with running_bot(bot_env(telegram, redis_url)):
        # The topic is deleted between the command and the answer.
        telegram.fail_next(
            "sendMessage", 400, "Bad Request: message thread not found", chat_id=FORUM
        )
        telegram.push_message(FORUM, "/help", thread_id=CHAT_TOPIC)
        notice, helped = await wait_sent(telegram, 2, FORUM)
    assert notice.thread_id is None and "gone" in notice.displayed
    assert helped.thread_id is None and helped.displayed.startswith("Newsbot brings you")
