"""Where in Telegram a reply goes: forum topics, and what a group hears first."""

from __future__ import annotations

from telegram import Update

INTRODUCTION = """Hello! I am <b>Newsbot</b>: I bring this group the news it chooses, \
from subreddits and RSS, Atom and JSON feeds.
Admins set the sources with /source <i>python, golang</i> and a digest with \
/subscribe <i>6h</i>; anyone can /fetch the latest. /help lists every command."""


def topic_of(update: Update) -> int | None:
    """The forum topic an update's message is in (None: General, or not a forum)."""
    message = update.effective_message
    if message is None or not message.is_topic_message:
        return None
    return message.message_thread_id
