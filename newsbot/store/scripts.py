"""The Lua scripts the store runs: each does in one step, on the server, what two
replicas (or a command and a user's next one) must not interleave.

Registered once per client by ``StoreBase``; the parts call them as ``self._<name>``.
"""

# Claim the digests that are due: move each from "due now" to "being sent" in one step,
# so two replicas never take the same one. ARGV: now, claim seconds, max count.
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local hold_until = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, chat in ipairs(due) do
    redis.call('ZADD', KEYS[1], hold_until, chat)
end
return due
"""

# Remember items as sent, keeping the history within what the chat can be shown.
# KEYS: seen set, chat hash. ARGV: now (ms), items per source, rounds, floor, compact
# size, time-to-live (s), then the members. Room is made before the new members go in,
# so a set at its bound never grows past it (Redis would convert a listpack set to the
# large encoding for good); members sent again move to the newest end.
_MARK_SEEN = """
local key = KEYS[1]
local raw = redis.call('HGET', KEYS[2], 'sources')
local sources = 0
if raw then sources = #cjson.decode(raw) end
local per_round = sources * tonumber(ARGV[2])
local batch = #ARGV - 6
local keep = math.max(tonumber(ARGV[4]), per_round, batch,
                      math.min(per_round * tonumber(ARGV[3]), tonumber(ARGV[5])))
-- Each batch strictly newer than the last, whatever the clocks of the replicas say.
local now = tonumber(ARGV[1])
local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) >= now then now = tonumber(newest[2]) + 1 end
local fresh = {}
for i = 7, #ARGV do
    if redis.call('ZSCORE', key, ARGV[i]) then
        redis.call('ZADD', key, now, ARGV[i])
    else
        fresh[#fresh + 1] = ARGV[i]
    end
end
local excess = redis.call('ZCARD', key) + #fresh - keep
if excess > 0 then
    redis.call('ZREMRANGEBYRANK', key, 0, excess - 1)
end
for _, member in ipairs(fresh) do
    redis.call('ZADD', key, now, member)
end
-- A history written by an older version (or before a chat dropped sources) may sit in
-- the large encoding although it is small now: written anew, it is compact again.
local ok, encoding = pcall(redis.call, 'OBJECT', 'ENCODING', key)
if ok and encoding == 'skiplist' and redis.call('ZCARD', key) <= tonumber(ARGV[5]) then
    local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    redis.call('DEL', key)
    for i = 1, #entries, 2 do
        redis.call('ZADD', key, entries[i + 1], entries[i])
    end
end
redis.call('EXPIRE', key, ARGV[6])
return keep
"""

# Delete a hash field only if it still has the value given. KEYS: hash. ARGV: field, value.
_DROP_FIELD = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

# Drop the held messages a replica delivered, and the chat's quiet end with the last of
# them; messages held meanwhile stay, due at the end their hold set. KEYS: held list, quiet
# end set. ARGV: chat id, how many were delivered. Returns how many are left.
_RELEASE_HELD = """
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
local left = redis.call('LLEN', KEYS[1])
if left == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return left
"""

# Stop checking a source no chat watches any more; not if a chat began watching it
# meanwhile. KEYS: watchers set, checks set, sources hash. ARGV: digest.
_DROP_ALERT_SOURCE = """
if redis.call('SCARD', KEYS[1]) > 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

# Drop a chat from a source's watchers unless it watches it again by now (/alert off,
# then /alert, while a check looked). KEYS: the chat's alerts hash, the watchers set.
# ARGV: digest, chat id.
_FORGET_WATCHER = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
return redis.call('SREM', KEYS[2], ARGV[2])
"""

# Release a lock only if we still hold it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
