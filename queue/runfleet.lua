#!lua name=runfleet
-- runfleet's Redis Functions library: every state transition of a job and its
-- tasks, each an atomic step over the keys of one job's hash tag {j:<id>}.
--
-- Every function takes KEYS[1] = the job hash "rf:{j:<id>}:job"; the task,
-- held, failed, outbox and progress keys are derived from it and share its
-- hash tag, so each call stays on one Redis Cluster slot. Task streams live
-- under a cluster's tag {c:<slug>}; functions never write them (only the
-- job's own event stream, below). Tasks that become
-- ready are written to the job's outbox (seq -> stream key) and returned; the
-- caller XADDs them and then HDELs the outbox fields. A caller that dies in
-- between leaves the outbox for a later republish: duplicates are harmless,
-- because streams are hints and the claim step checks task state. Hints read
-- while the job is failed or canceled go to the held hash, republished on
-- retry. A staged subtask set is recorded in the staged hash until its
-- parent's attempt commits it (rf_complete) or rf_drop_stage deletes the
-- chunks of an attempt that can no longer commit.
--
-- Job events: the job's event stream rf:{j:<id>}:events (queue/events.go)
-- gets an entry from the same atomic step that changes the job, so a waiter
-- blocked on it (XREAD) learns of the change without polling. Fields:
--   e    kind: state (the job's state changed: set_job_state, rf_claim's
--        start, rf_retry) | progress (an rf_complete or rf_fail call changed
--        committed progress) | tasks (such a call changed task counts only;
--        none within EVENT_TICK_MS of the job's last event)
--   s    the job's new state (state events)    t  unix ms of the change
-- A call adds at most one progress or tasks event, never one per task. The
-- stream is capped (XADD MAXLEN ~ EVENTS_MAXLEN) and rf_purge removes it with
-- the job. The job hash's "ev" field holds the time of its last event. A new
-- function that finishes tasks or changes the job's state must add events
-- the same way (job_updated, set_job_state), or waiters see it only at
-- their fallback read.
--
-- Task hash fields:
--   st   state: queued | running | computed | failed | skipped | failed_optional
--   nm v cl in    name, version "vM.m", cluster, input JSON
--   p    parent seq ("" for the root)
--   mr   max retries    f  failures counted against mr    att  executions started
--   opt  "1" when Optional()    oas  comma list of optional ancestors incl. self
--   d    unresolved dependency count    dn  comma list of dependent seqs
--   k    unresolved children    kb kn  first seq and count of committed children
--   done "1" when complete (computed/failed_optional and every child resolved);
--        left out for a computed task without children, which is complete
--   own  runner holding (or last holding) it    disp  display text    err  last error
--   tq ts te  queued / (last) started / ended unix ms
--   ts1  first started, written from the second attempt on (else ts)
--   lost times the task lost its runner and was queued again
--   sd   start delay of the current attempt: ms from its claim (ts) until the
--        runner started it; left out when 0
--   pg   last committed progress of this task, JSON [[label, total, done], ...]
--
-- Task buckets: a computed task without children or dependents (most tasks
-- of a big job) never changes again, so rf_complete moves it out of its own
-- hash, whose key costs more than its fields, into one field of a bucket
-- hash of BUCKET tasks, rf:{j:<id>}:tb:<seq // BUCKET>: seq -> record, the
-- fields below joined by SEP (ASCII unit separator; a task with SEP in a
-- field keeps its hash). Small records keep the bucket a listpack. The
-- bucket's field "#<ident>" counts its records of that identifier, so a
-- reader can tell a bucket of one task type's records without reading
-- them (queue.GraphSummary).
--   ident  index into the job's "ids" hash ("nm SEP v SEP cl" -> index and
--          "#<index>" -> "nm SEP v SEP cl"; "#" counts them)
--   disp in att f mr opt err own    as in the task hash
--   tq     ms after the job's "created"    ts  ms after tq    te  ms after ts
--   p ts1 lost sd                   as in the task hash
-- Dropped: st (computed), done, k/kb/kn/d/dn (none), oas, pg (a computed
-- task never runs again, so its progress is never replaced). Readers in
-- queue/packed.go fall back to the bucket when the task hash is missing.

-- ---- helpers shared by the functions below ----

local STATES = {'queued', 'running', 'computed', 'failed', 'skipped', 'failed_optional'}

local function prefix_of(jk)
  return string.sub(jk, 1, -4) -- strip "job"
end

local function tkey(pre, seq)
  return pre .. 't:' .. seq
end

local BUCKET = 64
local SEP = '\31'

-- ident_index interns a task identifier in the job's ids hash; cache keeps
-- what one call looked up, by name, version and cluster (no key string is
-- built for a hit: this runs for most completed tasks).
local function ident_index(pre, nm, v, cl, cache)
  local byv = cache[nm]
  if not byv then byv = {}; cache[nm] = byv end
  local bycl = byv[v]
  if not bycl then bycl = {}; byv[v] = bycl end
  local idx = bycl[cl]
  if idx then return idx end
  local key = nm .. SEP .. v .. SEP .. cl
  local ik = pre .. 'ids'
  idx = redis.call('HGET', ik, key)
  if not idx then
    idx = tostring(redis.call('HINCRBY', ik, '#', 1) - 1)
    redis.call('HSET', ik, key, idx, '#' .. idx, key)
  end
  bycl[cl] = idx
  return idx
end

-- bucket_put moves task seq into its bucket as record rec of identifier
-- index idx, counting it under "#<idx>", and deletes its hash tk.
local function bucket_put(pre, seq, tk, idx, rec)
  local bk = pre .. 'tb:' .. math.floor(tonumber(seq) / BUCKET)
  redis.call('HSET', bk, seq, rec)
  redis.call('HINCRBY', bk, '#' .. idx, 1)
  redis.call('DEL', tk)
  return true
end

-- PLAIN_FIELDS counts the fields of a task that ran once and has nothing
-- but what every subtask has (st nm v cl in p tq, from write_subtasks, and
-- own att ts, from its claim): HLEN tells such a task in O(1).
local PLAIN_FIELDS = 10

-- pack_plain is pack_leaf for a task with PLAIN_FIELDS fields: it reads
-- only fields that are there, and builds the record in one concatenation.
-- owner and att are the running attempt's, checked by the caller.
local function pack_plain(pre, seq, tk, owner, att, sd, now, created, cache)
  local t = redis.call('HMGET', tk, 'nm', 'v', 'cl', 'in', 'p', 'tq', 'ts')
  local tq, ts = tonumber(t[6]), tonumber(t[7])
  if not (t[1] and t[2] and t[3] and t[4] and t[5] and tq and ts) or string.find(t[4], SEP, 1, true)
    or string.find(t[1], SEP, 1, true) or string.find(owner, SEP, 1, true) then
    return false -- versions and cluster slugs cannot hold SEP; names and inputs might
  end
  local idx = ident_index(pre, t[1], t[2], t[3], cache)
  local rec = idx .. SEP .. SEP .. t[4] .. SEP .. att .. SEP .. SEP .. SEP
    .. SEP .. SEP .. owner .. SEP .. string.format('%d', tq - created) .. SEP .. string.format('%d', ts - tq)
    .. SEP .. string.format('%d', now - ts) .. SEP .. t[5] .. SEP .. SEP .. SEP .. sd
  return bucket_put(pre, seq, tk, idx, rec)
end

