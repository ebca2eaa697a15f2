package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnsureGroups creates the consumer group on every stream (and the stream if
// needed). Reading from ID 0 is safe: entries are hints.
func (q *Queue) EnsureGroups(ctx context.Context, streams []string) error {
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.StatusCmd, len(streams))
	for i, s := range streams {
		cmds[i] = pipe.XGroupCreateMkStream(ctx, s, Group, "0")
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range cmds {
		if err := c.Err(); err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
			return fmt.Errorf("create consumer group on %s: %w", streams[i], err)
		}
	}
	return nil
}

// Hint is a stream entry naming tasks of one job that may be ready: N
// consecutive tasks from Seq. Most entries name one task; a large subtask set
// is published in runs of up to HintRun tasks per entry, so a fan-out costs
// Redis one entry (XADD, delivery, XACK) per run, not per task. A runner may
// split an entry into parts (Split); every part keeps the entry's Stream and
// ID, and the entry stays pending until every task of it this runner holds
// is done.
type Hint struct {
	Stream string
	ID     string
	JobID  string
	Seq    int64 // first task named; -1 for a malformed entry
	N      int64 // tasks named: Seq .. Seq+N-1
	Total  int64 // tasks the whole entry names (N of the entry as read)
}

// HintRun is the most tasks one stream entry names.
const HintRun = 16

// Key identifies the stream entry a hint (or part) comes from.
func (h Hint) Key() string { return h.Stream + "\x00" + h.ID }

// Whole reports whether h is a whole entry, not a part of one.
func (h Hint) Whole() bool { return h.N == h.Total }

// Split returns the first k tasks of h and the rest (N 0 when none is left).
func (h Hint) Split(k int64) (Hint, Hint) {
	k = min(max(k, 0), h.N)
	first, rest := h, h
	first.N = k
	rest.Seq, rest.N = h.Seq+k, h.N-k
	return first, rest
}

// Has reports whether h names task seq.
func (h Hint) Has(seq int64) bool { return h.Seq >= 0 && seq >= h.Seq && seq < h.Seq+h.N }

// Read blocks up to block for at most count hints on streams. It returns
// no hints and no error when the block time passes.
func (q *Queue) Read(ctx context.Context, consumer string, streams []string, count int, block time.Duration) ([]Hint, error) {
	return readHints(ctx, q.rdb, consumer, streams, count, block)
}

func readHints(ctx context.Context, c redis.Cmdable, consumer string, streams []string, count int, block time.Duration) ([]Hint, error) {
	hints, err := readGroup(ctx, c, consumer, streams, ">", count, block)
	if err != nil {
		return nil, fmt.Errorf("read task streams: %w", err)
	}
	return hints, nil
}

// readGroup reads up to count entries per stream from start (">" for new
// ones, "0" for this consumer's pending ones), blocking up to block (no
// block when negative). It returns nothing and no error when none came.
func readGroup(ctx context.Context, c redis.Cmdable, consumer string, streams []string, start string, count int, block time.Duration) ([]Hint, error) {
	args := make([]string, 0, 2*len(streams))
	args = append(args, streams...)
	for range streams {
		args = append(args, start)
	}
	res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: Group, Consumer: consumer, Streams: args, Count: int64(count), Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseHints(res), nil
}

// parseHints decodes entries with fields j (job), t (first seq) and
// optionally n (count, 1 when absent). An entry it cannot use is marked
// malformed (Seq -1, N 1), to be acknowledged and dropped.
func parseHints(res []redis.XStream) []Hint {
	var out []Hint
	for _, s := range res {
		for _, m := range s.Messages {
			j, _ := m.Values["j"].(string)
			t, _ := m.Values["t"].(string)
			seq, err := strconv.ParseInt(t, 10, 64)
			n := int64(1)
			if ns, ok := m.Values["n"].(string); ok {
				var nerr error
				if n, nerr = strconv.ParseInt(ns, 10, 64); nerr != nil || n < 1 || n > HintRun {
					err = errors.New("bad count")
				}
			}
			if err != nil || j == "" || seq < 0 {
				seq, n = -1, 1 // malformed (or deleted): acknowledged and dropped
			}
			out = append(out, Hint{Stream: s.Stream, ID: m.ID, JobID: j, Seq: seq, N: n, Total: n})
		}
	}
	return out
}

