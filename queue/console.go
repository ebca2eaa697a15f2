package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reads for the web console (package console): pages of a job's tasks, job
// listings filtered by name, queue depth per identifier and login sessions.
// They read what other parts of the queue write, in bounded steps, so a page
// of a 100,000-task job costs one page of tasks, not the whole job.
//
//	rf:console:s:<hash>   string: a console session record (JSON), written
//	                      at login with a TTL; <hash> is the hex SHA-256 of
//	                      the session id the browser holds, so a reader of
//	                      Redis cannot take over a session

func consoleSessionKey(hash string) string { return "rf:console:s:" + hash }

const (
	// taskPageScan bounds the task seqs one TasksPage call reads when it
	// filters by a state without an index of its own: the rest is the next
	// page's.
	taskPageScan = 20_000
	// taskReadChunk is the most task hashes one pipeline reads.
	taskReadChunk = 1000
)

// TasksPage returns up to limit tasks of a job with seqs above after (-1
// for the first page), in seq order, and the after of the next page (-1
// when there is none). state filters by task state: "" for all, "failed"
// reads the job's failed set, any other state scans at most 20,000 seqs per
// call (a page may then hold fewer than limit tasks and still have a next
// page). Subtasks staged by an execution that never committed them are left
// out, as JobTasks does.
func (q *Queue) TasksPage(ctx context.Context, jobID string, after int64, limit int, state string) ([]Task, int64, error) {
	if limit <= 0 {
		limit = 100
	}
	if state != "" && !slices.Contains(TaskStates, state) {
		return nil, -1, fmt.Errorf("task state %q is not one of %s", state, strings.Join(TaskStates, ", "))
	}
	after = max(after, -1)
	nextText, err := q.rdb.HGet(ctx, jobKey(jobID), "next").Result()
	if errors.Is(err, redis.Nil) {
		return nil, -1, fmt.Errorf("%w: %q", ErrJobNotFound, jobID)
	}
	if err != nil {
		return nil, -1, fmt.Errorf("get job tasks: %w", err)
	}
	end, _ := strconv.ParseInt(nextText, 10, 64) // seqs run from 0 to end-1
	if state == TaskFailed {
		return q.failedTasksPage(ctx, jobID, after, limit)
	}
	var out []Task
	scanned := int64(0)
	for from := after + 1; from < end; {
		n := min(int64(taskReadChunk), end-from)
		if state == "" {
			n = min(n, int64(limit-len(out)))
		}
		seqs := make([]int64, n)
		for i := range seqs {
			seqs[i] = from + int64(i)
		}
		tasks, err := q.committedTasks(ctx, jobID, seqs)
		if err != nil {
			return nil, -1, err
		}
		for _, t := range tasks {
			if state != "" && t.State != state {
				continue
			}
			out = append(out, t)
			if len(out) == limit {
				return out, nextAfter(t.Seq, end), nil
			}
		}
		from += n
		scanned += n
		if scanned >= taskPageScan && from < end {
			return out, from - 1, nil
		}
	}
	return out, -1, nil
}

// nextAfter is the next page's after once a page ended at seq, -1 when no
// task follows.
func nextAfter(seq, end int64) int64 {
	if seq+1 >= end {
		return -1
	}
	return seq
}

