package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterMetrics is the queue depth of one cluster at one moment, read from
// its streams and runner registry. Ready counts are stream entries, which
// are hints: a duplicate or stale hint (its task already claimed elsewhere)
// counts until a runner reads it, so they are an upper bound.
type ClusterMetrics struct {
	Cluster string
	// Ready is the entries of each identifier's stream not yet delivered
	// to the runners' consumer group, by identifier ("Name@vM.m").
	Ready map[string]int64
	// ReadyTotal is the sum of Ready.
	ReadyTotal int64
	// Running is the entries delivered and not yet acknowledged: tasks
	// runners hold (and hints they read but have not claimed yet).
	Running int64
	// LiveRunners counts runners whose heartbeat deadline is in the future.
	LiveRunners int64
	// OldestReadyAge is how long the oldest undelivered entry has waited;
	// 0 when nothing is ready.
	OldestReadyAge time.Duration
}

// lagScanLimit bounds the entries counted one by one when Redis cannot
// report a stream's lag (after entries were deleted out of order).
const lagScanLimit = 10000

// ClusterMetrics reads the queue depth of cluster: one pipeline over the
// streams of its registered identifiers, plus one read for each stream with
// ready entries (to date the oldest).
func (q *Queue) ClusterMetrics(ctx context.Context, cluster string) (ClusterMetrics, error) {
	m := ClusterMetrics{Cluster: cluster, Ready: map[string]int64{}}
	ids, err := q.RegisteredIdentifiers(ctx, cluster)
	if err != nil {
		return m, err
	}
	now := time.Now()
	pipe := q.rdb.Pipeline()
	live := pipe.ZCount(ctx, runnersKey(cluster), "("+strconv.FormatInt(now.UnixMilli(), 10), "+inf")
	groups := make([]*redis.XInfoGroupsCmd, len(ids))
	pending := make([]*redis.XPendingCmd, len(ids))
	for i, id := range ids {
		groups[i] = pipe.XInfoGroups(ctx, StreamKey(cluster, id))
		pending[i] = pipe.XPending(ctx, StreamKey(cluster, id), Group)
	}
	// A stream nobody created yet answers "no such key": nothing queued.
	_, _ = pipe.Exec(ctx)
	if err := live.Err(); err != nil {
		return m, fmt.Errorf("count live runners of %s: %w", cluster, err)
	}
	m.LiveRunners = live.Val()
	var oldest time.Time
	for i, id := range ids {
		stream := StreamKey(cluster, id)
		if err := groups[i].Err(); err != nil {
			if isNoGroup(err) {
				continue
			}
			return m, fmt.Errorf("inspect stream %s: %w", stream, err)
		}
		var g *redis.XInfoGroup
		for k := range groups[i].Val() {
			if groups[i].Val()[k].Name == Group {
				g = &groups[i].Val()[k]
			}
		}
		if err := pending[i].Err(); err != nil && !isNoGroup(err) {
			return m, fmt.Errorf("inspect stream %s: %w", stream, err)
		}
		if p := pending[i].Val(); p != nil {
			m.Running += p.Count
		}
		ready, first, err := q.undelivered(ctx, stream, g)
		if err != nil {
			return m, err
		}
		if ready == 0 {
			continue
		}
		m.Ready[id.String()] = ready
		m.ReadyTotal += ready
		if ms, _, ok := parseID(first); ok {
			if t := time.UnixMilli(int64(ms)); oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
	}
	if !oldest.IsZero() {
		m.OldestReadyAge = max(0, now.Sub(oldest))
	}
	return m, nil
}

// undelivered returns how many entries of stream the group g has not been
// handed yet, and the id of the first of them ("" when none). Without the
// group (g nil) no runner ever read the stream, as in a cluster scaled to
// zero: every entry is ready.
func (q *Queue) undelivered(ctx context.Context, stream string, g *redis.XInfoGroup) (int64, string, error) {
	after := "-"
	var lag int64
	if g == nil {
		n, err := q.rdb.XLen(ctx, stream).Result()
		if err != nil {
			return 0, "", fmt.Errorf("read stream %s: %w", stream, err)
		}
		lag = n
	} else {
		lag = g.Lag
		if g.LastDeliveredID != "" && g.LastDeliveredID != "0-0" {
			after = "(" + g.LastDeliveredID
		}
	}
	if lag == 0 {
		return 0, "", nil
	}
	if lag > 0 {
		first, err := q.rdb.XRangeN(ctx, stream, after, "+", 1).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, "", fmt.Errorf("read stream %s: %w", stream, err)
		}
		if len(first) == 0 {
			return 0, "", nil
		}
		return lag, first[0].ID, nil
	}
	// Redis cannot tell the lag (entries were deleted past the group's
	// position): count, up to a bound.
	var n int64
	var first string
	for n < lagScanLimit {
		msgs, err := q.rdb.XRangeN(ctx, stream, after, "+", 1000).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, "", fmt.Errorf("read stream %s: %w", stream, err)
		}
		if len(msgs) == 0 {
			break
		}
		if first == "" {
			first = msgs[0].ID
		}
		n += int64(len(msgs))
		after = "(" + msgs[len(msgs)-1].ID
	}
	return n, first, nil
}
