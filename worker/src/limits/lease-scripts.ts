/**
 * The Redis side of capacity leases (leases.ts; the design is in docs/limits.md, "Capacity leases").
 *
 * Every limited quantity is a *resource* with a main key and a lease hash beside it (`<key>:lease`):
 *
 * - rate (requests or tokens per minute at a layer): the main key is a token bucket with the fields
 *   and refill arithmetic of @upstash/ratelimit 2.2.0's tokenBucket (`refilledAt`, `tokens`; refilled
 *   every second with limit/60, holding at most the limit). A lease takes tokens out of the bucket.
 * - slots (requests in flight at a layer): the main key is a sorted set of slots held directly
 *   (member `r:<holder>:<n>`, score = expiry); a lease holds slots in its record.
 * - budget: the main key is the period's counter (budgets.ts `budgetCounter`), which counts settled
 *   usage, the reservations of requests in flight outside any lease, and every lease record.
 *
 * The lease hash holds one record per holder (an isolate's lease, `<isolate>.<n>`): the amount it
 * holds (`<holder>`), when Redis may take it back (`<holder>:e`, unix ms) and when it last asked
 * (`<holder>:a`). For budgets the amount is what the isolate has not used: free capacity plus the
 * reservations of its requests in flight. So at every moment
 *   budget counter = settled usage + direct reservations + Σ records ≤ budget,
 *   slots held = direct slots + Σ records ≤ cap,
 * and a token bucket never gives out more than it holds. A record past its expiry belongs to an
 * isolate that died or lost Redis: the next script that reads the hash takes it back.
 */

/** Resource kinds, as the scripts number them. */
export const KIND = { rate: 1, slots: 2, budget: 3 } as const;
/** A resource kind. */
export type ResourceKind = keyof typeof KIND;

/** The refill interval of the token buckets (ratelimit's: one refill of limit/60 per second). */
export const REFILL_MS = 1_000;
/** Per-minute limits: a bucket refills its whole limit in this long. */
export const WINDOW_MS = 60_000;

/** Values the acquire script passes per resource (see ACQUIRE). */
export const ACQUIRE_ARGS_PER_RESOURCE = 8;
/** Values the acquire script returns per resource (see ACQUIRE). */
export const ACQUIRE_RESULTS_PER_RESOURCE = 3;

/**
 * Takes capacity for several resources at once, all or nothing.
 *
 * KEYS: the budget marker (budgets.ts `budgetMarkerKey`), then per resource its main key and its
 * lease hash.
 * ARGV: now (ms), ask window (ms), reclaim after (ms), share (0–1), then per resource:
 *   kind, limit, need, want, extra (rate: refill per interval; budget: counter TTL in seconds),
 *   expect (1 when this holder believes it has a record), in flight (budget: the reservations of
 *   the holder's requests in flight; slots: their count), holder (the lease's name).
 * Returns { status, then per resource: grant, record existed (0/1), seen }.
 *   status 0: granted. status i > 0: resource i cannot give its need (nothing was taken; for a
 *   rate resource, its `seen` is the milliseconds until the need is back). status -i: resource i is
 *   a budget whose counters are not seeded (the marker is missing).
 *   seen: rate, the tokens left in the bucket; slots, the slots held; budget, the counter.
 *
 * Grant: at least the need, and up to `want` while capacity remains: of what is left after the
 * need, at most `share` divided among the holders that asked within the ask window. So leases are
 * large while much is left and shrink to the need alone near the limit.
 *
 * A record whose holder expected one but finds none was taken back (the isolate was away from
 * Redis past its expiry): for budgets the reservations of its requests in flight are counted
 * again, since taking the record back removed them.
 */
