"""Every Redis key, stream, group and time-to-live Newsbot uses, in one place.

All keys live under ``newsbot:`` so the bot can share a Redis with other programs.
"""

from __future__ import annotations

PREFIX = "newsbot:"

# --- chats -------------------------------------------------------------------------
# Hash per chat: its sources (JSON list), the stop flag and the digest interval; its
# filter rules (JSON: source key or "*" -> the rules as written); its time zone (an
# IANA name; absent: UTC), a local digest schedule ("08:00", "mon 08:00"; with it,
# ``interval`` holds the nominal day or week) and quiet hours ("22:00-07:00").
CHAT = PREFIX + "chat:{chat_id}"
# Sorted set: chat id -> unix time its next digest is due.
DUE = PREFIX + "due"
# Sorted set per chat: short hashes of the ids of items already sent -> unix time sent,
# in ms. Bounded by what the chat can be shown (see Store.mark_seen): its sources × items
# per source × SEEN_ROUNDS, at least SEEN_MIN, and within SEEN_COMPACT when a whole round
# fits, so it stays in Redis' compact listpack encoding (about 30 bytes an entry).
SEEN = PREFIX + "seen:{chat_id}"
SEEN_ROUNDS = 3
SEEN_MIN = 32
# Redis' default zset-max-listpack-entries: one entry more and the set takes ~4× the memory.
SEEN_COMPACT = 128
# The most entries a history merged from two chats keeps (a group's migration); the next
# mark_seen brings it to the chat's own bound.
SEEN_MAX = SEEN_COMPACT
# Refreshed on every read and write. Longer than the longest digest interval (30 days),
# so a subscribed chat never loses its history between two digests; a chat that stopped
# using the bot loses it after this long.
SEEN_TTL_SECONDS = 40 * 86_400
# List per chat: messages (Telegram HTML) held during its quiet hours, oldest first. No
# time-to-live: each is delivered when the window ends, and forget_chat removes them.
HELD = PREFIX + "held:{chat_id}"
# The most messages one chat's hold keeps (the oldest go first): a few nights of hourly
# digests, and a bound on what a chat can make Redis keep.
HELD_MAX = 100
# Sorted set: chat id -> unix time its held messages are due (the end of its quiet hours).
# Claimed like DUE (DIGEST_CLAIM_SECONDS), so exactly one replica delivers a batch.
QUIET_END = PREFIX + "quiet-end"
# A digest claimed by a replica is held for this long; if the replica dies before it
# has sent the digest, another replica picks it up after this many seconds.
DIGEST_CLAIM_SECONDS = 120

# --- fetch cache ---------------------------------------------------------------------
# Hash per source (key = sha256 of its canonical name): items as JSON, when fetched,
# the validators for a conditional GET, or the error of the last try.
FEED = PREFIX + "feed:{digest}"
# Kept long past NEWSBOT_CACHE_TTL so that the ETag/Last-Modified of a stale entry can
# still turn the next fetch into a cheap 304.
FEED_TTL_SECONDS = 7 * 24 * 3600
# String per feed that moved permanently (301/308; key = the digest of its old canonical
# URL): its new URL. Chats still holding the old URL are rewritten when their sources are
# next read (Store.follow_moves). Renewed on every fetch that sees the move again, so an
# entry that expires comes back the next time a chat's old URL is fetched.
MOVED = PREFIX + "moved:{digest}"
MOVED_TTL_SECONDS = 30 * 24 * 3600
# A failed fetch is remembered this long (or the cache TTL if shorter) so a dead server
# is not asked again by every chat that follows it.
ERROR_TTL_SECONDS = 60
# Held while one replica fetches a source; the others wait for its result. Longer than
# the slowest fetch (its hard deadline, NEWSBOT_FETCH_TIMEOUT, which news.News caps
# below this) so that it never expires mid-fetch.
FETCH_LOCK = PREFIX + "lock:fetch:{digest}"
FETCH_LOCK_SECONDS = 30