// failedTasksPage is TasksPage for failed tasks, read through the job's
// failed set.
func (q *Queue) failedTasksPage(ctx context.Context, jobID string, after int64, limit int) ([]Task, int64, error) {
	members, err := q.rdb.SMembers(ctx, jobPrefix(jobID)+"failed").Result()
	if err != nil {
		return nil, -1, fmt.Errorf("get failed tasks: %w", err)
	}
	seqs := make([]int64, 0, len(members))
	for _, m := range members {
		if seq, err := strconv.ParseInt(m, 10, 64); err == nil && seq > after {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	var out []Task
	for len(seqs) > 0 && len(out) < limit {
		n := min(len(seqs), limit-len(out))
		tasks, err := q.committedTasks(ctx, jobID, seqs[:n])
		if err != nil {
			return nil, -1, err
		}
		seqs = seqs[n:]
		for _, t := range tasks {
			if t.State == TaskFailed { // the set is a hint kept for retry
				out = append(out, t)
			}
		}
	}
	if len(seqs) == 0 || len(out) == 0 {
		return out, -1, nil
	}
	return out, out[len(out)-1].Seq, nil
}

// committedTasks reads the tasks of seqs (ascending) in one pipeline, then
// drops those their parent never committed: a task belongs to the job once
// its parent's committed child range (kb, kn) holds it.
func (q *Queue) committedTasks(ctx context.Context, jobID string, seqs []int64) ([]Task, error) {
	tasks, err := q.Tasks(ctx, jobID, seqs)
	if err != nil {
		return nil, err
	}
	read := make(map[int64]int, len(tasks))
	for i, t := range tasks {
		read[t.Seq] = i
	}
	// The children ranges of parents outside this page.
	type span struct{ base, count int64 }
	ranges := map[int64]span{}
	var missing []int64
	for _, t := range tasks {
		if t.Parent < 0 {
			continue
		}
		if i, ok := read[t.Parent]; ok {
			ranges[t.Parent] = span{tasks[i].childBase, tasks[i].childCount}
		} else if _, ok := ranges[t.Parent]; !ok {
			ranges[t.Parent] = span{}
			missing = append(missing, t.Parent)
		}
	}
	if len(missing) > 0 {
		pipe := q.rdb.Pipeline()
		pc := make([]*redis.SliceCmd, len(missing))
		for i, p := range missing {
			pc[i] = pipe.HMGet(ctx, taskKey(jobID, p), "kb", "kn")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("get job tasks: %w", err)
		}
		for i, p := range missing {
			v := pc[i].Val()
			kb, _ := v[0].(string)
			kn, _ := v[1].(string)
			b, _ := strconv.ParseInt(kb, 10, 64)
			n, _ := strconv.ParseInt(kn, 10, 64)
			ranges[p] = span{b, n}
		}
	}
	out := tasks[:0]
	for _, t := range tasks {
		if r, ok := ranges[t.Parent]; t.Parent >= 0 && (!ok || t.Seq < r.base || t.Seq >= r.base+r.count) {
			continue
		}
		out = append(out, t)
	}
	return out, nil
}

// FindJobsParams filters a job listing; zero values match everything.
type FindJobsParams struct {
	Cluster string
	State   string
	// Name keeps jobs whose name contains it, ignoring case.
	Name  string
	Limit int // default 100
	// Cursor continues a listing where a previous page ended.
	Cursor string
	// ScanLimit bounds the jobs one call looks at when Name is set; the
	// call then returns what it found with a cursor to go on from. Default
	// 10,000.
	ScanLimit int
}

// FindJobs is ListJobsPage with a name filter. Without Name it is
// ListJobsPage; with it, it reads pages of the listing and keeps the jobs
// whose name matches, looking at no more than ScanLimit jobs per call, so
// a page may hold fewer than Limit jobs and still have a next cursor.
func (q *Queue) FindJobs(ctx context.Context, p FindJobsParams) ([]Job, string, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	list := ListJobsParams{Cluster: p.Cluster, State: p.State, Limit: p.Limit, Cursor: p.Cursor}
	if p.Name == "" {
		return q.ListJobsPage(ctx, list)
	}
	if p.ScanLimit <= 0 {
		p.ScanLimit = 10_000
	}
	name := strings.ToLower(p.Name)
	list.Limit = 200
	var out []Job
	for scanned := 0; ; {
		jobs, next, err := q.ListJobsPage(ctx, list)
		if err != nil {
			return nil, "", err
		}
		for _, j := range jobs {
			if !strings.Contains(strings.ToLower(j.Name), name) {
				continue
			}
			out = append(out, j)
			if len(out) == p.Limit {
				// The listing's cursor: the job's index score (its
				// creation time) and id.
				return out, strconv.FormatInt(j.CreatedAt.UnixMilli(), 10) + "." + j.ID, nil
			}
		}
		scanned += len(jobs)
		if next == "" || scanned >= p.ScanLimit {
			return out, next, nil
		}
		list.Cursor = next
	}
}

// IdentifierQueue is the queue of one task identifier in a cluster.
type IdentifierQueue struct {
	Identifier string // "Name@vM.m"
	// Ready counts the stream entries not yet delivered to a runner (an
	// upper bound, as in ClusterMetrics).
	Ready int64
	// OldestReadyAge is how long the oldest of them has waited; 0 when
	// none is ready.
	OldestReadyAge time.Duration
}

// IdentifierQueues reads the ready tasks and the oldest ready age of every
// identifier registered in cluster, by identifier.
func (q *Queue) IdentifierQueues(ctx context.Context, cluster string) ([]IdentifierQueue, error) {
	ids, err := q.RegisteredIdentifiers(ctx, cluster)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ids, compareIdentifiers)
	now := time.Now()
	pipe := q.rdb.Pipeline()
	groups := make([]*redis.XInfoGroupsCmd, len(ids))
	for i, id := range ids {
		groups[i] = pipe.XInfoGroups(ctx, StreamKey(cluster, id))
	}
	// A stream nobody created yet answers "no such key": nothing queued.
	_, _ = pipe.Exec(ctx)
	out := make([]IdentifierQueue, 0, len(ids))
	for i, id := range ids {
		iq := IdentifierQueue{Identifier: id.String()}
		stream := StreamKey(cluster, id)
		if err := groups[i].Err(); err != nil {
			if !isNoGroup(err) {
				return nil, fmt.Errorf("inspect stream %s: %w", stream, err)
			}
			out = append(out, iq)
			continue
		}
		var g *redis.XInfoGroup
		for k := range groups[i].Val() {
			if groups[i].Val()[k].Name == Group {
				g = &groups[i].Val()[k]
			}
		}
		ready, first, err := q.undelivered(ctx, stream, g)
		if err != nil {
			return nil, err
		}
		iq.Ready = ready
		if ms, _, ok := parseID(first); ok && ready > 0 {
			iq.OldestReadyAge = max(0, now.Sub(time.UnixMilli(int64(ms))))
		}
		out = append(out, iq)
	}
	return out, nil
}

// PutConsoleSession stores a console session record under the hash of its
// id for ttl. An id already in use is ErrExists.
func (q *Queue) PutConsoleSession(ctx context.Context, hash string, record []byte, ttl time.Duration) error {
	ok, err := q.rdb.SetNX(ctx, consoleSessionKey(hash), record, ttl).Result()
	if err != nil {
		return fmt.Errorf("store console session: %w", err)
	}
	if !ok {
		return fmt.Errorf("console session: %w", ErrExists)
	}
	return nil
}

// ConsoleSession returns the record of a console session, nil when there is
// none (never created, expired or ended).
func (q *Queue) ConsoleSession(ctx context.Context, hash string) ([]byte, error) {
	b, err := q.rdb.Get(ctx, consoleSessionKey(hash)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read console session: %w", err)
	}
	return b, nil
}

// DeleteConsoleSession ends a console session.
func (q *Queue) DeleteConsoleSession(ctx context.Context, hash string) error {
	if err := q.rdb.Del(ctx, consoleSessionKey(hash)).Err(); err != nil {
		return fmt.Errorf("end console session: %w", err)
	}
	return nil
}

// graphFields are the task fields GraphTasks reads: what a picture of the
// job needs for every task (state, name, children, dependents); text is
// read for the few tasks drawn one by one (Tasks).
var graphFields = []string{"st", "nm", "kb", "kn", "dn"}

// graphReadChunk is the most task hashes one GraphTasks round reads, in
// two pipelines at once, so Redis answers one while the client encodes or
// decodes the other.
const graphReadChunk = 10_000

// GraphTasks returns every task of a job in tree order, as JobTasks does,
// but with only its seq, parent, state, name, children and dependents:
// reading five short fields instead of all of them makes a 100,000-task job
// several times cheaper to draw. Version, display name and error are left
// empty; read them with Tasks for the tasks that need them.
func (q *Queue) GraphTasks(ctx context.Context, jobID string) ([]Task, error) {
	tasks, _, err := q.graphRead(ctx, jobID, false)
	return tasks, err
}

// LeafGroup counts computed tasks without children or dependents, of one
// parent and task name, that GraphSummary leaves out of its task list.
type LeafGroup struct {
	Parent int64
	Name   string
	Count  int64
	First  int64 // the least seq counted
}

// GraphSummary is GraphTasks for big jobs: a task bucket (64 seqs of one
// parent's children) whose every record is a computed task of one
// identifier is counted from the bucket's count field instead of being
// read task by task, so a finished fan-out of a million tasks is about
// 16,000 short reads. A bucket that a listed task's dependents point into
// is read task by task, so no arrow is lost. Every task is either in the
// list or in one group.
func (q *Queue) GraphSummary(ctx context.Context, jobID string) ([]Task, []LeafGroup, error) {
	return q.graphRead(ctx, jobID, true)
}

// summaryMinChildren is the fewest children a parent needs before
// graphRead looks for whole buckets among them.
const summaryMinChildren = 2 * taskBucketSize

func (q *Queue) graphRead(ctx context.Context, jobID string, summarize bool) ([]Task, []LeafGroup, error) {
	pipe := q.rdb.Pipeline()
	nextCmd := pipe.HGet(ctx, jobKey(jobID), "next")
	var idsCmd *redis.MapStringStringCmd
	if summarize {
		idsCmd = pipe.HGetAll(ctx, jobIdentsKey(jobID))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("get job tasks: %w", err)
	}
	nextText, err := nextCmd.Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("%w: %q", ErrJobNotFound, jobID)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("get job tasks: %w", err)
	}
	// Every task has a seq below "next": room for all of them up front
	// saves copying 100,000 records as the slices grow (a summary needs
	// far less).
	size, _ := strconv.ParseInt(nextText, 10, 64)
	size = min(max(size, 1), 10_000_000)
	if summarize {
		size = min(size, 100_000)
	}
	out := make([]Task, 0, size)
	frontier := make([]graphPending, 1, size)
	frontier[0] = graphPending{0, -1}
	// One array holds every task's dependents, not one small slice each.
	deps := make([]int64, 0, size)
	var sum *bucketSummary
	if summarize {
		sum = newBucketSummary(idsCmd.Val())
	}
	read := func(frontier []graphPending, expand bool) ([]graphPending, error) {
		for done := 0; done < len(frontier); {
			n := min(len(frontier)-done, graphReadChunk)
			batch := frontier[done : done+n]
			done += n
			vals, err := q.readGraphFields(ctx, jobID, batch)
			if err != nil {
				return nil, err
			}
			var wide []Task // parents whose children may fill buckets
			for i, v := range vals {
				if len(v) < len(graphFields) {
					continue
				}
				st, _ := v[0].(string)
				if st == "" {
					continue
				}
				t := Task{Seq: batch[i].seq, Parent: batch[i].parent, State: st}
				t.Name, _ = v[1].(string)
				kb, _ := v[2].(string)
				kn, _ := v[3].(string)
				t.childBase, _ = strconv.ParseInt(kb, 10, 64)
				t.childCount, _ = strconv.ParseInt(kn, 10, 64)
				if dn, _ := v[4].(string); dn != "" {
					from := len(deps)
					for d := range strings.SplitSeq(dn, ",") {
						if n, err := strconv.ParseInt(d, 10, 64); err == nil {
							deps = append(deps, n)
						}
					}
					t.Dependents = deps[from:len(deps):len(deps)]
				}
				switch {
				case !expand:
				case sum != nil && t.childCount >= summaryMinChildren:
					wide = append(wide, t)
				default:
					for k := int64(0); k < t.childCount; k++ {
						frontier = append(frontier, graphPending{t.childBase + k, t.Seq})
					}
				}
				out = append(out, t)
			}
			if len(wide) > 0 {
				more, err := sum.expand(ctx, q, jobID, wide)
				if err != nil {
					return nil, err
				}
				frontier = append(frontier, more...)
			}
		}
		return frontier, nil
	}
	if _, err := read(frontier, true); err != nil {
		return nil, nil, err
	}
	if sum == nil {
		return out, nil, nil
	}
	// Buckets a listed task's dependents point into are read task by task:
	// their arrows need the tasks. (Their tasks have no children.)
	var again []graphPending
	for _, t := range out {
		for _, d := range t.Dependents {
			again = append(again, sum.unsummarize(d)...)
		}
	}
	if _, err := read(again, false); err != nil {
		return nil, nil, err
	}
	// A group is drawn as one node only above DefaultCollapseOver-like
	// counts: small ones (a lone task of another name among a parent's
	// children) are read task by task, to be drawn one by one.
	listed := map[leafKey]int64{}
	for _, t := range out {
		listed[leafKey{t.Parent, t.Name}]++
	}
	small := map[leafKey]bool{}
	for _, g := range sum.groups() {
		if k := (leafKey{g.Parent, g.Name}); g.Count+listed[k] <= summaryMinGroup {
			small[k] = true
		}
	}
	if len(small) > 0 {
		again = sum.take(func(parent int64, name string) bool { return small[leafKey{parent, name}] })
		if _, err := read(again, false); err != nil {
			return nil, nil, err
		}
	}
	return out, sum.groups(), nil
}

