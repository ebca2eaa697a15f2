package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/runfleet/runfleet/rftype"
)

// Runner liveness. Every key lives under the cluster's tag {c:<slug>}:
//
//	rf:{c:<slug>}:hb:<runner>         heartbeat, a key with a TTL: the runner is alive while it exists
//	rf:{c:<slug>}:runners             sorted set runner -> heartbeat deadline (unix ms), to find the dead
//	rf:{c:<slug>}:runner:<runner>     hash: streams (JSON), host, pid, started, version,
//	                                  concurrency, devices (JSON), ttl (ms); the last four
//	                                  are absent in entries of older runners
//	rf:{c:<slug>}:reclaiming:<runner> lock held by the runner reclaiming a dead one
//
// What a runner holds is not recorded separately: it is the set of its
// pending (read, unacknowledged) stream entries. When its heartbeat expires,
// any live runner settles them with rf_reclaim.
func heartbeatKey(cluster, id string) string { return clusterPrefix(cluster) + "hb:" + id }
func runnersKey(cluster string) string       { return clusterPrefix(cluster) + "runners" }
func runnerKey(cluster, id string) string    { return clusterPrefix(cluster) + "runner:" + id }
func reclaimLockKey(cluster, id string) string {
	return clusterPrefix(cluster) + "reclaiming:" + id
}

