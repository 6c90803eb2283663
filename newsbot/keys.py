"""Every Redis key, stream, group and time-to-live Newsbot uses, in one place.

All keys live under ``newsbot:`` so the bot can share a Redis with other programs.
"""

from __future__ import annotations

PREFIX = "newsbot:"

# --- chats -------------------------------------------------------------------------
# Hash per chat: its sources (JSON list), the stop flag and the digest interval.
CHAT = PREFIX + "chat:{chat_id}"
# Sorted set: chat id -> unix time its next digest is due.
DUE = PREFIX + "due"
# Sorted set per chat: ids of items already sent -> unix time sent. Bounded so a chat
# that follows busy sources for years does not grow without limit.
SEEN = PREFIX + "seen:{chat_id}"
SEEN_MAX = 2000
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
# A failed fetch is remembered this long (or the cache TTL if shorter) so a dead server
# is not asked again by every chat that follows it.
ERROR_TTL_SECONDS = 60
# Held while one replica fetches a source; the others wait for its result. Longer than
# the slowest fetch (connect + read timeouts) so that it never expires mid-fetch.
FETCH_LOCK = PREFIX + "lock:fetch:{digest}"
FETCH_LOCK_SECONDS = 30

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
RATE_GLOBAL = PREFIX + "rate:global"
RATE_CHAT = PREFIX + "rate:chat:{chat_id}"
RATE_GROUP = PREFIX + "rate:group:{chat_id}"