// summaryMinGroup is the most tasks of one parent and name GraphSummary
// lists one by one rather than count: the graph draws that many siblings
// one by one only with a CollapseOver above DefaultCollapseOver (20).
const summaryMinGroup = 64

// bucketSummary is what graphRead counted from task buckets.
type bucketSummary struct {
	names   map[string]string // ident index -> task name
	idents  []string          // the indexes, for reading the count fields
	buckets map[int64]leafKey
	// singles are computed leaves counted one by one from the records of
	// buckets a parent's children share with another's (at the ends of
	// its range), by bucket.
	singles map[int64][]single
}

// leafKey names a group of counted tasks, and what a bucket counted
// instead of read holds: a parent and a task name.
type leafKey struct {
	parent int64
	name   string
}

// single is one task counted from its bucket record.
type single struct {
	seq, parent int64
	name        string
}

func newBucketSummary(ids map[string]string) *bucketSummary {
	s := &bucketSummary{names: map[string]string{}, buckets: map[int64]leafKey{}, singles: map[int64][]single{}}
	for k, v := range ids {
		if idx, ok := strings.CutPrefix(k, "#"); ok && idx != "" {
			name, _, _ := strings.Cut(v, packSep)
			s.names[idx] = name
			s.idents = append(s.idents, idx)
		}
	}
	return s
}

