"""Prometheus metrics, served at /metrics by the health server."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPDATES = Counter("newsbot_updates_total", "Telegram updates handled, by outcome", ["outcome"])
DEAD_UPDATES = Counter(
    "newsbot_dead_updates_total",
    "Poison updates moved to the dead-letter stream, by reason",
    ["reason"],
)
HANDLER_SECONDS = Histogram(
    "newsbot_handler_seconds",
    "Time to handle one update",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MESSAGES_SENT = Counter("newsbot_messages_sent_total", "Messages sent to Telegram")
TOO_MANY_REQUESTS = Counter("newsbot_telegram_429_total", "Telegram answers 429 Too Many Requests")
SEND_DEFERRED = Counter(
    "newsbot_send_deferred_total",
    "Sends put off (update left pending) rather than wait past the limit",
)
GLOBAL_HOLDS = Counter(
    "newsbot_telegram_global_holds_total",
    "Times 429s to several chats showed the whole bot is limited",
)
PARTS_SKIPPED = Counter(
    "newsbot_parts_skipped_total",
    "Parts of a reply not sent again on a retry: they went out before",
)
CHATS_FORGOTTEN = Counter(
    "newsbot_chats_forgotten_total",
    "Chats whose state was deleted: blocked, removed or gone",
    ["reason"],
)
SEND_RETRIES = Counter(
    "newsbot_send_retries_total", "Telegram calls retried after a 5xx or a network error"
)
UPSTREAM_FETCHES = Counter(
    "newsbot_upstream_fetches_total", "Requests to news servers (cache misses)", ["kind"]
)
CACHE_HITS = Counter("newsbot_cache_hits_total", "Sources served from the shared cache")
DIGESTS = Counter("newsbot_digests_total", "Digests handled, by outcome", ["outcome"])
DIGESTS_IN_HAND = Gauge(
    "newsbot_digests_in_hand", "Digests this replica is building or sending now"
)
LEADER = Gauge("newsbot_leader", "1 while this replica polls Telegram")
STREAM_LAG = Gauge("newsbot_stream_lag", "Updates in the stream not yet read by the group")
STREAM_PENDING = Gauge(
    "newsbot_stream_pending", "Updates read by a replica and not yet acknowledged"
)
REPLICA_ACK_SKIPPED = Counter(
    "newsbot_replica_ack_skipped_total",
    "Writes a replica should have acknowledged (WAIT), made while none was attached",
)
REPLICA_ACK_TIMEOUTS = Counter(
    "newsbot_replica_ack_timeouts_total", "Writes no replica acknowledged within the WAIT timeout"
)
WEBHOOK_REQUESTS = Counter(
    "newsbot_webhook_requests_total",
    "Pushes from Telegram to the webhook, by outcome",
    ["outcome"],
)
FAILING_SOURCES = Gauge(
    "newsbot_failing_sources",
    "Sources whose last fetch failed (the same for every replica: counted in Redis)",
)
SOURCE_NOTICES = Counter(
    "newsbot_source_notices_total", "Chats told a source died or answers again, by kind", ["kind"]
)