export const ACQUIRE = `
local now = tonumber(ARGV[1])
local askWindow = tonumber(ARGV[2])
local reclaimMs = tonumber(ARGV[3])
local share = tonumber(ARGV[4])
local count = (#KEYS - 1) / 2
local plan = {}
for i = 1, count do
  local key, meta = KEYS[2 * i], KEYS[2 * i + 1]
  local b = 4 + (i - 1) * ${ACQUIRE_ARGS_PER_RESOURCE}
  local kind, limit, need, want = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local extra, expect, inflight, holder = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7]), ARGV[b + 8]
  if kind == 3 and redis.call("EXISTS", KEYS[1]) == 0 then return { -i } end
  -- Records: take back the expired ones, sum the rest, count who asked lately.
  local flat = redis.call("HGETALL", meta)
  local rec = {}
  for j = 1, #flat, 2 do rec[flat[j]] = flat[j + 1] end
  local held, askers, existed = 0, 1, 0
  for f, v in pairs(rec) do
    if not string.find(f, ":", 1, true) then
      if tonumber(rec[f .. ":e"] or "0") < now then
        if kind == 3 then redis.call("DECRBY", key, math.floor(tonumber(v))) end
        redis.call("HDEL", meta, f, f .. ":e", f .. ":a")
      else
        held = held + tonumber(v)
        if f == holder then
          existed = 1
        elseif tonumber(rec[f .. ":a"] or "0") >= now - askWindow then
          askers = askers + 1
        end
      end
    end
  end
  if kind == 3 and existed == 0 and expect == 1 and inflight > 0 then redis.call("INCRBY", key, inflight) end
  local avail, tokens, refilledAt, used = 0, 0, now, 0
  if kind == 1 then
    local bucket = redis.call("HMGET", key, "refilledAt", "tokens")
    tokens = limit
    if bucket[1] then
      refilledAt = tonumber(bucket[1])
      tokens = tonumber(bucket[2])
    end
    if now >= refilledAt + ${REFILL_MS} then
      local refills = math.floor((now - refilledAt) / ${REFILL_MS})
      tokens = math.min(limit, tokens + refills * extra)
      refilledAt = refilledAt + refills * ${REFILL_MS}
    end
    avail = math.floor(tokens)
  elseif kind == 2 then
    redis.call("ZREMRANGEBYSCORE", key, "-inf", "(" .. now)
    used = redis.call("ZCARD", key) + held
    avail = limit - used
  else
    used = tonumber(redis.call("GET", key) or "0")
    avail = limit - used
  end
  if need > 0 and avail < need then
    local wait = 0
    if kind == 1 then
      local refills = math.ceil((need - tokens) / extra)
      wait = math.max(0, refilledAt + refills * ${REFILL_MS} - now)
    end
    local out = { i }
    for j = 1, count * ${ACQUIRE_RESULTS_PER_RESOURCE} do out[j + 1] = 0 end
    out[(i - 1) * ${ACQUIRE_RESULTS_PER_RESOURCE} + 4] = math.ceil(wait)
    return out
  end
  local spare = math.floor(math.max(0, avail - need) * share / askers)
  local grant = need + math.max(0, math.min(want - need, spare))
  plan[i] = { kind = kind, key = key, meta = meta, limit = limit, extra = extra, grant = grant, existed = existed, holder = holder,
    tokens = tokens, refilledAt = refilledAt, used = used }
end
local out = { 0 }
for i = 1, count do
  local p = plan[i]
  local seen = 0
  if p.kind == 1 then
    local left = p.tokens - p.grant
    redis.call("HSET", p.key, "refilledAt", p.refilledAt, "tokens", left)
    local ttl = math.ceil((p.limit - left) / p.extra) * ${REFILL_MS}
    if ttl > 0 then redis.call("PEXPIRE", p.key, ttl) end
    seen = math.floor(left)
  elseif p.kind == 2 then
    seen = p.used + p.grant
  else
    seen = redis.call("INCRBY", p.key, p.grant)
    if p.extra > 0 and redis.call("TTL", p.key) < 0 then redis.call("EXPIRE", p.key, p.extra) end
  end
  redis.call("HINCRBY", p.meta, p.holder, p.grant)
  redis.call("HSET", p.meta, p.holder .. ":e", now + reclaimMs, p.holder .. ":a", now)
  -- A budget's records live as long as its counter (a record must be taken back, not forgotten);
  -- a rate or slot record forgotten with its hash only frees what it held.
  local life = reclaimMs * 2
  if p.kind == 3 and p.extra > 0 then life = math.max(life, p.extra * 1000) end
  if p.kind == 3 and p.extra == 0 then redis.call("PERSIST", p.meta) else redis.call("PEXPIRE", p.meta, life) end
  out[(i - 1) * ${ACQUIRE_RESULTS_PER_RESOURCE} + 2] = p.grant
  out[(i - 1) * ${ACQUIRE_RESULTS_PER_RESOURCE} + 3] = p.existed
  out[(i - 1) * ${ACQUIRE_RESULTS_PER_RESOURCE} + 4] = seen
end
return out
`;

/**
 * Returns a lease (one resource) and ends its record.
 *
 * KEYS: main key, lease hash. ARGV: kind, holder, limit, now, extra (rate: refill per interval),
 * free (rate: the unused tokens), in flight (budget: the reservations of the holder's requests in
 * flight; slots: their count), slot expiry (ms from now).
 *
 * - rate: the unused tokens go back to the bucket (never above the limit).
 * - budget: the counter gives back the record minus the reservations in flight, which stay counted
 *   as direct reservations (their requests settle them later). If the record was already taken
 *   back, those reservations are counted again instead.
 * - slots: the record's slots are freed, except one direct slot `r:<holder>:<n>` per request in
 *   flight (n = 1…in flight), which its request removes when it ends.
 * Returns 1 when the record still existed, else 0.
 */