// expand queues the children of parents for reading, except those it can
// count: whole buckets that hold only computed tasks of one identifier
// (from their count fields), and at the ends of a parent's range the
// computed tasks whose bucket records are there (from the records).
func (s *bucketSummary) expand(ctx context.Context, q *Queue, jobID string, parents []Task) ([]graphPending, error) {
	type candidate struct {
		bucket int64
		parent int64
	}
	var cands []candidate
	ends := map[int64][]graphPending{} // bucket -> children at a range's ends
	var endBuckets []int64
	for _, p := range parents {
		lo, hi := p.childBase, p.childBase+p.childCount // children are [lo, hi)
		first := (lo + taskBucketSize - 1) / taskBucketSize
		last := hi/taskBucketSize - 1 // the last bucket wholly inside
		if first > last {
			first, last = 1, 0 // none
		}
		for seq := lo; seq < hi; seq++ {
			b := seq / taskBucketSize
			if b >= first && b <= last {
				seq = (last+1)*taskBucketSize - 1
				continue
			}
			if _, ok := ends[b]; !ok {
				endBuckets = append(endBuckets, b)
			}
			ends[b] = append(ends[b], graphPending{seq, p.Seq})
		}
		for b := first; b <= last; b++ {
			cands = append(cands, candidate{b, p.Seq})
		}
	}
	var out []graphPending
	if len(s.idents) == 0 {
		// Nothing was ever packed: read every child.
		for _, c := range cands {
			out = appendBucket(out, c.bucket, c.parent)
		}
		for _, b := range endBuckets {
			out = append(out, ends[b]...)
		}
		return out, nil
	}
	fields := make([]string, len(s.idents))
	for i, idx := range s.idents {
		fields[i] = "#" + idx
	}
	for chunk := range slices.Chunk(cands, graphReadChunk) {
		pipe := q.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(chunk))
		for i, c := range chunk {
			cmds[i] = pipe.HMGet(ctx, bucketKey(jobID, c.bucket*taskBucketSize), fields...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("read task buckets: %w", err)
		}
		for i, c := range chunk {
			full := ""
			for k, v := range cmds[i].Val() {
				if n, _ := v.(string); n == strconv.Itoa(taskBucketSize) {
					full = s.idents[k]
				}
			}
			if name, ok := s.names[full]; ok && full != "" {
				s.buckets[c.bucket] = leafKey{parent: c.parent, name: name}
				continue
			}
			out = appendBucket(out, c.bucket, c.parent)
		}
	}
	for chunk := range slices.Chunk(endBuckets, graphReadChunk) {
		pipe := q.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(chunk))
		for i, b := range chunk {
			names := make([]string, len(ends[b]))
			for k, e := range ends[b] {
				names[k] = strconv.FormatInt(e.seq, 10)
			}
			cmds[i] = pipe.HMGet(ctx, bucketKey(jobID, b*taskBucketSize), names...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("read task buckets: %w", err)
		}
		for i, b := range chunk {
			for k, v := range cmds[i].Val() {
				e := ends[b][k]
				rec, _ := v.(string)
				idx, _, _ := strings.Cut(rec, packSep)
				if name, ok := s.names[idx]; ok && rec != "" {
					s.singles[b] = append(s.singles[b], single{e.seq, e.parent, name})
				} else {
					out = append(out, e) // not in the bucket: its hash has it
				}
			}
		}
	}
	return out, nil
}