# --- source health -------------------------------------------------------------------
# A failing source's streak (failures in a row, since when, whether its chats were told it
# is dead) lives in its FEED hash, written with each fetch, so it is read with the cache
# entry and lives as long as it (FEED_TTL_SECONDS, renewed by each fetch).
# Set per source: the ids of the chats that have it among their sources, kept in step by
# Store.set_sources, forget_chat and migrate_chat. No time-to-live: it is as durable as
# the chats' own hashes.
SOURCE_CHATS = PREFIX + "source-chats:{digest}"
# Set once the index was built from the chats stored before it existed (by the one
# replica that set it first). No time-to-live: built once per Redis.
SOURCE_CHATS_BUILT = PREFIX + "source-chats-built"
# Chat hashes read per SCAN step while the index is built.
SOURCE_CHATS_SCAN = 500
# Sorted set: digest of each failing source -> unix time of its last failed fetch, for the
# newsbot_failing_sources gauge. A source nobody asks for is no longer fetched, so its
# entry goes once its last failure is older than FAILING_FORGET_SECONDS (past the longest
# backoff, 6 hours, and an ask in it).
FAILING = PREFIX + "failing-sources"
FAILING_FORGET_SECONDS = 7 * 3600
# Sorted set: id of each source notice to send ("<digest>:<dead|recovered>:<since>", one
# per transition) -> unix time it is due; claimed like DUE (DIGEST_CLAIM_SECONDS), so one
# replica sends it, and another after the claim if that one died.
SOURCE_NOTICES = PREFIX + "source-notices"
# Hash per notice: the source key, the kind, since when it failed and why. Kept a day:
# a notice not sent by then is stale news.
SOURCE_NOTICE = PREFIX + "source-notice:{notice}"
SOURCE_NOTICE_SECONDS = 86_400
# Set per notice: the chats that were sent it, so a notice taken over from a replica that
# died part-way is sent only to the chats it had not reached. Kept as long as the notice
# (and left to expire after it is done, so a notice queued again is not sent again).
SOURCE_NOTICE_TOLD = PREFIX + "source-notice-told:{notice}"

# --- updates -------------------------------------------------------------------------
# The stream the leader appends Telegram updates to, and the group every replica reads.
UPDATES = PREFIX + "updates"
GROUP = "newsbot"
# Approximate stream length kept; acknowledged entries beyond it are trimmed.
UPDATES_MAXLEN = 100_000
# The getUpdates offset: every update below it has been appended to the stream.
OFFSET = PREFIX + "offset"
# Per update id: "done" once its effects happened, so a redelivered entry is only acked.
# One day is far longer than any redelivery can take.
UPDATE_DONE = PREFIX + "update:{update_id}"
UPDATE_DONE_SECONDS = 24 * 3600
# Per update id while a replica works on it, so a duplicate entry is not run twice at
# once. Its time-to-live is set and renewed by cluster.stream (LOCK_MS).
UPDATE_LOCK = PREFIX + "update-lock:{update_id}"
# Per chat: "<update id> <stream entry id>" of its last update appended to the stream.
# Each entry carries its chat's previous ones, so replicas handle a chat's updates in
# order. Shorter-lived than UPDATE_DONE, so the update it names is still known when read.
CHAT_LAST = PREFIX + "chat-last:"
CHAT_LAST_SECONDS = 3600
# Per update id, set by the webhook receiver in the same script that appends the update:
# Telegram retries a push it did not see answered 200 (a replica killed mid-request, a
# slow one), and a retry finding the mark is answered 200 without a second entry.
# Telegram keeps an undelivered update for 24 hours; the mark outlives that.
WEBHOOK_SEEN = PREFIX + "webhook-seen:"
WEBHOOK_SEEN_SECONDS = 25 * 3600
# How long a write that must survive a failover (a stored update, a done mark) waits for
# a replica's WAIT acknowledgement before going on without it (store.wait_for_replicas).
REPLICA_ACK_TIMEOUT_MS = 1_000
# An entry pending this long with a consumer is taken over by another; the owner of a
# live entry touches it more often than that (see cluster.stream).
CLAIM_IDLE_MS = 10_000
# An entry of a chat that already has its share in hand (or a consumer stopping) is given
# back: it stays pending, not counted as a try, and becomes claimable this much sooner
# than CLAIM_IDLE_MS, i.e. after CLAIM_IDLE_MS - SET_ASIDE_MS of idleness.
SET_ASIDE_MS = 8_000
# Entries of one chat a replica holds in hand at once; the chat's later entries wait in
# the stream, so one chat's backlog cannot fill a replica (see cluster.stream).
CHAT_IN_HAND = 8
# An update delivered this many times without being handled (outages, crashing replicas)
# is a poison update: it goes to the dead-letter stream instead of being tried again.
UPDATE_MAX_TRIES = 10
# Updates that could not be parsed or handled, kept for an operator to look at. The
# stream's time-to-live is renewed by every update added, so it goes away a week after
# the last poison update; MAXLEN bounds it meanwhile.
DEAD_UPDATES = PREFIX + "updates:dead"
DEAD_UPDATES_SECONDS = 7 * 24 * 3600
DEAD_UPDATES_MAXLEN = 10_000

