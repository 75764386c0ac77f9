"""Lua scripts that make multi-key changes atomic on the server (all keys share one hash slot)."""

from __future__ import annotations

#: A Lua function the scripts below share: merge ARGV triples (version, arm id, values JSON) from position
#: ``first`` into the arm-values index ``key`` (``param_store.arm_index``), keeping each arm's newest version.
_MERGE_ARMS = """
local function merge_arms(key, first)
  for i = first, #ARGV, 3 do
    local old = redis.call('HGET', key, ARGV[i + 1])
    if (not old) or tonumber(string.match(old, '^(%d+)|')) <= tonumber(ARGV[i]) then
      redis.call('HSET', key, ARGV[i + 1], ARGV[i] .. '|' .. ARGV[i + 2])
    end
  end
end
"""

#: KEYS: version record, arm-values index; ARGV: the version's JSON, then its arms' triples (see ``_MERGE_ARMS``).
#: Writes the record only if it does not exist (returns 0 and writes nothing otherwise), and its arms into the
#: index in the same step (returns 1).
WRITE_VERSION = _MERGE_ARMS + """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') == false then return 0 end
merge_arms(KEYS[2], 2)
return 1
"""

#: KEYS: arm-values index; ARGV: arm triples (see ``_MERGE_ARMS``). Backfills the index from stored versions.
INDEX_ARMS = _MERGE_ARMS + """
merge_arms(KEYS[1], 1)
return 1
"""

#: KEYS: current, history, version record; ARGV: version, activated_at (empty: the server's clock), channel.
#: Moves ``current`` forward to ARGV[1] only if that version's record exists and is newer; records it in the
#: history and announces it. Returns the previous current version (0 if none), or -1 if not newer, -2 if missing.
#: The server's clock, read inside the script, keeps the history in activation order across writers whose own
#: clocks disagree (formatted as a string: Lua's number formatting would round it to 0.1 ms). Scores strictly
#: increase: two activations in one microsecond, or a server clock stepped back, get the last score plus 1 us
#: (tied scores would sort by member, and "100" < "97" as strings).
ACTIVATE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local v = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 0 then return -2 end
if v <= cur then return -1 end
local at = ARGV[2]
if at == '' then
  local now = redis.call('TIME')
  at = string.format('%s.%06d', now[1], tonumber(now[2]))
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if last[2] and tonumber(at) <= tonumber(last[2]) then
    at = string.format('%.6f', tonumber(last[2]) + 0.000001)
  end
end
redis.call('SET', KEYS[1], v)
redis.call('ZADD', KEYS[2], at, v)
redis.call('PUBLISH', ARGV[3], v)
return cur
"""

#: KEYS: state; ARGV: expected current state, new state. Compare-and-set; returns 1 on success, 0 otherwise.
SET_STATE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

#: KEYS: observation hash, then optionally the batch's idempotency key. ARGV: the batch key's TTL (seconds), the
#: reply to remember (rows accepted), the rate tolerance, then per statistic five values: field prefix, count,
#: sum, sum of squares increments, and 1 if the metric is a rate (else 0).
#: All or nothing and exactly once: a batch key seen before returns {0, remembered reply} and writes nothing;
#: every merged total (stored + increment) is checked finite, with count > 0, and for a rate 0 <= sum <= count
#: and sum_sq <= count, before any field is written; the first failure returns {-1, field prefix, reason}.
#: Otherwise every increment is applied, the batch key set, and {1, reply} returned.
ADD_OBSERVATIONS = """
if #KEYS > 1 then
  local seen = redis.call('GET', KEYS[2])
  if seen then return {0, seen} end
end
local tolerance = tonumber(ARGV[3])
local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end
local totals = {}
for i = 4, #ARGV, 5 do
  local f = ARGV[i]
  local old = redis.call('HMGET', KEYS[1], f .. 'n', f .. 's', f .. 'q')
  local n = (tonumber(old[1]) or 0) + tonumber(ARGV[i + 1])
  local s = (tonumber(old[2]) or 0) + tonumber(ARGV[i + 2])
  local q = (tonumber(old[3]) or 0) + tonumber(ARGV[i + 3])
  if not (finite(n) and finite(s) and finite(q)) then return {-1, f, 'the stored total would not be finite'} end
  if n <= 0 then return {-1, f, 'the stored count would not be positive'} end
  if ARGV[i + 4] == '1' and (s < 0 or s > n * (1 + tolerance) or q > n * (1 + tolerance)) then
    return {-1, f, 'the stored totals of a rate would leave [0, 1]'}
  end
end
for i = 4, #ARGV, 5 do
  local f = ARGV[i]
  redis.call('HINCRBYFLOAT', KEYS[1], f .. 'n', ARGV[i + 1])
  redis.call('HINCRBYFLOAT', KEYS[1], f .. 's', ARGV[i + 2])
  redis.call('HINCRBYFLOAT', KEYS[1], f .. 'q', ARGV[i + 3])
end
if #KEYS > 1 then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1]) end
return {1, ARGV[2]}
"""

#: KEYS: spec, state, version counter, version 1 record, current, history, arm-values index (all in the
#: experiment's slot). ARGV: spec JSON, version 1 JSON, the state to start in, the channel, then version 1's arm
#: triples (see ``_MERGE_ARMS``). A launch in one step: nothing if the name is taken (returns 0), else spec,
#: state, version 1, its arms in the index, its activation and the announcement (returns 1). The experiment set
#: lives in another cluster slot: the caller adds the name to it first.
LAUNCH = _MERGE_ARMS + """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], 1)
redis.call('SET', KEYS[4], ARGV[2])
redis.call('SET', KEYS[5], 1)
local now = redis.call('TIME')
redis.call('ZADD', KEYS[6], string.format('%s.%06d', now[1], tonumber(now[2])), 1)
merge_arms(KEYS[7], 5)
redis.call('PUBLISH', ARGV[4], 1)
return 1
"""

#: KEYS: state, then every other key of the experiment (one cluster slot). Deletes them all if the state is
#: still ``draft`` (returns 1); returns 0 and deletes nothing otherwise. The caller then drops the name from the
#: experiment set (another slot).
DELETE_DRAFT = """
if redis.call('GET', KEYS[1]) ~= 'draft' then return 0 end
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('DEL', KEYS[1])
return 1
"""

#: KEYS: observation hash, archive hash, roll-up. ARGV: the roll-up expected now (its JSON; empty: none), the
#: new roll-up's JSON, then (field, value) pairs of the observation hash to move into the archive. Compare and
#: set: if the roll-up or any of those fields changed since they were read (a concurrent batch or roll-up),
#: returns 0 and changes nothing. Otherwise each field is added to the archive (to the archive's own value when
#: a late batch for a rolled window is being merged in) and deleted from the observation hash, the roll-up
#: replaced, and 1 returned.
ROLL_UP = """
local current = redis.call('GET', KEYS[3]) or ''
if current ~= ARGV[1] then return 0 end
for i = 3, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then return 0 end
end
for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then
    redis.call('HINCRBYFLOAT', KEYS[2], ARGV[i], ARGV[i + 1])
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
  redis.call('HDEL', KEYS[1], ARGV[i])
end
redis.call('SET', KEYS[3], ARGV[2])
return 1
"""