// appendBucket appends the 64 tasks of bucket b, children of parent.
func appendBucket(out []graphPending, b, parent int64) []graphPending {
	for seq := b * taskBucketSize; seq < (b+1)*taskBucketSize; seq++ {
		out = append(out, graphPending{seq, parent})
	}
	return out
}

// unsummarize takes seq's bucket out of the counts, if anything of it was
// counted, and returns the tasks to read instead.
func (s *bucketSummary) unsummarize(seq int64) []graphPending {
	b := seq / taskBucketSize
	var out []graphPending
	if sb, ok := s.buckets[b]; ok {
		delete(s.buckets, b)
		out = appendBucket(out, b, sb.parent)
	}
	for _, one := range s.singles[b] {
		out = append(out, graphPending{one.seq, one.parent})
	}
	delete(s.singles, b)
	return out
}

// take takes the counted tasks of the parents and names match picks out of
// the counts and returns them to read.
func (s *bucketSummary) take(match func(parent int64, name string) bool) []graphPending {
	var out []graphPending
	for b, sb := range s.buckets {
		if match(sb.parent, sb.name) {
			delete(s.buckets, b)
			out = appendBucket(out, b, sb.parent)
		}
	}
	for b, ones := range s.singles {
		kept := ones[:0]
		for _, one := range ones {
			if match(one.parent, one.name) {
				out = append(out, graphPending{one.seq, one.parent})
			} else {
				kept = append(kept, one)
			}
		}
		s.singles[b] = kept
	}
	return out
}