-- pack_leaf writes a task without children or dependents that computes now
-- straight into its bucket, instead of its hash (see "Task buckets" above),
-- and returns true; false leaves the hash to the caller. It reads the task
-- with one HGETALL (one pass over the hash; HMGET pays a pass for every
-- field that is missing, and most are); disp and sd are what this
-- execution committed ("" when none).
local function pack_leaf(pre, seq, tk, disp, sd, now, created, cache)
  local h, t = redis.call('HGETALL', tk), {}
  for i = 1, #h, 2 do t[h[i]] = h[i + 1] end
  if disp == '' then disp = t.disp or '' end
  if sd == '' then sd = t.sd or '' end
  local tq, ts = tonumber(t.tq), tonumber(t.ts)
  if not tq or not ts or not t.nm or not t.v or not t.cl or not created then return false end
  local inp, err, own = t['in'] or '', t.err or '', t.own or ''
  for _, f in ipairs({disp, inp, err, own, t.nm, t.v, t.cl}) do
    if string.find(f, SEP, 1, true) then return false end
  end
  local idx = ident_index(pre, t.nm, t.v, t.cl, cache)
  local rec = table.concat({idx, disp, inp, t.att or '',
    t.f or '', t.mr or '', t.opt or '', err, own,
    string.format('%d', tq - created), string.format('%d', ts - tq), string.format('%d', now - ts),
    t.p or '', t.ts1 or '', t.lost or '', sd}, SEP)
  return bucket_put(pre, seq, tk, idx, rec)
end

local function stream_key(cl, nm, v)
  return 'rf:{c:' .. cl .. '}:q:' .. nm .. ':' .. v
end

-- Counter deltas are gathered per call and written once at the end.
local function new_counts()
  return {}
end

local function move(cnt, from, to)
  if from then cnt[from] = (cnt[from] or 0) - 1 end
  if to then cnt[to] = (cnt[to] or 0) + 1 end
end

local function flush_counts(jk, cnt)
  for _, s in ipairs(STATES) do
    local n = cnt[s]
    if n and n ~= 0 then redis.call('HINCRBY', jk, 'c_' .. s, n) end
  end
end

