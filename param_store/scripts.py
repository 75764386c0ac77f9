"""Lua scripts that make multi-key changes atomic on the server (all keys share one hash slot)."""

from __future__ import annotations

#: KEYS: current, history, version record; ARGV: version, activated_at (empty: the server's clock), channel.
#: Moves ``current`` forward to ARGV[1] only if that version's record exists and is newer; records it in the
#: history and announces it. Returns the previous current version (0 if none), or -1 if not newer, -2 if missing.
#: The server's clock, read inside the script, keeps the history in activation order across writers whose own
#: clocks disagree (formatted as a string: Lua's number formatting would round it to 0.1 ms).
ACTIVATE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local v = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 0 then return -2 end
if v <= cur then return -1 end
local at = ARGV[2]
if at == '' then
  local now = redis.call('TIME')
  at = string.format('%s.%06d', now[1], tonumber(now[2]))
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