// groups are the counted tasks by parent and name, in order of their
// least seq.
func (s *bucketSummary) groups() []LeafGroup {
	byKey := map[leafKey]*LeafGroup{}
	add := func(parent int64, name string, first, n int64) {
		k := leafKey{parent, name}
		g, ok := byKey[k]
		if !ok {
			g = &LeafGroup{Parent: parent, Name: name, First: first}
			byKey[k] = g
		}
		g.Count += n
		g.First = min(g.First, first)
	}
	for b, sb := range s.buckets {
		add(sb.parent, sb.name, b*taskBucketSize, taskBucketSize)
	}
	for _, ones := range s.singles {
		for _, one := range ones {
			add(one.parent, one.name, one.seq, 1)
		}
	}
	out := make([]LeafGroup, 0, len(byKey))
	for _, g := range byKey {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b LeafGroup) int { return cmp.Compare(a.First, b.First) })
	return out
}

// graphPending is a task GraphTasks is yet to read, and its parent.
type graphPending struct{ seq, parent int64 }

// readGraphFields reads graphFields of every task of batch, half of them
// in each of two pipelines at once, and returns the values in batch order.
func (q *Queue) readGraphFields(ctx context.Context, jobID string, batch []graphPending) ([][]any, error) {
	vals := make([][]any, len(batch))
	half := len(batch) / 2
	var wg sync.WaitGroup
	var errFirst error
	wg.Go(func() { errFirst = q.readGraphPipeline(ctx, jobID, batch[:half], vals[:half]) })
	errSecond := q.readGraphPipeline(ctx, jobID, batch[half:], vals[half:])
	wg.Wait()
	return vals, errors.Join(errFirst, errSecond)
}