local function split_csv(s)
  local out = {}
  if not s or s == '' then return out end
  for part in string.gmatch(s, '[^,]+') do out[#out + 1] = part end
  return out
end

-- make_ready records a queued task whose dependencies are met: it joins the
-- outbox and is appended to pub for the caller to XADD. The outbox value is
-- "<stream>|<nonce>", the nonce unique per call, so a caller clearing the
-- entry it published (rf_unbox) never clears a newer one for the same task.
local function make_ready(pre, seq, t, pub)
  if not pub.nonce then pub.nonce = redis.call('INCR', pre .. 'nonce') end
  local sk = stream_key(t.cl, t.nm, t.v) .. '|' .. pub.nonce
  redis.call('HSET', pre .. 'outbox', seq, sk)
  pub[#pub + 1] = sk
  pub[#pub + 1] = seq
end

-- EVENTS_MAXLEN caps a job's event stream: approximate trimming keeps it at
-- a few hundred entries at most. A waiter that falls that far behind reads
-- the job again (every event makes it read the job anyway).
local EVENTS_MAXLEN = 64
-- EVENT_TICK_MS is the least time between two "tasks" events of a job.
local EVENT_TICK_MS = 250

-- last_event is the time of the last event job_event added. A function that
-- passes a job's "ev" it read at its start to job_updated clears it first:
-- an event added since makes that read stale.
local last_event = nil

-- job_event adds an event to the job's stream; the caller stamps "ev".
local function job_event(jk, kind, state, now)
  last_event = now
  redis.call('XADD', prefix_of(jk) .. 'events', 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'e', kind, 's', state, 't', now)
end

-- job_updated ends a call that changed some task of the job: it stamps
-- "updated" and adds one event, a progress event when the call changed
-- committed progress, else a tasks event unless the job had an event in the
-- last EVENT_TICK_MS. ev is the job's "ev" field when the caller read it
-- already (false when missing), nil to read it here.
local function job_updated(jk, now, progressed, ev)
  local kind = 'progress'
  if not progressed then
    kind = 'tasks'
    if ev == nil then ev = redis.call('HGET', jk, 'ev') end
    if math.abs(tonumber(now) - tonumber(ev or 0)) < EVENT_TICK_MS then
      redis.call('HSET', jk, 'updated', now)
      return
    end
  end
  job_event(jk, kind, '', now)
  redis.call('HSET', jk, 'updated', now, 'ev', now)
end

local function set_job_state(jk, from_states, to, now)
  local cur = redis.call('HGET', jk, 'state')
  for _, s in ipairs(from_states) do
    if cur == s then
      redis.call('HSET', jk, 'state', to, 'updated', now, 'ev', now)
      job_event(jk, 'state', to, now)
      if to == 'completed' or to == 'failed' or to == 'canceled' then
        redis.call('HSET', jk, 'finished', now)
        -- A job with a notification URL records the pending notification in
        -- the same step that finishes it, so a crash before it is sent loses
        -- nothing; deliverers acknowledge it with rf_notified.
        local url = redis.call('HGET', jk, 'notify')
        if url and url ~= '' then
          redis.call('HSET', jk, 'npend', to .. '|' .. now, 'natt', 0)
        end
      end
      return true
    end
  end
  return false
end

-- resolve marks seq complete (or finally settled: failed_optional, skipped, or
-- a failure contained by an optional ancestor) and walks the consequences:
-- dependents lose one unresolved dependency, the parent loses one unresolved
-- child, and a parent that was waiting only on children becomes complete too.
-- known = {dn, p} when the caller already read them and the task needs no
-- done field (rf_complete: a computed task without children). With
-- parents (a table), the parent's decrement is gathered there instead, so a
-- batch of siblings costs one HINCRBY; apply_parent_counts applies it.
local resolve

-- Dependent lists longer than this many bytes (about 300 seqs) are walked
-- in chunks by rf_dependents instead of inside the resolving call.
local DEFER_DEPENDENTS_BYTES = 2000

-- release_dependent takes one unresolved dependency off dseq and queues it
-- once none is left.
local function release_dependent(pre, dseq, pub)
  local dk = tkey(pre, dseq)
  if redis.call('HINCRBY', dk, 'd', -1) == 0 then
    local dt = redis.call('HMGET', dk, 'st', 'cl', 'nm', 'v')
    if dt[1] == 'queued' then
      make_ready(pre, dseq, {cl = dt[2], nm = dt[3], v = dt[4]}, pub)
    end
  end
end

local function parent_done(jk, pre, parent, left, now, pub)
  if left > 0 then return end
  local pt = redis.call('HMGET', tkey(pre, parent), 'st', 'done')
  if pt[2] == '1' or (pt[1] ~= 'computed' and pt[1] ~= 'failed_optional') then return end
  resolve(jk, pre, parent, now, pub)
end

resolve = function(jk, pre, seq, now, pub, known, parents)
  local f = known
  if not f then
    local tk = tkey(pre, seq)
    redis.call('HSET', tk, 'done', '1')
    f = redis.call('HMGET', tk, 'dn', 'p')
  end
  if not f[1] or f[1] == '' then
    -- no dependents (most tasks)
  elseif #f[1] > DEFER_DEPENDENTS_BYTES then
    -- Too many dependents for one short call: rf_dependents walks them in
    -- chunks from a cursor in the outbox ("d:<seq>" -> byte offset).
    redis.call('HSET', pre .. 'outbox', 'd:' .. seq, 1)
    pub[#pub + 1] = ''
    pub[#pub + 1] = 'd:' .. seq
  else
    for _, dseq in ipairs(split_csv(f[1])) do release_dependent(pre, dseq, pub) end
  end
  local parent = f[2]
  if not parent or parent == '' then
    set_job_state(jk, {'submitted', 'running', 'canceled'}, 'completed', now)
    return
  end
  if parents then
    parents[parent] = (parents[parent] or 0) + 1
    return
  end
  parent_done(jk, pre, parent, redis.call('HINCRBY', tkey(pre, parent), 'k', -1), now, pub)
end

local function apply_parent_counts(jk, pre, parents, now, pub)
  for parent, n in pairs(parents) do
    parent_done(jk, pre, parent, redis.call('HINCRBY', tkey(pre, parent), 'k', -n), now, pub)
  end
end

-- apply_progress replaces the task's previous committed progress with this
-- execution's, so only the last execution of a task counts. pg is JSON:
-- [[label, total, done], ...] or ""; old is the task's stored pg (or false).
local function apply_progress(pre, tk, pg, old, packed)
  local prog = pre .. 'progress'
  if old then
    for _, e in ipairs(cjson.decode(old)) do
      redis.call('HINCRBY', prog, e[1] .. '\0total', -e[2])
      redis.call('HINCRBY', prog, e[1] .. '\0done', -e[3])
    end
  end
  if pg and pg ~= '' then
    for _, e in ipairs(cjson.decode(pg)) do
      redis.call('HINCRBY', prog, e[1] .. '\0total', e[2])
      redis.call('HINCRBY', prog, e[1] .. '\0done', e[3])
    end
    if not packed then redis.call('HSET', tk, 'pg', pg) end
  elseif old and not packed then
    redis.call('HDEL', tk, 'pg')
  end
end

-- Subtask records in ARGV use a fixed stride of SUB_STRIDE fields:
--   name, version, cluster, input, max_retries, optional ("1"/"0"),
--   dependency count, dependents (csv of indexes within the parent's set)
local SUB_STRIDE = 8

-- write_subtasks creates subtask hashes for parent at seqs base+first .. and
-- queues those without dependencies when publish is set. Only the parent's
-- commit links them (its kb/kn fields): staged tasks of an attempt that never
-- commits are orphans, never published and never listed.
local function write_subtasks(pre, parent, base, first, args, off, n, now, publish, pub)
  local parent_oas = redis.call('HGET', tkey(pre, parent), 'oas') or ''
  for i = 0, n - 1 do
    local o = off + i * SUB_STRIDE
    local seq = base + first + i
    local tk = tkey(pre, seq)
    if parent_oas == '' and args[o + 5] == '0' and args[o + 6] ~= '1' and args[o + 7] == '0' and args[o + 8] == '' then
      -- The common subtask (no retries, dependencies or optional
      -- ancestors): one call, no tables.
      redis.call('HSET', tk, 'st', 'queued', 'nm', args[o + 1], 'v', args[o + 2], 'cl', args[o + 3],
        'in', args[o + 4], 'p', parent, 'tq', now)
    else
      local dn = {}
      for _, idx in ipairs(split_csv(args[o + 8])) do dn[#dn + 1] = tostring(base + tonumber(idx)) end
      local oas = parent_oas
      if args[o + 6] == '1' then
        if oas == '' then oas = tostring(seq) else oas = oas .. ',' .. seq end
      end
      -- Zero and empty fields are left out (readers default them): fewer
      -- writes keep a chunk well under a millisecond or two.
      local f = {'st', 'queued', 'nm', args[o + 1], 'v', args[o + 2], 'cl', args[o + 3],
        'in', args[o + 4], 'p', parent, 'tq', now}
      if args[o + 5] ~= '0' then f[#f + 1] = 'mr'; f[#f + 1] = args[o + 5] end
      if args[o + 7] ~= '0' then f[#f + 1] = 'd'; f[#f + 1] = args[o + 7] end
      if args[o + 6] == '1' then f[#f + 1] = 'opt'; f[#f + 1] = '1' end
      if #dn > 0 then f[#f + 1] = 'dn'; f[#f + 1] = table.concat(dn, ',') end
      if oas ~= '' then f[#f + 1] = 'oas'; f[#f + 1] = oas end
      redis.call('HSET', tk, unpack(f))
    end
    if publish and args[o + 7] == '0' then
      make_ready(pre, tostring(seq), {cl = args[o + 3], nm = args[o + 1], v = args[o + 2]}, pub)
    end
  end
end

local function owned(t, owner, att)
  return t[1] == 'running' and t[2] == owner and t[3] == att
end

-- ---- submitting (queue/job.go: SubmitJob) ----

-- rf_submit creates a job and its root task, queued and in the outbox.
-- KEYS[1] job hash. ARGV: id, job name, cluster, now, task name, version,
-- input, max_retries, notification URL ("" for none), W3C traceparent of the
-- job's trace (job hash field "tp"; "" for none). The index entries
-- ("rf:jobs", and "rf:notify" for a notification URL) are written by the
-- caller first. Returns the publish list of the root task, {"<stream>|<nonce>",
-- "0"} (see make_ready), or fails with "ERR job exists".
redis.register_function('rf_submit', function(keys, args)
  local jk = keys[1]
  if redis.call('EXISTS', jk) == 1 then return redis.error_reply('ERR job exists') end
  local pre = prefix_of(jk)
  local now = args[4]
  redis.call('HSET', jk, 'id', args[1], 'name', args[2], 'cluster', args[3], 'state', 'submitted',
    'created', now, 'updated', now, 'next', 1, 'c_queued', 1, 'c_running', 0, 'c_computed', 0,
    'c_failed', 0, 'c_skipped', 0, 'c_failed_optional', 0)
  if args[9] and args[9] ~= '' then redis.call('HSET', jk, 'notify', args[9]) end
  if args[10] and args[10] ~= '' then redis.call('HSET', jk, 'tp', args[10]) end
  redis.call('HSET', tkey(pre, 0), 'st', 'queued', 'nm', args[5], 'v', args[6], 'cl', args[3],
    'in', args[7], 'mr', args[8], 'opt', '0', 'd', 0, 'dn', '', 'oas', '', 'p', '',
    'f', 0, 'att', 0, 'k', 0, 'tq', now)
  local pub = {}
  make_ready(pre, '0', {cl = args[3], nm = args[5], v = args[6]}, pub)
  return pub
end)

-- ---- claiming (queue/claimer.go: Claim) ----

-- claim_tasks hands the queued tasks named by args[from..] to owner,
-- appending per task handed out: seq, name, version, input, attempt and
-- parent seq ("" for the root) to out.
-- A task already running under this owner is handed out again (idempotent
-- claims). Seqs of tasks that are not queued (duplicates, old hints) are
-- dropped; those of a failed or canceled job go to the held hash for a
-- retry; tasks under a failed optional ancestor become skipped. jstate is
-- the job's state; a submitted job becomes running with its first start.
local function claim_tasks(jk, pre, owner, now, jstate, args, from, out, pub, cnt)
  local started, seen = false, {}
  for i = from, #args do
    local seq = args[i]
    local tk = tkey(pre, seq)
    -- The owner and cluster are read only on the rare paths that need them.
    local t = redis.call('HMGET', tk, 'st', 'd', 'oas', 'nm', 'v', 'in', 'att', 'p')
    if seen[seq] then
      -- a duplicate hint in this batch: nothing to do
    elseif t[1] == 'running' and redis.call('HGET', tk, 'own') == owner then
      -- Already this runner's: a retried call whose first reply was lost,
      -- or the runner recovering its own pending hints. Hand it out again;
      -- the runner skips tasks it is still executing.
      local n = #out
      out[n + 1] = seq; out[n + 2] = t[4]; out[n + 3] = t[5]; out[n + 4] = t[6]; out[n + 5] = tonumber(t[7]); out[n + 6] = t[8] or ''
    elseif t[1] ~= 'queued' or (t[2] and t[2] ~= '0') then
      -- stale: nothing to do
    elseif jstate ~= 'submitted' and jstate ~= 'running' then
      redis.call('HSET', pre .. 'held', seq, stream_key(redis.call('HGET', tk, 'cl'), t[4], t[5]))
    else
      local skip = false
      if t[3] and t[3] ~= '' then
        for _, a in ipairs(split_csv(t[3])) do
          if redis.call('HGET', tkey(pre, a), 'st') == 'failed_optional' then skip = true break end
        end
      end
      if skip then
        redis.call('HSET', tk, 'st', 'skipped', 'te', now)
        move(cnt, 'queued', 'skipped')
        resolve(jk, pre, seq, now, pub)
      else
        local att = tonumber(t[7] or 0) + 1
        if att == 1 then
          -- ts1 (first started) is left out while it equals ts: readers
          -- default it, and the second attempt writes it below.
          redis.call('HSET', tk, 'st', 'running', 'own', owner, 'att', att, 'ts', now)
        else
          local first = redis.call('HMGET', tk, 'ts1', 'ts')
          redis.call('HSET', tk, 'st', 'running', 'own', owner, 'att', att, 'ts', now, 'ts1', first[1] or first[2] or now)
        end
        move(cnt, 'queued', 'running')
        started = true
        local n = #out
        out[n + 1] = seq; out[n + 2] = t[4]; out[n + 3] = t[5]; out[n + 4] = t[6]; out[n + 5] = att; out[n + 6] = t[8] or ''
      end
    end
    seen[seq] = true
  end
  if started and jstate == 'submitted' then
    redis.call('HSET', jk, 'state', 'running', 'started', now, 'updated', now, 'ev', now)
    job_event(jk, 'state', 'running', now)
  end
end

-- rf_claim hands queued tasks of one job to a runner (see claim_tasks).
-- KEYS[1] job hash. ARGV: owner, now, seq...
-- Returns {publish list, then per task handed out: seq, name, version,
-- input, attempt, parent seq} as one flat list.
redis.register_function('rf_claim', function(keys, args)
  local jk = keys[1]
  local pre = prefix_of(jk)
  local out, pub, cnt = {false}, {}, new_counts()
  claim_tasks(jk, pre, args[1], args[2], redis.call('HGET', jk, 'state'), args, 3, out, pub, cnt)
  flush_counts(jk, cnt)
  out[1] = pub
  return out
end)

-- ---- committing results (queue/completer.go: Stage, Complete, Fail;
-- rf_expand also from queue/job.go: Expand, for a republisher) ----

-- rf_stage writes one chunk of a large subtask set before the parent commits.
-- KEYS[1] job hash. ARGV: owner, parent seq, attempt, base, first, now,
-- then subtask records. Fails with "ERR lost" unless the parent is still
-- running under this owner and attempt. Records the set in the staged hash
-- ("<parent>:<attempt>:<base>" -> furthest offset written). Returns the
-- number of subtasks written.
redis.register_function('rf_stage', function(keys, args)
  local jk = keys[1]
  local pre = prefix_of(jk)
  local t = redis.call('HMGET', tkey(pre, args[2]), 'st', 'own', 'att')
  if not owned(t, args[1], args[3]) then return redis.error_reply('ERR lost') end
  local n = (#args - 6) / SUB_STRIDE
  write_subtasks(pre, args[2], tonumber(args[4]), tonumber(args[5]), args, 6, n, args[6], false, nil)
  -- Record how far the set's chunks reach, in the same step that writes
  -- them: if this attempt never commits, rf_drop_stage finds every chunk.
  -- Chunks arrive in any order, so the record keeps the furthest end.
  local sk, field = pre .. 'staged', args[2] .. ':' .. args[3] .. ':' .. args[4]
  local reach = tonumber(args[5]) + n
  if reach > tonumber(redis.call('HGET', sk, field) or 0) then redis.call('HSET', sk, field, reach) end
  return n
end)

-- rf_complete commits successful executions of one job.
-- KEYS[1] job hash. ARGV: owner, now, item count, then per item a header of
-- 9 fields: seq, attempt, display, progress, subtask count, staged ("1" when
-- the subtasks were written by rf_stage at base), base, inline count, start
-- delay (ms from claim to start, "0" or "" when none); then inline count
-- subtask records.
-- Then, optionally, seqs to claim once the items are committed: a runner
-- refills the slots its results free in the same call (see claim_tasks).
-- Returns {results, publish list, claimed} where results holds "ok" or
-- "lost" per item and claimed is per task handed out: seq, name, version,
-- input, attempt, parent seq. A staged set gets a cursor "x:<seq>" in the outbox (the caller
-- publishes the set and acknowledges it with rf_expand) and leaves the
-- staged hash: it is linked now, never to be dropped.
redis.register_function('rf_complete', function(keys, args)
  local jk = keys[1]
  local pre = prefix_of(jk)
  local owner, now, n = args[1], args[2], tonumber(args[3])
  local res, pub, cnt, parents = {}, {}, new_counts(), {}
  -- One read of the job serves the claims, the event throttle and packing.
  local js = redis.call('HMGET', jk, 'state', 'ev', 'created')
  last_event = nil
  local created, idents = tonumber(js[3]), {}
  local o, committed, progressed = 3, false, false
  for _ = 1, n do
    local seq, att, disp, pg = args[o + 1], args[o + 2], args[o + 3], args[o + 4]
    local nsub, staged, base, inline = tonumber(args[o + 5]), args[o + 6], args[o + 7], tonumber(args[o + 8])
    local sd = args[o + 9]
    if sd == '0' then sd = '' end
    o = o + 9
    local tk = tkey(pre, seq)
    local t = redis.call('HMGET', tk, 'st', 'own', 'att', 'dn', 'p', 'pg')
    if not owned(t, owner, att) then
      res[#res + 1] = 'lost'
    else
      -- "own" stays: it records which runner computed the task.
      local packed = false
      if nsub == 0 and (not t[4] or t[4] == '') and created then
        if disp == '' and not t[6] and redis.call('HLEN', tk) == PLAIN_FIELDS then
          packed = pack_plain(pre, seq, tk, owner, att, sd, tonumber(now), created, idents)
        else
          packed = pack_leaf(pre, seq, tk, disp, sd, tonumber(now), created, idents)
        end
      end
      if packed then
        -- written to its bucket whole
      elseif nsub == 0 and disp == '' and sd == '' then
        redis.call('HSET', tk, 'st', 'computed', 'te', now) -- the common leaf: no table
      elseif nsub == 0 and disp == '' then
        redis.call('HSET', tk, 'st', 'computed', 'te', now, 'sd', sd)
      else
        local f = {'st', 'computed', 'te', now}
        if sd ~= '' then f[#f + 1] = 'sd'; f[#f + 1] = sd end
        if staged ~= '1' and nsub > 0 then
          base = redis.call('HINCRBY', jk, 'next', nsub) - nsub
          write_subtasks(pre, seq, base, 0, args, o, inline, now, true, pub)
        end
        if nsub > 0 then
          f[#f + 1] = 'k'; f[#f + 1] = nsub; f[#f + 1] = 'kb'; f[#f + 1] = base; f[#f + 1] = 'kn'; f[#f + 1] = nsub
        end
        if disp ~= '' then f[#f + 1] = 'disp'; f[#f + 1] = disp end
        redis.call('HSET', tk, unpack(f))
      end
      if pg ~= '' or t[6] then
        apply_progress(pre, tk, pg, t[6], packed)
        progressed = true
      end
      committed = true
      move(cnt, 'running', 'computed')
      cnt['queued'] = (cnt['queued'] or 0) + nsub
      if nsub == 0 then
        resolve(jk, pre, seq, now, pub, {t[4], t[5]}, parents)
      elseif staged == '1' then
        redis.call('HSET', pre .. 'outbox', 'x:' .. seq, base .. ',' .. nsub .. ',0')
        redis.call('HDEL', pre .. 'staged', seq .. ':' .. att .. ':' .. base)
      end
      res[#res + 1] = 'ok'
    end
    o = o + inline * SUB_STRIDE
  end
  apply_parent_counts(jk, pre, parents, now, pub)
  local claimed = {}
  if o < #args then
    claim_tasks(jk, pre, owner, now, js[1], args, o + 1, claimed, pub, cnt)
  end
  flush_counts(jk, cnt)
  if committed then
    job_updated(jk, now, progressed, last_event or js[2])
  else
    redis.call('HSET', jk, 'updated', now)
  end
  return {res, pub, claimed}
end)

-- rf_expand publishes a committed, staged subtask set chunk by chunk. The
-- set's cursor lives in the outbox ("x:<parent>" -> "base,total,next") and
-- stands in for per-task outbox entries, which would double the writes. The
-- committing runner publishes from memory and only acknowledges here (chunk
-- size 0); a republisher after a crash reads the tasks back.
-- KEYS[1] job hash. ARGV: parent seq, chunk size, acknowledged position
-- (the "next" a previous call returned, once its hints were XADDed; 0 at
-- first). Returns {next, publish list} for the chunk after the acknowledged
-- position, or {} once the whole set is through. A caller that dies before
-- acknowledging makes the next caller publish the chunk again: harmless.
redis.register_function('rf_expand', function(keys, args)
  local jk = keys[1]
  local pre = prefix_of(jk)
  local ob, field = pre .. 'outbox', 'x:' .. args[1]
  local cur = redis.call('HGET', ob, field)
  if not cur then return {} end
  local parts = split_csv(cur)
  local base, total, next_i = tonumber(parts[1]), tonumber(parts[2]), tonumber(parts[3])
  local acked = tonumber(args[3])
  if acked > next_i then
    next_i = acked
    if next_i >= total then
      redis.call('HDEL', ob, field)
      return {}
    end
    redis.call('HSET', ob, field, base .. ',' .. total .. ',' .. next_i)
  end
  local stop = math.min(total, next_i + tonumber(args[2]))
  local pub = {}
  for i = next_i, stop - 1 do
    local seq = tostring(base + i)
    local t = redis.call('HMGET', tkey(pre, seq), 'st', 'd', 'cl', 'nm', 'v')
    if t[1] == 'queued' and (not t[2] or t[2] == '0') then
      pub[#pub + 1] = stream_key(t[3], t[4], t[5])
      pub[#pub + 1] = seq
    end
  end
  return {tostring(stop), pub}
end)

-- MAX_LOSSES is how often a task may lose its runner (crash, vanished host)
-- and be queued again; the next loss fails it.
local MAX_LOSSES = 10

-- fail_finally settles a running task that will not run again: an optional
-- task becomes failed_optional and counts as settled; a failure below an
-- optional ancestor is contained by it; any other failure fails the job.
-- Returns the outcome: failed_optional, contained or failed.
local function fail_finally(jk, pre, seq, tk, opt, oas_csv, msg, now, cnt, pub)
  redis.call('HSET', tk, 'err', msg, 'te', now)
  if opt == '1' then
    redis.call('HSET', tk, 'st', 'failed_optional')
    move(cnt, 'running', 'failed_optional')
    resolve(jk, pre, seq, now, pub)
    return 'failed_optional'
  end
  redis.call('HSET', tk, 'st', 'failed')
  move(cnt, 'running', 'failed')
  local oas = split_csv(oas_csv)
  if #oas > 0 then
    -- The nearest optional ancestor absorbs the failure: it becomes
    -- failed_optional, its queued subtree is skipped when claimed, and this
    -- task counts as settled so the ancestor can finish.
    local ak = tkey(pre, oas[#oas])
    if redis.call('HGET', ak, 'st') == 'computed' then
      redis.call('HSET', ak, 'st', 'failed_optional')
      move(cnt, 'computed', 'failed_optional')
    end
    resolve(jk, pre, seq, now, pub)
    return 'contained'
  end
  redis.call('SADD', pre .. 'failed', seq)
  set_job_state(jk, {'submitted', 'running'}, 'failed', now)
  return 'failed'
end

-- rf_fail records failed executions of one job.
-- KEYS[1] job hash. ARGV: owner, now, item count, then per item: seq,
-- attempt, error text, display, progress, counts ("1": counts against
-- max_retries; "0": handed back, e.g. on shutdown; "2": the process running
-- it was lost, e.g. a release runner's worker crashed: counted like a lost
-- runner, failing the task on its 11th loss), attempt record (JSON, kept in
-- the job's att hash as "<seq>:<attempt>"; "" for none).
-- Returns {results, publish list}; results hold per item "retry", "failed",
-- "failed_optional", "contained" (failed inside an optional subtree), or "lost".
redis.register_function('rf_fail', function(keys, args)
  local jk = keys[1]
  local pre = prefix_of(jk)
  local owner, now, n = args[1], args[2], tonumber(args[3])
  local res, pub, cnt = {}, {}, new_counts()
  local changed, progressed = false, false
  for i = 0, n - 1 do
    local o = 3 + i * 7
    local seq, att, msg, disp, pg, counts = args[o + 1], args[o + 2], args[o + 3], args[o + 4], args[o + 5], args[o + 6]
    local tk = tkey(pre, seq)
    local t = redis.call('HMGET', tk, 'st', 'own', 'att', 'mr', 'f', 'opt', 'oas', 'cl', 'nm', 'v', 'pg')
    local owns = owned(t, owner, att)
    if owns and args[o + 7] ~= '' then redis.call('HSET', pre .. 'att', seq .. ':' .. att, args[o + 7]) end
    if not owns then
      res[#res + 1] = 'lost'
    elseif counts == '2' then
      changed = true
      local lost = tonumber(redis.call('HGET', tk, 'lost') or 0) + 1
      redis.call('HSET', tk, 'lost', lost)
      if lost > MAX_LOSSES then
        res[#res + 1] = fail_finally(jk, pre, seq, tk, t[6], t[7],
          msg .. ' (lost ' .. lost .. ' times; not retried again)', now, cnt, pub)
      else
        redis.call('HSET', tk, 'st', 'queued', 'err', msg, 'tq', now)
        move(cnt, 'running', 'queued')
        make_ready(pre, seq, {cl = t[8], nm = t[9], v = t[10]}, pub)
        res[#res + 1] = 'retry'
      end
    else
      changed = true
      if disp ~= '' then redis.call('HSET', tk, 'disp', disp) end
      local fails = tonumber(t[5] or 0)
      if counts == '1' then fails = fails + 1 end
      if counts ~= '1' or fails <= tonumber(t[4] or 0) then
        redis.call('HSET', tk, 'st', 'queued', 'f', fails, 'err', msg, 'tq', now)
        move(cnt, 'running', 'queued')
        make_ready(pre, seq, {cl = t[8], nm = t[9], v = t[10]}, pub)
        res[#res + 1] = 'retry'
      else
        if pg ~= '' or t[11] then
          apply_progress(pre, tk, pg, t[11])
          progressed = true
        end
        redis.call('HSET', tk, 'f', fails)
        res[#res + 1] = fail_finally(jk, pre, seq, tk, t[6], t[7], msg, now, cnt, pub)
      end
    end
  end
  flush_counts(jk, cnt)
  if changed then
    job_updated(jk, now, progressed)
  else
    redis.call('HSET', jk, 'updated', now)
  end
  return {res, pub}
end)

-- ---- job control (queue/job.go: RetryJob, CancelJob) ----

-- rf_retry puts every failed task of a failed or canceled job back to queued
-- and the job back to running; computed work is untouched.
-- KEYS[1] job hash. ARGV: now. Returns a publish list for the re-queued
-- failed tasks; the caller then releases the held hash with rf_unhold.
-- Fails with "ERR job is archived" once rf_purge has started on the job.
redis.register_function('rf_retry', function(keys, args)
  local jk = keys[1]
  local pre = prefix_of(jk)
  local now = args[1]
  local state = redis.call('HGET', jk, 'state')
  if not state then return redis.error_reply('ERR no such job') end
  if redis.call('HEXISTS', jk, 'arc') == 1 then return redis.error_reply('ERR job is archived') end
  if state == 'completed' then return redis.error_reply('ERR job is completed') end
  local pub, cnt = {}, new_counts()
  for _, seq in ipairs(redis.call('SMEMBERS', pre .. 'failed')) do
    local tk = tkey(pre, seq)
    local t = redis.call('HMGET', tk, 'st', 'cl', 'nm', 'v')
    if t[1] == 'failed' then
      redis.call('HSET', tk, 'st', 'queued', 'f', 0, 'tq', now)
      move(cnt, 'failed', 'queued')
      make_ready(pre, seq, {cl = t[2], nm = t[3], v = t[4]}, pub)
    end
  end
  redis.call('DEL', pre .. 'failed')
  if state == 'failed' or state == 'canceled' then
    local started = redis.call('HGET', jk, 'started')
    local to = 'running'
    if not started then to = 'submitted' end
    redis.call('HSET', jk, 'state', to, 'updated', now, 'ev', now)
    redis.call('HDEL', jk, 'finished')
    job_event(jk, 'state', to, now)
  end
  flush_counts(jk, cnt)
  return pub
end)

-- rf_cancel stops handing out a job's tasks. KEYS[1] job hash. ARGV: now.
-- Returns the job state after the call. Fails with "ERR job is archived"
-- once rf_purge has started on the job.
redis.register_function('rf_cancel', function(keys, args)
  local jk = keys[1]
  local state = redis.call('HGET', jk, 'state')
  if not state then return redis.error_reply('ERR no such job') end
  if redis.call('HEXISTS', jk, 'arc') == 1 then return redis.error_reply('ERR job is archived') end
  if state == 'completed' then return redis.error_reply('ERR job is completed') end
  set_job_state(jk, {'submitted', 'running'}, 'canceled', args[1])
  return redis.call('HGET', jk, 'state')
end)

-- rf_unhold moves up to a chunk of held hints (read while the job was
-- stopped) back to the outbox, if the job runs again.
-- KEYS[1] job hash. ARGV: chunk size. Returns a publish list, empty when
-- nothing is held or the job is stopped.
redis.register_function('rf_unhold', function(keys, args)
  local jk = keys[1]
  local pre = prefix_of(jk)
  local state = redis.call('HGET', jk, 'state')
  local pub = {}
  if state ~= 'submitted' and state ~= 'running' then return pub end
  local held = pre .. 'held'
  local kv = redis.call('HRANDFIELD', held, tonumber(args[1]), 'WITHVALUES')
  if not pub.nonce then pub.nonce = redis.call('INCR', pre .. 'nonce') end
  for i = 1, #kv, 2 do
    local v = kv[i + 1] .. '|' .. pub.nonce
    redis.call('HDEL', held, kv[i])
    redis.call('HSET', pre .. 'outbox', kv[i], v)
    pub[#pub + 1] = v
    pub[#pub + 1] = kv[i]
  end
  return pub
end)

-- ---- publishing (queue/job.go: Publish) ----

-- rf_dependents releases the next chunk of a long dependent list deferred by
-- resolve. KEYS[1] job hash. ARGV: seq, chunk size. Returns {done, publish
-- list} where done is 1 once the whole list is through.
redis.register_function('rf_dependents', function(keys, args)
  local jk = keys[1]
  local pre = prefix_of(jk)
  local field = 'd:' .. args[1]
  local pos = tonumber(redis.call('HGET', pre .. 'outbox', field))
  local pub = {}
  if not pos then return {1, pub} end
  local dn = redis.call('HGET', tkey(pre, args[1]), 'dn') or ''
  for _ = 1, tonumber(args[2]) do
    if pos > #dn then break end
    local e = string.find(dn, ',', pos, true) or (#dn + 1)
    release_dependent(pre, string.sub(dn, pos, e - 1), pub)
    pos = e + 1
  end
  if pos > #dn then
    redis.call('HDEL', pre .. 'outbox', field)
    return {1, pub}
  end
  redis.call('HSET', pre .. 'outbox', field, pos)
  return {0, pub}
end)

-- rf_unbox clears outbox entries their caller has published, each only if
-- it still holds the value that caller saw. KEYS[1] job hash. ARGV: seq,
-- value pairs. Returns how many were cleared.
redis.register_function('rf_unbox', function(keys, args)
  local ob = prefix_of(keys[1]) .. 'outbox'
  local n = 0
  for i = 1, #args - 1, 2 do
    if redis.call('HGET', ob, args[i]) == args[i + 1] then
      redis.call('HDEL', ob, args[i])
      n = n + 1
    end
  end
  return n
end)

-- ---- reclaiming dead runners' tasks (queue/fleet.go) ----

-- rf_reclaim settles tasks whose hints a dead runner left pending.
-- KEYS[1] job hash. ARGV: dead runner id, now, seq...
-- A task still running under that runner is queued again without counting
-- against max_retries, or fails on its 11th loss. A queued task whose hint
-- the runner read but never claimed is made ready again. Anything else is
-- left alone. Returns {outcomes, publish list}; outcomes hold per seq
-- "requeued", "lost_too_often" (then failed, failed_optional or contained
-- via fail_finally), "republished" or "none".
redis.register_function('rf_reclaim', function(keys, args)
  local jk = keys[1]
  local pre = prefix_of(jk)
  local dead, now = args[1], args[2]
  local res, pub, cnt, seen = {}, {}, new_counts(), {}
  for i = 3, #args do
    local seq = args[i]
    local tk = tkey(pre, seq)
    local t = redis.call('HMGET', tk, 'st', 'own', 'lost', 'd', 'opt', 'oas', 'cl', 'nm', 'v', 'att', 'ts')
    if seen[seq] then
      res[#res + 1] = 'none'
    elseif t[1] == 'running' and t[2] == dead then
      -- The attempt's record: its runner never reported, so what is known
      -- is who held it, since when, and when it was found lost.
      local rec = {number = tonumber(t[10] or 0), runner = dead, outcome = 'lost', finished = tonumber(now),
        error = 'runner ' .. dead .. ' was lost while running this task'}
      if t[11] then rec.claimed = tonumber(t[11]) end
      redis.call('HSET', pre .. 'att', seq .. ':' .. (t[10] or '0'), cjson.encode(rec))
      local lost = tonumber(t[3] or 0) + 1
      redis.call('HSET', tk, 'lost', lost)
      if lost > MAX_LOSSES then
        local msg = 'lost its runner ' .. lost .. ' times (the last was ' .. dead .. '); not retried again'
        res[#res + 1] = fail_finally(jk, pre, seq, tk, t[5], t[6], msg, now, cnt, pub)
      else
        redis.call('HSET', tk, 'st', 'queued', 'tq', now, 'err', 'runner ' .. dead .. ' was lost while running this task')
        move(cnt, 'running', 'queued')
        make_ready(pre, seq, {cl = t[7], nm = t[8], v = t[9]}, pub)
        res[#res + 1] = 'requeued'
      end
    elseif t[1] == 'queued' and (not t[4] or t[4] == '0') then
      make_ready(pre, seq, {cl = t[7], nm = t[8], v = t[9]}, pub)
      res[#res + 1] = 'republished'
    else
      res[#res + 1] = 'none'
    end
    seen[seq] = true
  end
  flush_counts(jk, cnt)
  return {res, pub}
end)

-- ---- sweep: staged sets that never commit (queue/stage_gc.go), archived
-- jobs (queue/archive.go) ----

-- rf_drop_stage deletes, one chunk per call, the task hashes of a staged
-- subtask set whose attempt can no longer commit: its parent is not running
-- under that attempt any more (it failed, was handed back or reclaimed, or
-- its commit was refused as lost), so nothing will ever link the set.
-- KEYS[1] job hash. ARGV: staged field "<parent>:<attempt>:<base>", most
-- task hashes to delete. Deletes from the set's far end and keeps the rest
-- of the range in the record, so a call cut short is resumed by the next.
-- Returns {outcome, deleted}: outcome "live" (the attempt still runs:
-- nothing deleted), "more" (call again) or "done" (range and record gone);
-- deleted counts the task hashes this call removed.
redis.register_function('rf_drop_stage', function(keys, args)
  local pre = prefix_of(keys[1])
  local sk, field = pre .. 'staged', args[1]
  local reach = tonumber(redis.call('HGET', sk, field))
  if not reach then return {'done', 0} end
  local parent, att, base = string.match(field, '^(%d+):(%d+):(%d+)$')
  if not parent then
    redis.call('HDEL', sk, field)
    return {'done', 0}
  end
  local t = redis.call('HMGET', tkey(pre, parent), 'st', 'att', 'kb')
  if t[1] == 'running' and t[2] == att then return {'live', 0} end
  if t[3] == base then
    -- The parent links exactly this set: it was committed after all.
    redis.call('HDEL', sk, field)
    return {'done', 0}
  end
  local stop = math.max(0, reach - tonumber(args[2]))
  local ks = {}
  for i = stop, reach - 1 do ks[#ks + 1] = tkey(pre, tonumber(base) + i) end
  local n = 0
  if #ks > 0 then n = redis.call('UNLINK', unpack(ks)) end
  if stop == 0 then
    redis.call('HDEL', sk, field)
    return {'done', n}
  end
  redis.call('HSET', sk, field, stop)
  return {'more', n}
end)

-- ---- task logs (queue/logs.go) ----

-- rf_log appends task log records to the job's log stream rf:{j:<id>}:logs
-- (fields t = task seq, -1 for a job-level marker, and r = the record JSON)
-- while the record bytes the job stored (job hash "lgb") stay within the
-- cap. The first record that would pass it is dropped, with every record
-- after it, and the marker record is added once in its place ("lgx" = 1).
-- Nothing is written for a job that is gone or being purged ("arc"), so a
-- late batch never leaves a stream behind an archived job.
-- KEYS[1] job hash. ARGV: cap in bytes, marker record JSON, then pairs of
-- task seq and record JSON. Returns how many records were dropped, or -1
-- when the job is gone.
-- rf_runner_context records a runner's context (queue/attempts.go) in a job
-- it executes tasks of, once per runner: later calls change nothing. A job
-- that is gone or being purged gets nothing, so a late call never leaves a
-- key behind. KEYS[1] job hash. ARGV: runner id, context JSON. Returns 1
-- when it wrote the context.
redis.register_function('rf_runner_context', function(keys, args)
  local j = redis.call('HMGET', keys[1], 'state', 'arc')
  if not j[1] or j[2] then return 0 end
  return redis.call('HSETNX', prefix_of(keys[1]) .. 'runners', args[1], args[2])
end)

redis.register_function('rf_log', function(keys, args)
  local jk = keys[1]
  local j = redis.call('HMGET', jk, 'state', 'arc', 'lgb', 'lgx')
  if not j[1] or j[2] then return -1 end
  local cap, used, capped = tonumber(args[1]), tonumber(j[3] or 0), j[4] == '1'
  local lk = prefix_of(jk) .. 'logs'
  local dropped, stored = 0, 0
  for i = 3, #args - 1, 2 do
    local rec = args[i + 1]
    if not capped and used + #rec > cap then
      capped = true
      redis.call('XADD', lk, '*', 't', '-1', 'r', args[2])
      redis.call('HSET', jk, 'lgx', '1')
    end
    if capped then
      dropped = dropped + 1
    else
      redis.call('XADD', lk, '*', 't', args[i], 'r', rec)
      used = used + #rec
      stored = stored + 1
    end
  end
  if stored > 0 then redis.call('HSET', jk, 'lgb', used) end
  return dropped
end)

-- JOB_KEYS are the keys of a job's hash tag besides the job hash and its
-- task hashes (see queue/keys.go): rf_purge removes these. A new per-job
-- key must be added here, or archived jobs leave it behind.
local JOB_KEYS = {'outbox', 'held', 'failed', 'progress', 'nonce', 'staged', 'nlock', 'alock', 'events', 'att', 'runners', 'logs', 'cache', 'cachex', 'cacheurls', 'ids'}

-- rf_purge removes an archived job from Redis, one chunk per call. The
-- first call checks the job is still what was archived: finished, "updated"
-- unchanged, no task running and no notification pending; it then marks the
-- job ("arc" = task hashes left), after which rf_retry and rf_cancel refuse
-- it. Task hashes go first, highest seq first; the last call removes the
-- other keys and the job hash together, so a caller cut short resumes.
-- KEYS[1] job hash. ARGV: the job's "updated" value when it was archived,
-- most task hashes to delete per call.
-- Returns "more" (call again) or "done" (nothing of the job is left), or
-- fails with "ERR changed" (nothing deleted) when the job changed since it
-- was archived.
redis.register_function('rf_purge', function(keys, args)
  local jk = keys[1]
  local pre = prefix_of(jk)
  local j = redis.call('HMGET', jk, 'state', 'updated', 'c_running', 'npend', 'arc', 'next')
  local left = tonumber(j[5])
  if not left then
    if j[1] then
      if (j[1] ~= 'completed' and j[1] ~= 'failed' and j[1] ~= 'canceled') or j[2] ~= args[1]
        or (j[3] and j[3] ~= '0') or (j[4] and j[4] ~= '') then
        return redis.error_reply('ERR changed')
      end
      left = tonumber(j[6] or 0)
    else
      left = 0 -- no job record: only leftovers remain
    end
  end
  local stop = math.max(0, left - tonumber(args[2]))
  local ks = {}
  for i = stop, left - 1 do ks[#ks + 1] = tkey(pre, i) end
  -- The buckets of these tasks (a bucket reaching below stop goes in a
  -- later round, with its lowest task).
  for b = math.ceil(stop / BUCKET), math.floor((left - 1) / BUCKET) do
    if b * BUCKET >= stop and b * BUCKET <= left - 1 then ks[#ks + 1] = pre .. 'tb:' .. b end
  end
  if #ks > 0 then redis.call('UNLINK', unpack(ks)) end
  if stop > 0 then
    redis.call('HSET', jk, 'arc', stop)
    return 'more'
  end
  ks = {jk}
  for _, s in ipairs(JOB_KEYS) do ks[#ks + 1] = pre .. s end
  redis.call('UNLINK', unpack(ks))
  return 'done'
end)

-- ---- deployments (queue/deploy.go) ----
-- One active release per workflow per cluster, under the cluster's tag
-- {c:<slug>} (deploy.go passes every key name):
--   rf:{c:<slug>}:deploys    hash workflow -> deployment JSON: {workflow,
--                            release, tasks ["Name@vM.m", ...], deployed_at
--                            (unix ms), by}
--   rf:{c:<slug>}:deployrev  revision, INCRed by every change
--   rf:{c:<slug>}:idents     the cluster's identifier registry
-- Every change PUBLISHes the new revision on the cluster's deployments
-- channel inside the same call, so no change goes unannounced.

-- deployed_claims returns the "name\0major" pairs a deployment's task list
-- ("Name@vM.m" strings; names may hold "@", versions never do) claims.
local function deployed_claims(tasks)
  local out = {}
  for _, s in ipairs(tasks or {}) do
    local name, major = string.match(s, '^(.*)@v(%d+)%.%d+$')
    if name then out[#out + 1] = {name .. '\0' .. major, s} end
  end
  return out
end

-- rf_deploy makes a release the active one of its workflow in a cluster.
-- KEYS[1] deployments hash, KEYS[2] revision counter, KEYS[3] identifier
-- registry. ARGV: channel, workflow, release, deployment JSON, then per task
-- of the release: name, version, major.
-- Refuses (changing nothing) when another workflow deployed to the cluster
-- has a task of the same name and major version: both would claim it.
-- Returns {"ok", previous release or "", revision}; {"same", release,
-- revision} when that release is already the active one (nothing changes,
-- nothing is announced); or {"conflict", new task "Name@vM.m", other
-- workflow, other release, other task}.
redis.register_function('rf_deploy', function(keys, args)
  local dk, rk, ik = keys[1], keys[2], keys[3]
  local channel, wf, rel, rec = args[1], args[2], args[3], args[4]
  local mine = {}
  for i = 5, #args - 2, 3 do
    mine[args[i] .. '\0' .. args[i + 2]] = args[i] .. '@' .. args[i + 1]
  end
  local all = redis.call('HGETALL', dk)
  local previous = ''
  for i = 1, #all, 2 do
    local other = cjson.decode(all[i + 1])
    if all[i] == wf then
      previous = other.release or ''
    else
      for _, c in ipairs(deployed_claims(other.tasks)) do
        if mine[c[1]] then
          return {'conflict', mine[c[1]], all[i], other.release or '', c[2]}
        end
      end
    end
  end
  local members = {}
  for i = 5, #args - 2, 3 do
    members[#members + 1] = args[i] .. '\0' .. args[i + 1]
    if #members == 500 then
      redis.call('SADD', ik, unpack(members))
      members = {}
    end
  end
  if #members > 0 then redis.call('SADD', ik, unpack(members)) end
  if previous == rel then
    return {'same', rel, tonumber(redis.call('GET', rk) or 0)}
  end
  redis.call('HSET', dk, wf, rec)
  local rev = redis.call('INCR', rk)
  redis.call('PUBLISH', channel, rev)
  return {'ok', previous, rev}
end)

-- rf_undeploy removes a workflow's deployment from a cluster.
-- KEYS[1] deployments hash, KEYS[2] revision counter. ARGV: channel,
-- workflow. The identifiers stay registered: jobs submitted for them wait
-- for a runner instead of being refused. Returns {"ok", removed release,
-- revision} or {"none"} when the workflow is not deployed there.
redis.register_function('rf_undeploy', function(keys, args)
  local dk, rk = keys[1], keys[2]
  local channel, wf = args[1], args[2]
  local cur = redis.call('HGET', dk, wf)
  if not cur then return {'none'} end
  redis.call('HDEL', dk, wf)
  local rev = redis.call('INCR', rk)
  redis.call('PUBLISH', channel, rev)
  return {'ok', cjson.decode(cur).release or '', rev}
end)

-- ---- control plane (queue/control.go) ----

-- rf_put_named stores a named control-plane record (a token, an
-- automation) and claims its name, or neither.
-- KEYS[1] names hash (name -> id), KEYS[2] records hash (id -> record).
-- ARGV: name, id, record. Returns 1, or 0 when the name is taken.
redis.register_function('rf_put_named', function(keys, args)
  if redis.call('HSETNX', keys[1], args[1], args[2]) == 0 then return 0 end
  redis.call('HSET', keys[2], args[2], args[3])
  return 1
end)

-- rf_notified acknowledges a delivered job notification: it clears the
-- pending notification only if it is still the one delivered (a retried job
-- that finished again has a newer one). KEYS[1] job hash. ARGV: the "npend"
-- value delivered. Returns 1 when cleared, 0 otherwise.
redis.register_function('rf_notified', function(keys, args)
  if redis.call('HGET', keys[1], 'npend') ~= args[1] then return 0 end
  redis.call('HDEL', keys[1], 'npend', 'natt')
  return 1
end)

-- rf_take takes one request from a token bucket.
-- KEYS[1] the bucket hash (fields tokens, ts). ARGV: rate per second,
-- burst, now ms. Returns {1, 0} when allowed, else {0, ms until one request
-- is allowed}. The bucket expires once it would be full again.
redis.register_function('rf_take', function(keys, args)
  local rate, burst, now = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  local b = redis.call('HMGET', keys[1], 'tokens', 'ts')
  local tokens, ts = tonumber(b[1]), tonumber(b[2])
  if not tokens then tokens, ts = burst, now end
  if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end
  local ok, wait = 1, 0
  if tokens >= 1 then
    tokens = tokens - 1
  else
    ok, wait = 0, math.ceil((1 - tokens) * 1000 / rate)
  end
  redis.call('HSET', keys[1], 'tokens', tostring(tokens), 'ts', math.max(now, ts))
  redis.call('PEXPIRE', keys[1], math.ceil(burst * 1000 / rate) + 1000)
  return {ok, wait}
end)

-- ---- job cache (queue/cache.go) ----
-- A job's Redis cache lives in its tag: rf:{j:<id>}:cache (hash key -> value)
-- and rf:{j:<id>}:cachex (sorted set of the same keys, all scored 0, for
-- sorted paged listings by ZRANGE BYLEX). rf:{j:<id>}:cacheurls is the set of
-- object-store cache URLs the job's tasks used, read when the job is archived
-- to delete those caches. All three are in JOB_KEYS, so rf_purge removes them.
-- Writes check the job exists and is not being purged, so no write can
-- recreate a key of a job that left Redis.

local function cache_job_alive(jk)
  local j = redis.call('HMGET', jk, 'state', 'arc')
  return j[1] and not j[2]
end

-- rf_cache_put stores one value. KEYS[1] job hash. ARGV: key, value.
-- Returns 1, or fails with "ERR nojob" when the job is gone.
redis.register_function('rf_cache_put', function(keys, args)
  if not cache_job_alive(keys[1]) then return redis.error_reply('ERR nojob') end
  local pre = prefix_of(keys[1])
  redis.call('HSET', pre .. 'cache', args[1], args[2])
  redis.call('ZADD', pre .. 'cachex', 0, args[1])
  return 1
end)

-- rf_cache_use records that the job's tasks use the object-store cache at
-- URL ARGV[1]. KEYS[1] job hash. Returns 1, or fails with "ERR nojob".
redis.register_function('rf_cache_use', function(keys, args)
  if not cache_job_alive(keys[1]) then return redis.error_reply('ERR nojob') end
  redis.call('SADD', prefix_of(keys[1]) .. 'cacheurls', args[1])
  return 1
end)