export const RETURN = `
local kind, holder, limit, now = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local extra, free, inflight, slotMs = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local key, meta = KEYS[1], KEYS[2]
local mine = redis.call("HGET", meta, holder)
redis.call("HDEL", meta, holder, holder .. ":e", holder .. ":a")
if kind == 1 then
  if mine and free > 0 then
    local bucket = redis.call("HMGET", key, "refilledAt", "tokens")
    if bucket[1] then
      local refilledAt, tokens = tonumber(bucket[1]), tonumber(bucket[2])
      if now >= refilledAt + ${REFILL_MS} then
        local refills = math.floor((now - refilledAt) / ${REFILL_MS})
        tokens = math.min(limit, tokens + refills * extra)
        refilledAt = refilledAt + refills * ${REFILL_MS}
      end
      local left = math.min(limit, tokens + free)
      redis.call("HSET", key, "refilledAt", refilledAt, "tokens", left)
      local ttl = math.ceil((limit - left) / extra) * ${REFILL_MS}
      if ttl > 0 then redis.call("PEXPIRE", key, ttl) else redis.call("DEL", key) end
    end
  end
elseif kind == 3 then
  if mine then
    redis.call("DECRBY", key, math.floor(tonumber(mine)) - inflight)
  elseif inflight > 0 then
    redis.call("INCRBY", key, inflight)
  end
else
  if inflight > 0 then
    for n = 1, inflight do redis.call("ZADD", key, now + slotMs, "r:" .. holder .. ":" .. n) end
    local last = redis.call("ZRANGE", key, -1, -1, "WITHSCORES")
    redis.call("PEXPIRE", key, math.max(slotMs, math.ceil(tonumber(last[2]) - now)))
  end
end
if mine then return 1 end
return 0
`;

/**
 * Settles the budgets of one finished request (its end batch).
 *
 * KEYS: per budget its counter and lease hash. ARGV: per budget: mode, holder, actual, and reserved
 * (mode 2) or beyond (mode 1).
 * - mode 1 (admitted from a lease that is still held): the usage leaves the record (the counter
 *   already counts it through the record), except `beyond`, the part of it the lease could not
 *   absorb (usage above the reservation and the lease's free capacity), which is added to the
 *   counter; if the record was taken back meanwhile, the usage is counted on the counter instead.
 * - mode 2 (the lease was returned while the request ran, so its reservation became direct): the
 *   counter moves from the reservation to the usage.
 */
export const SETTLE = `
for i = 1, #KEYS / 2 do
  local key, meta = KEYS[2 * i - 1], KEYS[2 * i]
  local mode, holder, actual, reserved = tonumber(ARGV[4 * i - 3]), ARGV[4 * i - 2], tonumber(ARGV[4 * i - 1]), tonumber(ARGV[4 * i])
  if mode == 1 then
    if redis.call("HEXISTS", meta, holder) == 1 then
      redis.call("HINCRBY", meta, holder, reserved - actual)
      if reserved > 0 then redis.call("INCRBY", key, reserved) end
    else
      redis.call("INCRBY", key, actual)
    end
  elseif actual ~= reserved then
    redis.call("INCRBY", key, actual - reserved)
  end
end
return 0
`;
/**
 * SETTLE's SHA-1, for EVALSHA (write-batch.ts). A constant, so sending needs no await (Workers can
 * only hash asynchronously); tests/worker/limits-write-batch.test.ts checks it against the text.
 */
export const SETTLE_SHA = "405875348f97aeb8275211734d9a0d673f6b37f2";

/**
 * Takes `amount` from a token bucket unconditionally, letting it go below zero: usage the engine
 * already served beyond the admission estimate must be counted. The next lease or admission refills
 * from the negative balance and waits until the overrun has been paid back.
 * KEYS: the bucket. ARGV: limit, refill interval (ms), refill per interval, now (ms), amount.
 */
export const CHARGE = `
local limit, interval, refill, now, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local bucket = redis.call("HMGET", KEYS[1], "refilledAt", "tokens")
local refilledAt, tokens = now, limit
if bucket[1] then
  refilledAt = tonumber(bucket[1])
  tokens = tonumber(bucket[2])
end
if now >= refilledAt + interval then
  local refills = math.floor((now - refilledAt) / interval)
  tokens = math.min(limit, tokens + refills * refill)
  refilledAt = refilledAt + refills * interval
end
local remaining = tokens - amount
redis.call("HSET", KEYS[1], "refilledAt", refilledAt, "tokens", remaining)
local ttl = math.ceil((limit - remaining) / refill) * interval
if ttl > 0 then redis.call("PEXPIRE", KEYS[1], ttl) end
return remaining
`;