// readGraphPipeline reads graphFields of the tasks of batch into vals, in
// one pipeline.
func (q *Queue) readGraphPipeline(ctx context.Context, jobID string, batch []graphPending, vals [][]any) error {
	if len(batch) == 0 {
		return nil
	}
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	// One array of arguments for the whole batch, sliced per command, and
	// the field names boxed once: this loop runs 100,000 times for a big
	// job, and allocations are most of its cost.
	argv := make([]any, 0, len(batch)*(2+len(graphFieldArgs)))
	prefix := jobPrefix(jobID) + "t:"
	for i, p := range batch {
		from := len(argv)
		argv = append(argv, "hmget", prefix+strconv.FormatInt(p.seq, 10))
		argv = append(argv, graphFieldArgs...)
		cmds[i] = pipe.Do(ctx, argv[from:len(argv):len(argv)]...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("get job tasks: %w", err)
	}
	for i, c := range cmds {
		vals[i], _ = c.Val().([]any)
	}
	seqs := make([]int64, len(batch))
	for i, p := range batch {
		seqs[i] = p.seq
	}
	return q.fillPacked(ctx, jobID, seqs, graphFields, vals)
}

// graphFieldArgs is graphFields as command arguments.
var graphFieldArgs = func() []any {
	out := make([]any, len(graphFields))
	for i, f := range graphFields {
		out[i] = f
	}
	return out
}()

// Tasks returns the tasks of seqs that exist, in the order asked, in one
// pipeline; a seq without a task is left out.
func (q *Queue) Tasks(ctx context.Context, jobID string, seqs []int64) ([]Task, error) {
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(seqs))
	for i, seq := range seqs {
		cmds[i] = pipe.HMGet(ctx, taskKey(jobID, seq), taskFields...)
	}
	if len(seqs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("get tasks: %w", err)
		}
	}
	vals := make([][]any, len(cmds))
	for i, c := range cmds {
		vals[i] = c.Val()
	}
	if err := q.fillPacked(ctx, jobID, seqs, taskFields, vals); err != nil {
		return nil, fmt.Errorf("get tasks: %w", err)
	}
	out := make([]Task, 0, len(seqs))
	for i, v := range vals {
		if t, ok := parseTask(seqs[i], v); ok {
			out = append(out, t)
		}
	}
	return out, nil
}