// RunnerInfo describes a runner process in the cluster's registry.
type RunnerInfo struct {
	ID      string    `json:"id"`
	Streams []string  `json:"-"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Version is the runfleet build the runner runs; empty for runners of
	// releases that did not record it.
	Version string `json:"version"`
	// Concurrency is how many tasks the runner runs at once; 0 when not
	// recorded.
	Concurrency int `json:"concurrency"`
	// Devices are the GPUs the runner hands to its executions, one each.
	Devices []rftype.Device `json:"devices"`
	// HeartbeatTTL is how long the runner counts as alive after a beat.
	HeartbeatTTL time.Duration `json:"-"`

	// Read from the registry only (ListRunners).

	// AliveUntil is when the runner counts as dead unless it beats again.
	AliveUntil time.Time `json:"alive_until"`
	// LastBeat is when its last heartbeat landed; zero when its entry
	// predates recording the TTL.
	LastBeat time.Time `json:"last_beat,omitzero"`
}

// Heartbeat marks a runner alive for ttl; with full set it also (re)writes
// the runner's registry entry, which a runner does on its first beat and
// every so often after (two commands a beat otherwise).
func (q *Queue) Heartbeat(ctx context.Context, cluster string, r RunnerInfo, ttl time.Duration, full bool) error {
	deadline := time.Now().Add(ttl).UnixMilli()
	pipe := q.rdb.Pipeline()
	// The registry entry is written first, so a runner is never alive
	// without one; a reclaimer that removed it is answered on the next beat.
	if full {
		streams, _ := json.Marshal(r.Streams)
		devices, _ := json.Marshal(r.Devices)
		pipe.HSet(ctx, runnerKey(cluster, r.ID), "streams", streams, "host", r.Host, "pid", r.PID,
			"started", r.Started.UnixMilli(), "version", r.Version, "concurrency", r.Concurrency,
			"devices", devices, "ttl", ttl.Milliseconds())
	}
	pipe.Set(ctx, heartbeatKey(cluster, r.ID), deadline, ttl)
	pipe.ZAdd(ctx, runnersKey(cluster), redis.Z{Score: float64(deadline), Member: r.ID})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

// ListRunners lists the live runners of cluster (their heartbeat has not
// expired) with their registry entries, sorted by host, then start time.
// Entries written by older runners lack version, concurrency and devices,
// which read as zero values.
func (q *Queue) ListRunners(ctx context.Context, cluster string) ([]RunnerInfo, error) {
	if _, err := q.GetCluster(ctx, cluster); err != nil {
		return nil, err
	}
	now := time.Now()
	zs, err := q.rdb.ZRangeByScoreWithScores(ctx, runnersKey(cluster), &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(zs))
	for i, z := range zs {
		cmds[i] = pipe.HGetAll(ctx, runnerKey(cluster, z.Member.(string)))
	}
	if len(zs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("list runners: %w", err)
		}
	}
	out := make([]RunnerInfo, 0, len(zs))
	for i, z := range zs {
		h := cmds[i].Val()
		if len(h) == 0 {
			continue // being reclaimed or not registered yet: not a live runner to show
		}
		out = append(out, runnerInfoFromHash(z.Member.(string), h, time.UnixMilli(int64(z.Score))))
	}
	slices.SortFunc(out, func(a, b RunnerInfo) int {
		if c := strings.Compare(a.Host, b.Host); c != 0 {
			return c
		}
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// runnerInfoFromHash reads a registry entry; fields it lacks (older
// runners) or cannot read stay zero.
func runnerInfoFromHash(id string, h map[string]string, aliveUntil time.Time) RunnerInfo {
	r := RunnerInfo{ID: id, Host: h["host"], Version: h["version"], AliveUntil: aliveUntil}
	_ = json.Unmarshal([]byte(h["streams"]), &r.Streams)
	_ = json.Unmarshal([]byte(h["devices"]), &r.Devices)
	r.PID, _ = strconv.Atoi(h["pid"])
	r.Concurrency, _ = strconv.Atoi(h["concurrency"])
	if ms, err := strconv.ParseInt(h["started"], 10, 64); err == nil {
		r.Started = time.UnixMilli(ms)
	}
	if ms, err := strconv.ParseInt(h["ttl"], 10, 64); err == nil && ms > 0 {
		r.HeartbeatTTL = time.Duration(ms) * time.Millisecond
		r.LastBeat = aliveUntil.Add(-r.HeartbeatTTL)
	}
	return r
}

// Stopped marks a runner that stopped cleanly as gone at once, so whatever
// it still holds is reclaimed without waiting for its heartbeat to expire.
func (q *Queue) Stopped(ctx context.Context, cluster, id string) error {
	pipe := q.rdb.TxPipeline()
	pipe.Del(ctx, heartbeatKey(cluster, id))
	pipe.ZAdd(ctx, runnersKey(cluster), redis.Z{Score: 0, Member: id})
	_, err := pipe.Exec(ctx)
	return err
}

// Gone removes every trace of a runner that stopped and settled its own
// pending entries (ReclaimOwn): there is nothing left for a reclaimer to do.
func (q *Queue) Gone(ctx context.Context, cluster, id string) error {
	pipe := q.rdb.TxPipeline()
	pipe.Del(ctx, heartbeatKey(cluster, id), runnerKey(cluster, id))
	pipe.ZRem(ctx, runnersKey(cluster), id)
	_, err := pipe.Exec(ctx)
	return err
}

// ReclaimReport counts what one reclaim pass did.
type ReclaimReport struct {
	Runners   int // dead runners cleaned up
	Requeued  int // tasks queued again after losing their runner
	Failed    int // tasks that lost their runner too often
	Republish int // queued tasks whose unclaimed hints were republished
}

func (r *ReclaimReport) add(o ReclaimReport) {
	r.Runners += o.Runners
	r.Requeued += o.Requeued
	r.Failed += o.Failed
	r.Republish += o.Republish
}

// ReclaimDead settles the pending entries of every runner of cluster whose
// heartbeat has expired (up to limit runners per call), then forgets them.
// self is the caller's runner id ("" for an operator or sweep) and
// fallbackStreams are read when a dead runner's registry entry is missing.
// Safe to run from many runners at once: a lock spreads the work, and every
// step is a compare-and-set.
func (q *Queue) ReclaimDead(ctx context.Context, cluster, self string, fallbackStreams []string, limit int) (ReclaimReport, error) {
	var total ReclaimReport
	now := time.Now().UnixMilli()
	dead, err := q.rdb.ZRangeByScore(ctx, runnersKey(cluster), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now, 10), Count: int64(limit)}).Result()
	if err != nil {
		return total, fmt.Errorf("find dead runners: %w", err)
	}
	for _, id := range dead {
		if id == self {
			continue
		}
		if n, err := q.rdb.Exists(ctx, heartbeatKey(cluster, id)).Result(); err != nil {
			return total, err
		} else if n > 0 {
			continue // alive: its deadline in the index lags its heartbeat
		}
		lockOwner := self
		if lockOwner == "" {
			lockOwner = "sweep"
		}
		ok, err := q.rdb.SetNX(ctx, reclaimLockKey(cluster, id), lockOwner, 30*time.Second).Result()
		if err != nil {
			return total, err
		}
		if !ok {
			continue // someone else is on it
		}
		rep, err := q.reclaimRunner(ctx, cluster, id, fallbackStreams)
		total.add(rep)
		if err != nil {
			return total, err
		}
		total.Runners++
	}
	return total, nil
}

// ReclaimOwn is what a stopping runner does with the stream entries it still
// has pending (hints it read but never claimed, or claimed through a call
// whose reply was lost): it settles them as a reclaimer would settle a dead
// runner's, so queued tasks are published again and a task left running
// under it is queued again. Call it only once nothing of the runner runs.
func (q *Queue) ReclaimOwn(ctx context.Context, cluster, id string, streams []string) (ReclaimReport, error) {
	return q.reclaimRunner(ctx, cluster, id, streams)
}

func (q *Queue) reclaimRunner(ctx context.Context, cluster, id string, fallback []string) (ReclaimReport, error) {
	var rep ReclaimReport
	streams := fallback
	if raw, err := q.rdb.HGet(ctx, runnerKey(cluster, id), "streams").Result(); err == nil {
		var s []string
		if json.Unmarshal([]byte(raw), &s) == nil && len(s) > 0 {
			streams = s
		}
	} else if !errors.Is(err, redis.Nil) {
		return rep, err
	}
	for _, s := range streams {
		for {
			pend, err := q.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
				Stream: s, Group: Group, Start: "-", End: "+", Count: 500, Consumer: id}).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				if isNoGroup(err) {
					break
				}
				return rep, fmt.Errorf("list pending entries of runner %s: %w", id, err)
			}
			if len(pend) == 0 {
				break
			}
			r, err := q.reclaimEntries(ctx, s, id, pend)
			rep.add(r)
			if err != nil {
				return rep, err
			}
		}
		if err := q.rdb.XGroupDelConsumer(ctx, s, Group, id).Err(); err != nil && !isNoGroup(err) {
			return rep, fmt.Errorf("delete consumer %s: %w", id, err)
		}
	}
	pipe := q.rdb.TxPipeline()
	pipe.ZRem(ctx, runnersKey(cluster), id)
	pipe.Del(ctx, runnerKey(cluster, id), reclaimLockKey(cluster, id))
	_, err := pipe.Exec(ctx)
	return rep, err
}

func isNoGroup(err error) bool {
	return err != nil && (errors.Is(err, redis.Nil) || strings.Contains(err.Error(), "NOGROUP") ||
		strings.Contains(err.Error(), "no such key"))
}

// reclaimEntries applies rf_reclaim to the tasks behind one batch of a dead
// runner's pending entries, publishes what it made ready, republishes the
// outboxes of the jobs involved (the runner may have died between a commit
// and its publish), and only then acknowledges the entries.
func (q *Queue) reclaimEntries(ctx context.Context, stream, dead string, pend []redis.XPendingExt) (ReclaimReport, error) {
	var rep ReclaimReport
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(pend))
	ids := make([]string, len(pend))
	for i, p := range pend {
		ids[i] = p.ID
		cmds[i] = pipe.XRange(ctx, stream, p.ID, p.ID)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return rep, fmt.Errorf("read pending entries: %w", err)
	}
	byJob := map[string][]int64{}
	var jobs []string
	for _, c := range cmds {
		for _, h := range parseHints([]redis.XStream{{Stream: stream, Messages: c.Val()}}) {
			if h.Seq < 0 {
				continue // trimmed or malformed: nothing to settle
			}
			if _, ok := byJob[h.JobID]; !ok {
				jobs = append(jobs, h.JobID)
			}
			// Every task the entry names: rf_reclaim leaves alone what the
			// dead runner did not hold.
			for seq := h.Seq; seq < h.Seq+h.N; seq++ {
				byJob[h.JobID] = append(byJob[h.JobID], seq)
			}
		}
	}
	type call struct {
		job  string
		args []any
	}
	var calls []call
	for _, j := range jobs {
		seqs := byJob[j]
		for len(seqs) > 0 {
			n := min(len(seqs), callBudget)
			args := []any{dead, nowMS()}
			for _, seq := range seqs[:n] {
				args = append(args, seq)
			}
			calls = append(calls, call{job: j, args: args})
			seqs = seqs[n:]
		}
	}
	for _, cl := range calls {
		j := cl.job
		res, err := q.rdb.FCall(ctx, "rf_reclaim", []string{jobKey(j)}, cl.args...).Result()
		if err != nil {
			return rep, fmt.Errorf("reclaim tasks of job %s: %w", j, err)
		}
		parts, _ := res.([]any)
		if len(parts) != 2 {
			return rep, fmt.Errorf("reclaim tasks of job %s: unexpected reply %v", j, res)
		}
		for _, o := range toStrings(parts[0]) {
			switch o {
			case "requeued":
				rep.Requeued++
			case "republished":
				rep.Republish++
			case OutcomeFailed, OutcomeFailedOptional, OutcomeContained:
				rep.Failed++
			}
		}
		if err := q.Publish(ctx, j, toStrings(parts[1])); err != nil {
			return rep, err
		}
	}
	for _, j := range jobs {
		if err := q.Republish(ctx, j); err != nil {
			return rep, err
		}
	}
	if err := q.rdb.XAck(ctx, stream, Group, ids...).Err(); err != nil {
		return rep, fmt.Errorf("acknowledge reclaimed entries: %w", err)
	}
	return rep, nil
}

// Sweep is the periodic backstop: it reclaims the dead runners of every
// cluster and republishes what crashed callers left in the outboxes of jobs
// that are not finished.
func (q *Queue) Sweep(ctx context.Context) (ReclaimReport, error) {
	var total ReclaimReport
	clusters, err := q.ListClusters(ctx)
	if err != nil {
		return total, err
	}
	for _, c := range clusters {
		for {
			rep, err := q.ReclaimDead(ctx, c.Slug, "", nil, 100)
			total.add(rep)
			if err != nil {
				return total, err
			}
			if rep.Runners == 0 {
				break
			}
		}
	}
	// Index entries without a job are what a submitter that died between
	// indexing and writing its job left behind; once they are old enough
	// that no submission can still be under way, they are dropped.
	staleBefore := float64(time.Now().Add(-orphanIndexAge).UnixMilli())
	var orphans []any
	var start int64
	for {
		zs, err := q.rdb.ZRangeWithScores(ctx, keyJobs, start, start+499).Result()
		if err != nil {
			return total, fmt.Errorf("list jobs: %w", err)
		}
		if len(zs) == 0 {
			break
		}
		start += int64(len(zs))
		pipe := q.rdb.Pipeline()
		states := make([]*redis.StringCmd, len(zs))
		for i, z := range zs {
			states[i] = pipe.HGet(ctx, jobKey(z.Member.(string)), "state")
		}
		_, _ = pipe.Exec(ctx)
		for i, z := range zs {
			id := z.Member.(string)
			switch st := states[i].Val(); {
			case st == JobSubmitted || st == JobRunning:
				if err := q.Republish(ctx, id); err != nil {
					return total, err
				}
			case errors.Is(states[i].Err(), redis.Nil) && z.Score < staleBefore:
				orphans = append(orphans, id)
			}
		}
	}
	if len(orphans) > 0 {
		if err := q.rdb.ZRem(ctx, keyJobs, orphans...).Err(); err != nil {
			return total, fmt.Errorf("drop index entries without a job: %w", err)
		}
	}
	return total, nil
}

// orphanIndexAge is how old an index entry without its job must be before
// the sweep drops it: far longer than any submission takes.
const orphanIndexAge = time.Hour
