package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// Hint is one stream entry naming a task that may be ready.
type Hint struct {
	Stream string
	ID     string
	JobID  string
	Seq    int64
}

// Read blocks up to block for at most count hints on streams. It returns
// no hints and no error when the block time passes.
func (q *Queue) Read(ctx context.Context, consumer string, streams []string, count int, block time.Duration) ([]Hint, error) {
	return readHints(ctx, q.rdb, consumer, streams, count, block)
}

func readHints(ctx context.Context, c redis.Cmdable, consumer string, streams []string, count int, block time.Duration) ([]Hint, error) {
	args := make([]string, 0, 2*len(streams))
	args = append(args, streams...)
	for range streams {
		args = append(args, ">")
	}
	res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: Group, Consumer: consumer, Streams: args, Count: int64(count), Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read task streams: %w", err)
	}
	return parseHints(res), nil
}

func parseHints(res []redis.XStream) []Hint {
	var out []Hint
	for _, s := range res {
		for _, m := range s.Messages {
			j, _ := m.Values["j"].(string)
			t, _ := m.Values["t"].(string)
			seq, err := strconv.ParseInt(t, 10, 64)
			if err != nil || j == "" {
				seq = -1 // malformed (or deleted): acknowledged and dropped by Claim
			}
			out = append(out, Hint{Stream: s.Stream, ID: m.ID, JobID: j, Seq: seq})
		}
	}
	return out
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
	pending := make([]*redis.XPendingCmd, len(streams))
	for i, s := range streams {
		groups[i] = pipe.XInfoGroups(ctx, s)
		pending[i] = pipe.XPending(ctx, s, Group)
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
		if p := pending[i].Val(); p != nil && p.Count > 0 && p.Lower != "" && lessID(p.Lower, minID) {
			minID = p.Lower
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

// Claimed is a task handed to a runner.
type Claimed struct {
	JobID   string
	Seq     int64
	Task    Identifier
	Input   []byte
	Attempt int
	// Hint is the stream entry the task was claimed from, pending until the
	// result is committed; Ack it then.
	Hint Hint
}

// Claim turns hints into held tasks with one rf_claim per job. A hint whose
// task is handed out stays pending in the stream until the task's result is
// committed (see Ack): if the runner dies first, its pending hints show what
// it held. Other hints (stale, held for a stopped job, skipped) are
// acknowledged at once. Hints of a job whose claim call failed stay pending
// and unacknowledged, so they are claimed again later, never lost.
func (q *Queue) Claim(ctx context.Context, owner string, hints []Hint) ([]Claimed, error) {
	if len(hints) == 0 {
		return nil, nil
	}
	byJob := map[string][]any{}
	var jobs []string
	var done []Hint // hints to acknowledge now
	for _, h := range hints {
		if h.Seq < 0 {
			done = append(done, h)
			continue
		}
		if _, ok := byJob[h.JobID]; !ok {
			jobs = append(jobs, h.JobID)
			byJob[h.JobID] = []any{owner, nowMS()}
		}
		byJob[h.JobID] = append(byJob[h.JobID], h.Seq)
	}
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(jobs))
	for i, j := range jobs {
		cmds[i] = pipe.FCall(ctx, "rf_claim", []string{jobKey(j)}, byJob[j]...)
	}
	_, _ = pipe.Exec(ctx)
	var out []Claimed
	var firstErr error
	failed := map[string]bool{}
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			failed[jobs[i]] = true
			if firstErr == nil {
				firstErr = fmt.Errorf("claim tasks: %w", err)
			}
			continue
		}
		rows, _ := c.Val().([]any)
		if len(rows) == 0 {
			continue
		}
		if pub := toStrings(rows[0]); len(pub) > 0 {
			if err := q.Publish(ctx, jobs[i], pub); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		for k := 1; k+4 < len(rows); k += 5 {
			seq, _ := rows[k].(string)
			name, _ := rows[k+1].(string)
			version, _ := rows[k+2].(string)
			input, _ := rows[k+3].(string)
			att, _ := rows[k+4].(int64)
			n, _ := strconv.ParseInt(seq, 10, 64)
			id, err := ParseIdentifier(name, version)
			if err != nil {
				id = Identifier{Name: name}
			}
			out = append(out, Claimed{JobID: jobs[i], Seq: n, Task: id, Input: []byte(input), Attempt: int(att)})
		}
	}
	// Match each handed-out task to one of its hints; that hint stays
	// pending until the result is committed.
	type key struct {
		job string
		seq int64
	}
	idx := make(map[key]int, len(out))
	for i, c := range out {
		idx[key{c.JobID, c.Seq}] = i
	}
	for _, h := range hints {
		if h.Seq < 0 || failed[h.JobID] {
			continue
		}
		if i, ok := idx[key{h.JobID, h.Seq}]; ok && out[i].Hint.ID == "" {
			out[i].Hint = h
			continue
		}
		done = append(done, h)
	}
	if err := q.Ack(ctx, done); err != nil && firstErr == nil {
		firstErr = err
	}
	return out, firstErr
}

// Ack acknowledges hints whose work is done (or that needed none).
// Acknowledged entries are trimmed in bulk by TrimStreams, far cheaper for
// Redis than an XDEL per entry.
func (q *Queue) Ack(ctx context.Context, hints []Hint) error {
	if len(hints) == 0 {
		return nil
	}
	byStream := map[string][]string{}
	for _, h := range hints {
		byStream[h.Stream] = append(byStream[h.Stream], h.ID)
	}
	pipe := q.rdb.Pipeline()
	for s, ids := range byStream {
		pipe.XAck(ctx, s, Group, ids...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("acknowledge task hints: %w", err)
	}
	return nil
}

// ReadPending returns up to count hints this consumer read earlier and has
// not acknowledged, per stream, without blocking.
func (q *Queue) ReadPending(ctx context.Context, consumer string, streams []string, count int) ([]Hint, error) {
	args := make([]string, 0, 2*len(streams))
	args = append(args, streams...)
	for range streams {
		args = append(args, "0")
	}
	res, err := q.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: Group, Consumer: consumer, Streams: args, Count: int64(count), Block: -1,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pending task hints: %w", err)
	}
	return parseHints(res), nil
}

// SubtaskSpec is a subtask buffered by an execution, committed with it.
type SubtaskSpec struct {
	Task       Identifier
	Cluster    string
	Input      []byte
	MaxRetries int
	Optional   bool
	// Deps are indexes of earlier subtasks of the same parent.
	Deps []int
}

// encodeSubtasks flattens specs[first:first+n] into rf_stage/rf_complete
// records; dependents are derived from every spec's Deps.
func encodeSubtasks(specs []SubtaskSpec, dependents [][]int, first, n int, args []any) []any {
	for i := first; i < first+n; i++ {
		s := specs[i]
		opt := "0"
		if s.Optional {
			opt = "1"
		}
		var dn strings.Builder
		for k, d := range dependents[i] {
			if k > 0 {
				dn.WriteByte(',')
			}
			dn.WriteString(strconv.Itoa(d))
		}
		args = append(args, s.Task.Name, s.Task.Version(), s.Cluster, s.Input, s.MaxRetries, opt, len(s.Deps), dn.String())
	}
	return args
}

func dependentsOf(specs []SubtaskSpec) [][]int {
	dn := make([][]int, len(specs))
	for i, s := range specs {
		for _, d := range s.Deps {
			dn[d] = append(dn[d], i)
		}
	}
	return dn
}

// Completion is a successful execution to commit.
type Completion struct {
	JobID    string
	Seq      int64
	Attempt  int
	Display  string
	Progress []byte // JSON [[label,total,done],...] or nil
	Subtasks []SubtaskSpec
	// staged is set by Stage for sets larger than InlineSubtasks.
	staged bool
	base   int64
}

// Stage writes a large subtask set in chunks before its parent commits, so no
// single call runs long. It returns ErrLost if the parent is no longer held.
func (q *Queue) Stage(ctx context.Context, owner string, c *Completion) error {
	if len(c.Subtasks) <= InlineSubtasks {
		return nil
	}
	n := int64(len(c.Subtasks))
	base, err := q.rdb.HIncrBy(ctx, jobKey(c.JobID), "next", n).Result()
	if err != nil {
		return fmt.Errorf("reserve subtask ids: %w", err)
	}
	base -= n
	dn := dependentsOf(c.Subtasks)
	// A few connections stage chunks concurrently, so encoding on the runner
	// overlaps execution in Redis. Each chunk is still its own short call and
	// checks the parent is still held.
	err = inParallel(ctx, len(c.Subtasks), StageChunk, func(ctx context.Context, first, end int) error {
		args := []any{owner, c.Seq, c.Attempt, base, first, nowMS()}
		args = encodeSubtasks(c.Subtasks, dn, first, end-first, args)
		err := q.rdb.FCall(ctx, "rf_stage", []string{jobKey(c.JobID)}, args...).Err()
		if err != nil && strings.Contains(err.Error(), "lost") {
			return ErrLost
		}
		if err != nil {
			return fmt.Errorf("stage subtasks: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.staged, c.base = true, base
	return nil
}

// Complete commits successful executions: each task becomes computed and its
// subtasks appear, atomically. The result per completion is nil or ErrLost.
func (q *Queue) Complete(ctx context.Context, owner string, cs []Completion) ([]error, error) {
	results := make([]error, len(cs))
	return results, q.batchByJob(len(cs), func(i int) (string, int) {
		w := 1
		if !cs[i].staged {
			w += len(cs[i].Subtasks)
		}
		return cs[i].JobID, w
	}, func(job string, idx []int) error {
		args := []any{owner, nowMS(), len(idx)}
		for _, i := range idx {
			c := cs[i]
			staged, inline := "0", 0
			if c.staged {
				staged = "1"
			} else {
				inline = len(c.Subtasks)
			}
			args = append(args, c.Seq, c.Attempt, c.Display, c.Progress, len(c.Subtasks), staged, c.base, inline)
			if inline > 0 {
				args = encodeSubtasks(c.Subtasks, dependentsOf(c.Subtasks), 0, inline, args)
			}
		}
		res, err := q.rdb.FCall(ctx, "rf_complete", []string{jobKey(job)}, args...).Result()
		if err != nil {
			return fmt.Errorf("complete tasks: %w", err)
		}
		parts, _ := res.([]any)
		if len(parts) != 2 {
			return fmt.Errorf("complete tasks: unexpected reply %v", res)
		}
		for k, r := range toStrings(parts[0]) {
			if r == "lost" {
				results[idx[k]] = ErrLost
			}
		}
		if err := q.Publish(ctx, job, toStrings(parts[1])); err != nil {
			return err
		}
		for _, i := range idx {
			if cs[i].staged && results[i] == nil {
				if err := q.publishStaged(ctx, &cs[i]); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// publishStaged XADDs the dependency-free subtasks of a committed, staged
// set straight from memory, then clears the set's cursor; a republisher after
// a crash reads the set back from Redis instead.
func (q *Queue) publishStaged(ctx context.Context, c *Completion) error {
	err := inParallel(ctx, len(c.Subtasks), publishChunk, func(ctx context.Context, first, end int) error {
		pub := make([]string, 0, 2*(end-first))
		for i := first; i < end; i++ {
			if s := c.Subtasks[i]; len(s.Deps) == 0 {
				pub = append(pub, StreamKey(s.Cluster, s.Task), strconv.FormatInt(c.base+int64(i), 10))
			}
		}
		return q.publish(ctx, c.JobID, pub, false)
	})
	if err != nil {
		return err
	}
	// Chunks ran out of order, so acknowledge the whole set at once; a crash
	// before this only means a republisher sends the set again.
	if err := q.rdb.FCall(ctx, "rf_expand", []string{jobKey(c.JobID)}, c.Seq, 0, len(c.Subtasks)).Err(); err != nil {
		return fmt.Errorf("acknowledge published subtasks: %w", err)
	}
	return nil
}

// inParallel calls fn for consecutive [first, end) chunks of n items, on up
// to parallelCalls goroutines, and returns the first error.
func inParallel(ctx context.Context, n, chunk int, fn func(ctx context.Context, first, end int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	workers := min(parallelCalls, (n+chunk-1)/chunk)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				first := int(next.Add(int64(chunk))) - chunk
				if first >= n {
					return
				}
				if err := fn(ctx, first, min(n, first+chunk)); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// Failure is a failed (or handed back) execution.
type Failure struct {
	JobID    string
	Seq      int64
	Attempt  int
	Error    string
	Display  string
	Progress []byte
	// HandBack re-queues without counting against max_retries.
	HandBack bool
	// Lost re-queues without counting against max_retries but counts a lost
	// runner: the process running the task died (a release runner's worker
	// crashed). The 11th loss fails the task.
	Lost bool
}

// Fail outcomes, per failure.
const (
	OutcomeRetry          = "retry"
	OutcomeFailed         = "failed"
	OutcomeFailedOptional = "failed_optional"
	OutcomeContained      = "contained"
	OutcomeLost           = "lost"
)

// Fail records failed executions and returns the outcome of each.
func (q *Queue) Fail(ctx context.Context, owner string, fs []Failure) ([]string, error) {
	outcomes := make([]string, len(fs))
	return outcomes, q.batchByJob(len(fs), func(i int) (string, int) { return fs[i].JobID, 1 },
		func(job string, idx []int) error {
			args := []any{owner, nowMS(), len(idx)}
			for _, i := range idx {
				f := fs[i]
				counts := "1"
				switch {
				case f.Lost:
					counts = "2"
				case f.HandBack:
					counts = "0"
				}
				args = append(args, f.Seq, f.Attempt, f.Error, f.Display, f.Progress, counts)
			}
			res, err := q.rdb.FCall(ctx, "rf_fail", []string{jobKey(job)}, args...).Result()
			if err != nil {
				return fmt.Errorf("record task failures: %w", err)
			}
			parts, _ := res.([]any)
			if len(parts) != 2 {
				return fmt.Errorf("record task failures: unexpected reply %v", res)
			}
			for k, r := range toStrings(parts[0]) {
				outcomes[idx[k]] = r
			}
			return q.Publish(ctx, job, toStrings(parts[1]))
		})
}

// batchByJob groups items by job and splits each group into calls whose
// summed weight stays within callBudget, so no call runs long.
func (q *Queue) batchByJob(n int, key func(i int) (string, int), call func(job string, idx []int) error) error {
	var order []string
	groups := map[string][]int{}
	for i := 0; i < n; i++ {
		j, _ := key(i)
		if _, ok := groups[j]; !ok {
			order = append(order, j)
		}
		groups[j] = append(groups[j], i)
	}
	var firstErr error
	for _, j := range order {
		var batch []int
		weight := 0
		for _, i := range groups[j] {
			_, w := key(i)
			if len(batch) > 0 && weight+w > callBudget {
				if err := call(j, batch); err != nil && firstErr == nil {
					firstErr = err
				}
				batch, weight = nil, 0
			}
			batch = append(batch, i)
			weight += w
		}
		if len(batch) > 0 {
			if err := call(j, batch); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}