# --- leadership ----------------------------------------------------------------------
# The poller's lease. A dead leader is replaced after at most this long.
LEADER = PREFIX + "leader"
LEADER_TTL_MS = 6_000

# --- rate limits ---------------------------------------------------------------------
# One GCRA bucket each (the theoretical arrival time, ms on Redis' clock), for the whole
# bot, per chat and per group. Each expires a second after its booking has passed.
RATE_GLOBAL = PREFIX + "rate:global"
RATE_CHAT = PREFIX + "rate:chat:{chat_id}"
RATE_GROUP = PREFIX + "rate:group:{chat_id}"
# A 429's retry_after, kept apart from the bookings (ms on Redis' clock until which
# nothing goes): per chat (it holds the chat's and, for a group, its group bucket), and
# for the whole bot. Each expires a second after the hold ends.
RATE_HOLD = PREFIX + "rate:hold:{chat_id}"
RATE_HOLD_GLOBAL = PREFIX + "rate:hold:global"
# Sorted set: chat id -> when Telegram last answered it 429 (ms). When FLOOD_CHATS
# different chats were answered 429 within FLOOD_WINDOW_MS, the whole bot is limited,
# not one chat, and the global bucket is held too. Expires with the window.
RATE_FLOODED = PREFIX + "rate:flooded"
FLOOD_WINDOW_MS = 2_000
FLOOD_CHATS = 3
# Margins: the limiter books below Telegram's published limits (Bot API FAQ) so that a
# strict counter (30 in any 1 s window, 1/s per chat with a burst of 3, 20 in any 60 s
# window per group) is never exceeded although a send reaches Telegram a little after
# its slot (event-loop lag, a loaded 2-core machine, a claimed update after failover).
# Slots k*I apart arrive within [k*I, k*I + J]; a window of length W then holds at most
# ceil((W + J) / I) of them. Overall: 30/s * 0.85 -> one per 40 ms -> 30 in any second
# for a delay spread J up to 0.2 s (at 0.83 of the limit's throughput). Per group:
# 20/min * 0.95 -> one per 3158 ms -> J up to 3.2 s. Per chat: none; Telegram allows
# short bursts (the strict fake: 3), which absorbs J up to 2 s at 1/s.
RATE_MARGIN_GLOBAL = 0.85
RATE_MARGIN_CHAT = 1.0
RATE_MARGIN_GROUP = 0.95
# A send waits at most this long for its slot (a 429's retry_after included); past
# that it is not booked and the update is deferred (left pending, handled again later),
# so a long wait never holds a worker others need. It also bounds every booking: no
# bucket is ever booked more than this (plus one interval) ahead, so a booking made
# under another configuration (NEWSBOT_SEND_PER_SECOND=0.0001) is cut back to it.
RATE_MAX_WAIT_MS = 8_000

# --- delivery ------------------------------------------------------------------------
# Set per reply (an update's, or a chat's digest): the parts of a multi-part message
# Telegram took, as "index:sha1 of the text". A retry sends only the parts not in it.
# Lives longer than any retry of the update (CLAIM_IDLE_MS, a digest's claim) takes.
PARTS_SENT = PREFIX + "parts:{scope}"
PARTS_SENT_SECONDS = 3600

