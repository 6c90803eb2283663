"""The webhook receiver: Telegram pushes each update to every replica's health port.

A push is answered 200 only once its update is in the stream (and, with a Redis replica
attached, acknowledged by it): Telegram retries whatever it did not see answered 200,
so a replica killed mid-request loses nothing. Retries and duplicates are stored once,
by a per-update_id mark set in the same script as the append. The secret header is
compared in constant time; a wrong one is 401 and stores nothing. A body that is not a
JSON object with an integer ``update_id`` is 400 and stored nowhere.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from newsbot import keys
from newsbot.cluster.poller import APPEND_PUSHED, chat_id
from newsbot.metrics import WEBHOOK_REQUESTS
from newsbot.store import AcknowledgedScript

logger = logging.getLogger(__name__)

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 (a header name, not a secret)
# An update is a few kilobytes (a long message with its reply and entities, tens at
# most); the cap keeps a stranger from making a replica buffer megabytes.
MAX_BODY = 256 * 1024

Answer = tuple[int, str]  # status and a short plain-text body


def webhook_path(url: str) -> str:
    """The path the replicas serve the webhook at: that of the public URL ("/" if none)."""
    return urlsplit(url).path or "/"


def parse_update(body: bytes) -> dict[str, Any] | None:
    """The update a body holds, or None unless it is a JSON object with an int update_id."""
    try:
        update = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(update, dict):
        return None
    update_id = update.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
        return None
    return update


class Webhook:
    """Stores pushed updates in the update stream, once per update_id."""

    def __init__(
        self,
        redis: aioredis.Redis,
        url: str,
        secret: str,
        ack_timeout_ms: int = keys.REPLICA_ACK_TIMEOUT_MS,
    ) -> None:
        self.redis = redis
        self.path = webhook_path(url)
        self._secret = secret.encode()
        self._append = AcknowledgedScript(redis, APPEND_PUSHED, ack_timeout_ms)

    async def receive(self, secret: str | None, body: bytes) -> Answer:
        """Answer one push: 401 wrong secret, 400 not an update, 503 Redis away, else 200."""
        given = (secret or "").encode("latin-1", "replace")
        if not hmac.compare_digest(given, self._secret):
            WEBHOOK_REQUESTS.labels(outcome="unauthorized").inc()
            logger.warning("webhook: refused a push with a wrong secret (401)")
            return 401, "unauthorized"
        update = parse_update(body)
        if update is None:
            WEBHOOK_REQUESTS.labels(outcome="invalid").inc()
            logger.warning("webhook: refused a body that is not an update (400)")
            return 400, "not an update"
        try:
            stored = await self.store(update)
        except RedisError as error:
            # Not answered 200: Telegram retries later, perhaps at another replica.
            WEBHOOK_REQUESTS.labels(outcome="unavailable").inc()
            logger.warning(
                "webhook: cannot store update %s now (%s); Telegram retries",
                update["update_id"],
                error,
            )
            return 503, "try again"
        WEBHOOK_REQUESTS.labels(outcome="stored" if stored else "duplicate").inc()
        return 200, "ok"

    async def store(self, update: dict[str, Any]) -> bool:
        """Append the update unless it was before; False for a retry or duplicate.

        With a Redis replica attached, the append is acknowledged by it (WAIT) before
        the 200 that follows, so a failover keeps the update. A duplicate waits too:
        its first push may have been cut off before its own WAIT.
        """
        update_id = update["update_id"]
        appended = await self._append.run(
            [keys.UPDATES, f"{keys.WEBHOOK_SEEN}{update_id}"],
            [
                keys.UPDATES_MAXLEN,
                keys.CHAT_LAST,
                keys.CHAT_LAST_SECONDS,
                update_id,
                chat_id(update),
                json.dumps(update),
                keys.WEBHOOK_SEEN_SECONDS,
            ],
        )
        return bool(appended)