// ReadPending returns up to count hints this consumer read earlier and has
// not acknowledged, per stream, without blocking.
func (q *Queue) ReadPending(ctx context.Context, consumer string, streams []string, count int) ([]Hint, error) {
	hints, err := readGroup(ctx, q.rdb, consumer, streams, "0", count, -1)
	if err != nil {
		return nil, fmt.Errorf("read pending task hints: %w", err)
	}
	return hints, nil
}

// Reader reads hints on a connection of its own, so that a read blocked in
// Redis can be woken at once (CLIENT UNBLOCK) when its runner stops:
// go-redis does not interrupt a blocking command when its context ends.
type Reader struct {
	node     *redis.Client // the server holding the streams
	conn     *redis.Conn
	id       int64
	consumer string
	streams  []string
}

// NewReader opens a dedicated connection to the server holding streams (all
// of one cluster, so one hash tag and one server).
func (q *Queue) NewReader(ctx context.Context, consumer string, streams []string) (*Reader, error) {
	var node *redis.Client
	switch c := q.rdb.(type) {
	case *redis.Client:
		node = c
	case *redis.ClusterClient:
		n, err := c.MasterForKey(ctx, streams[0])
		if err != nil {
			return nil, fmt.Errorf("find the redis node of %s: %w", streams[0], err)
		}
		node = n
	default:
		return nil, fmt.Errorf("stream reader: unsupported redis client %T", q.rdb)
	}
	conn := node.Conn()
	id, err := conn.ClientID(ctx).Result()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("open stream reader: %w", err)
	}
	return &Reader{node: node, conn: conn, id: id, consumer: consumer, streams: streams}, nil
}

// Read is Queue.Read on the reader's connection.
func (r *Reader) Read(ctx context.Context, count int, block time.Duration) ([]Hint, error) {
	return readHints(ctx, r.conn, r.consumer, r.streams, count, block)
}

// Unblock wakes a Read blocked in Redis; it returns no hints. Safe to call
// from another goroutine.
func (r *Reader) Unblock(ctx context.Context) error {
	return r.node.ClientUnblock(ctx, r.id).Err()
}

// Close releases the reader's connection.
func (r *Reader) Close() error { return r.conn.Close() }

// TrimStreams drops stream entries every consumer has acknowledged: those
// before both the group's last delivered entry and its oldest pending one.
// Approximate trimming frees whole stream nodes, so it stays cheap.
func (q *Queue) TrimStreams(ctx context.Context, streams []string) error {
	pipe := q.rdb.Pipeline()
	groups := make([]*redis.XInfoGroupsCmd, len(streams))
	oldest := make([]*redis.XPendingExtCmd, len(streams))
	for i, s := range streams {
		groups[i] = pipe.XInfoGroups(ctx, s)
		// Only the oldest pending entry: the summary form lists every
		// consumer, a long reply once a thousand runners read a stream.
		oldest[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s, Group: Group, Start: "-", End: "+", Count: 1})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("inspect task streams: %w", err)
	}
	pipe = q.rdb.Pipeline()
	for i, s := range streams {
		var last string
		for _, g := range groups[i].Val() {
			if g.Name == Group {
				last = g.LastDeliveredID
			}
		}
		minID := nextID(last)
		if p := oldest[i].Val(); len(p) > 0 && p[0].ID != "" && lessID(p[0].ID, minID) {
			minID = p[0].ID
		}
		if minID != "" {
			pipe.XTrimMinIDApprox(ctx, s, minID, 0)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("trim task streams: %w", err)
	}
	return nil
}

// nextID is the stream ID right after id ("" when id is empty or "0-0").
func nextID(id string) string {
	ms, seq, ok := parseID(id)
	if !ok || (ms == 0 && seq == 0) {
		return ""
	}
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq+1, 10)
}

func lessID(a, b string) bool {
	am, as, _ := parseID(a)
	bm, bs, _ := parseID(b)
	return am < bm || (am == bm && as < bs)
}

func parseID(id string) (ms, seq uint64, ok bool) {
	l, r, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	ms, err1 := strconv.ParseUint(l, 10, 64)
	seq, err2 := strconv.ParseUint(r, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}