# --- groups, topics and the command menu ---------------------------------------------
# Hash per group: user id -> "1" or "0" (administrator or not) and when it was asked,
# as "1:<unix time>". An answer older than ADMIN_CACHE_SECONDS is asked again, so a busy
# group costs one getChatMember per user per window, across replicas; a demoted admin
# loses the right within that window. The hash expires a window after its last write.
ADMINS = PREFIX + "admins:{chat_id}"
ADMIN_CACHE_SECONDS = 300
# The hash of the command lists last registered with setMyCommands: a replica that
# starts with the same lists (the same deploy) does not register them again. No TTL.
COMMANDS_SET = PREFIX + "commands"
# Set per private chat (= user id): the channels that user manages through the bot, for
# /channels. Written when a command naming a channel passed its checks. No TTL: it goes
# with the private chat (CHAT_KEYS); /channels checks each again when it lists them.
USER_CHANNELS = PREFIX + "channels:{chat_id}"
# The chat hash's fields for topics and delivery (see Store.delivery): the forum topic
# the digest goes to, link previews on, silent delivery on.
FIELD_DIGEST_THREAD = "digest_thread"
FIELD_PREVIEWS = "previews"
FIELD_SILENT = "silent"

# --- alerts --------------------------------------------------------------------------
# Hash per chat: source id (news.source_id) -> JSON {"source": ..., "thread": the
# message_thread_id of the /alert command or null}. No time-to-live: an alert lasts until
# /alert off, and forget_chat removes it.
ALERTS = PREFIX + "alerts:{chat_id}"
# Hash per chat: source digest -> JSON list of the short hashes of that source's items
# the chat has been brought up to (sent, held, filtered out or there at /alert time), or
# null until the first good read sets it without sending (no backfill). Bounded by the
# cache's items per source (100) per alert; no time-to-live, as ALERTS.
ALERT_KNOWN = PREFIX + "alert-known:{chat_id}"
# Set per source digest: the chats watching it. A chat forgotten since is dropped lazily
# by the watcher (it has no ALERTS entry); the set goes with its last watcher.
ALERT_WATCHERS = PREFIX + "alert-watchers:{digest}"
# Hash: source digest -> the source (JSON), for the watcher to fetch it.
ALERT_SOURCES = PREFIX + "alert-sources"
# Sorted set: source digest -> unix time of its next check. Claimed like DUE, so one
# replica checks a source per window; each source keeps its own offset in the window.
ALERT_CHECKS = PREFIX + "alert-checks"
# Per chat while one replica delivers alerts to it, so two sources' checks (on any
# replicas) never both find an article unseen and announce it twice. Outlives a delivery
# (a few sends); a replica that dies holding it leaves it to expire.
ALERT_LOCK = PREFIX + "alert-lock:{chat_id}"
ALERT_LOCK_SECONDS = 30
# A source check claimed by a replica comes back after this long if the replica dies
# before it rescheduled it (the deliveries it finished are recorded per chat).
ALERT_CLAIM_SECONDS = 30

# --- per chat, all together ----------------------------------------------------------
# Every key that belongs to one chat, for Store.forget_chat (a chat that blocked the bot,
# left or was deleted keeps nothing). A new per-chat key must be added here.
CHAT_KEYS = (
    CHAT,
    SEEN,
    HELD,
    RATE_CHAT,
    RATE_GROUP,
    RATE_HOLD,
    CHAT_LAST + "{chat_id}",
    PARTS_SENT.replace("{scope}", "digest:{chat_id}"),
    ADMINS,
    USER_CHANNELS,
    ALERTS,
    ALERT_KNOWN,
    ALERT_LOCK,
)

# --- readiness -----------------------------------------------------------------------
# Written by each readiness check: only a write shows that Redis is out of memory
# (maxmemory with noeviction refuses writes, answers reads). Short-lived.
READY_PROBE = PREFIX + "ready-probe"
READY_PROBE_MS = 10_000
