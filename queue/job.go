package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Job states.
const (
	JobSubmitted = "submitted"
	JobRunning   = "running"
	JobCompleted = "completed"
	JobFailed    = "failed"
	JobCanceled  = "canceled"
)

// Task states.
const (
	TaskQueued         = "queued"
	TaskRunning        = "running"
	TaskComputed       = "computed"
	TaskFailed         = "failed"
	TaskSkipped        = "skipped"
	TaskFailedOptional = "failed_optional"
)

// TaskStates lists every task state in display order.
var TaskStates = []string{TaskQueued, TaskRunning, TaskComputed, TaskFailed, TaskSkipped, TaskFailedOptional}

// JobStates lists every job state.
var JobStates = []string{JobSubmitted, JobRunning, JobCompleted, JobFailed, JobCanceled}

// SubmitJobParams describes a new job and its root task.
type SubmitJobParams struct {
	ID         string
	Name       string
	Cluster    string
	Task       Identifier
	Input      []byte
	MaxRetries int
	// Notify is a URL that receives the job's final state; "" for none.
	Notify string
	// TraceParent is the W3C traceparent of the job's trace, which every
	// execution's span joins; "" for none.
	TraceParent string
}

// SubmitJob writes a job and its queued root task, then publishes the root.
// The index entry is written first so that a crash never leaves a job that
// listings cannot find; a listing skips index entries without a job.
func (q *Queue) SubmitJob(ctx context.Context, p SubmitJobParams) error {
	now := nowMS()
	// One server runs a pipeline in order, so there the index entry and the
	// job go in one round trip; a Redis Cluster client sends each node's
	// share at once, so there (and with a notification to index) the job
	// waits for the index entry.
	var via redis.Cmdable = q.rdb
	var pipe redis.Pipeliner
	var index *redis.IntCmd
	if c, single := q.rdb.(*redis.Client); single && p.Notify == "" {
		pipe = c.Pipeline()
		via = pipe
		index = pipe.ZAdd(ctx, keyJobs, redis.Z{Score: float64(now), Member: p.ID})
	} else {
		if err := q.rdb.ZAdd(ctx, keyJobs, redis.Z{Score: float64(now), Member: p.ID}).Err(); err != nil {
			return fmt.Errorf("index job: %w", err)
		}
		if p.Notify != "" {
			// Looked at every NotifyRecheck until the job finishes.
			if err := q.indexNotify(ctx, p.ID, time.UnixMilli(now).Add(NotifyRecheck)); err != nil {
				return err
			}
		}
	}
	submit := via.FCall(ctx, "rf_submit", []string{jobKey(p.ID)},
		p.ID, p.Name, p.Cluster, now, p.Task.Name, p.Task.Version(), p.Input, p.MaxRetries, p.Notify, p.TraceParent)
	if pipe != nil {
		_, _ = pipe.Exec(ctx)
		if err := index.Err(); err != nil {
			return fmt.Errorf("index job: %w", err)
		}
	}
	res, err := submit.Result()
	if err != nil {
		if strings.Contains(err.Error(), "job exists") {
			return fmt.Errorf("%w: %q", ErrJobExists, p.ID)
		}
		return fmt.Errorf("submit job: %w", err)
	}
	return q.Publish(ctx, p.ID, toStrings(res))
}

// Publish XADDs ready-task hints, as the functions return them: a flat list
// of (outbox value, seq) pairs, the value being "<stream>|<nonce>". Then it
// clears those outbox entries that still hold the value it published. A
// pair with an empty value stands for a deferred dependent list ("d:<seq>"),
// which is walked in chunks.
func (q *Queue) Publish(ctx context.Context, jobID string, pub []string) error {
	return q.publish(ctx, jobID, pub, true)
}

// publish XADDs (value, seq) pairs; with fromOutbox unset the values are
// plain stream keys and no outbox entry is cleared.
func (q *Queue) publish(ctx context.Context, jobID string, pub []string, fromOutbox bool) error {
	var deferred []string
	for len(pub) > 0 {
		n := min(len(pub), 2*publishChunk)
		chunk := pub[:n]
		pub = pub[n:]
		pipe := q.rdb.Pipeline()
		unbox := make([]any, 0, n)
		for i := 0; i+1 < len(chunk); i += 2 {
			value, seq := chunk[i], chunk[i+1]
			if value == "" {
				deferred = append(deferred, seq)
				continue
			}
			stream := value
			if fromOutbox {
				if k := strings.LastIndexByte(value, '|'); k >= 0 {
					stream = value[:k]
				}
				unbox = append(unbox, seq, value)
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"j", jobID, "t", seq}})
		}
		if pipe.Len() > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("publish ready tasks: %w", err)
			}
		}
		if len(unbox) > 0 {
			if err := q.rdb.FCall(ctx, "rf_unbox", []string{jobKey(jobID)}, unbox...).Err(); err != nil {
				return fmt.Errorf("clear outbox: %w", err)
			}
		}
	}
	for _, d := range deferred {
		seq, err := strconv.ParseInt(strings.TrimPrefix(d, "d:"), 10, 64)
		if err != nil {
			continue
		}
		if err := q.releaseDependents(ctx, jobID, seq); err != nil {
			return err
		}
	}
	return nil
}

// releaseDependents walks a long dependent list of a completed task in
// chunks (rf_dependents), publishing the tasks it makes ready.
func (q *Queue) releaseDependents(ctx context.Context, jobID string, seq int64) error {
	for {
		res, err := q.rdb.FCall(ctx, "rf_dependents", []string{jobKey(jobID)}, seq, StageChunk).Result()
		if err != nil {
			return fmt.Errorf("release dependents of task %d: %w", seq, err)
		}
		parts, _ := res.([]any)
		if len(parts) != 2 {
			return fmt.Errorf("release dependents of task %d: unexpected reply %v", seq, res)
		}
		if err := q.Publish(ctx, jobID, toStrings(parts[1])); err != nil {
			return err
		}
		if done, _ := parts[0].(int64); done == 1 {
			return nil
		}
	}
}

// Expand publishes the committed, staged subtasks of parent chunk by chunk.
// It is resumable: the cursor lives in the outbox.
func (q *Queue) Expand(ctx context.Context, jobID string, parent int64) error {
	acked := "0"
	for {
		res, err := q.rdb.FCall(ctx, "rf_expand", []string{jobKey(jobID)}, parent, StageChunk, acked).Result()
		if err != nil {
			return fmt.Errorf("expand subtasks of task %d: %w", parent, err)
		}
		parts, _ := res.([]any)
		if len(parts) != 2 {
			return nil
		}
		if err := q.publish(ctx, jobID, toStrings(parts[1]), false); err != nil {
			return err
		}
		acked, _ = parts[0].(string)
	}
}

// Republish finishes outbox work a crashed caller left behind: it XADDs the
// hints still in the outbox and publishes staged subtask sets whose
// publication was cut short. Duplicates are harmless.
func (q *Queue) Republish(ctx context.Context, jobID string) error {
	var expand, deps []int64
	var pub []string
	if err := q.scanHash(ctx, jobPrefix(jobID)+"outbox", func(field, value string) error {
		kind, rest, _ := strings.Cut(field, ":")
		switch kind {
		case "x", "d":
			if seq, err := strconv.ParseInt(rest, 10, 64); err == nil {
				if kind == "x" {
					expand = append(expand, seq)
				} else {
					deps = append(deps, seq)
				}
			}
		default:
			pub = append(pub, value, field)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, seq := range expand {
		if err := q.Expand(ctx, jobID, seq); err != nil {
			return err
		}
	}
	for _, seq := range deps {
		if err := q.releaseDependents(ctx, jobID, seq); err != nil {
			return err
		}
	}
	return q.Publish(ctx, jobID, pub)
}

func (q *Queue) scanHash(ctx context.Context, key string, fn func(field, value string) error) error {
	var cursor uint64
	for {
		kv, next, err := q.rdb.HScan(ctx, key, cursor, "", 500).Result()
		if err != nil {
			return fmt.Errorf("scan %s: %w", key, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if err := fn(kv[i], kv[i+1]); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// Progress is one progress counter of a job.
type Progress struct {
	Label string `json:"label"`
	Total int64  `json:"total"`
	Done  int64  `json:"done"`
}

// Job is a job record as stored.
type Job struct {
	ID         string           `json:"id"`
	Name       string           `json:"name"`
	Cluster    string           `json:"cluster"`
	State      string           `json:"state"`
	CreatedAt  time.Time        `json:"created_at"`
	StartedAt  time.Time        `json:"started_at,omitzero"`
	FinishedAt time.Time        `json:"finished_at,omitzero"`
	TaskCounts map[string]int64 `json:"task_counts"`
	Progress   []Progress       `json:"progress"`
	// Archived is set on a job read back from its archive (it left Redis
	// after its retention): it is read-only.
	Archived bool `json:"archived,omitempty"`
	// TraceParent is the W3C traceparent of the job's OpenTelemetry trace:
	// its trace id finds the job's spans in a tracing backend. Empty for a
	// job submitted before runfleet stored one.
	TraceParent string `json:"traceparent,omitempty"`
}

var jobFields = []string{"id", "name", "cluster", "state", "created", "started", "finished",
	"c_queued", "c_running", "c_computed", "c_failed", "c_skipped", "c_failed_optional", "tp"}

func parseJob(vals []any) (Job, bool) {
	s := make([]string, len(vals))
	for i, v := range vals {
		if v != nil {
			s[i], _ = v.(string)
		}
	}
	if s[0] == "" {
		return Job{}, false
	}
	j := Job{ID: s[0], Name: s[1], Cluster: s[2], State: s[3],
		CreatedAt: msTime(s[4]), StartedAt: msTime(s[5]), FinishedAt: msTime(s[6]),
		TaskCounts: make(map[string]int64, len(TaskStates)), Progress: []Progress{}}
	for i, st := range TaskStates {
		n, _ := strconv.ParseInt(s[7+i], 10, 64)
		j.TaskCounts[st] = n
	}
	j.TraceParent = s[7+len(TaskStates)]
	return j, true
}

// GetJob returns a job with its task counts and progress.
func (q *Queue) GetJob(ctx context.Context, id string) (Job, error) {
	pipe := q.rdb.Pipeline()
	jc := pipe.HMGet(ctx, jobKey(id), jobFields...)
	pc := pipe.HGetAll(ctx, jobPrefix(id)+"progress")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Job{}, fmt.Errorf("get job: %w", err)
	}
	return jobFrom(id, jc.Val(), pc.Val())
}

// jobFrom builds a job from its hash fields (jobFields) and progress hash.
func jobFrom(id string, fields []any, progress map[string]string) (Job, error) {
	j, ok := parseJob(fields)
	if !ok {
		return Job{}, fmt.Errorf("%w: %q", ErrJobNotFound, id)
	}
	byLabel := map[string]*Progress{}
	for k, v := range progress {
		label, kind, _ := strings.Cut(k, "\x00")
		p := byLabel[label]
		if p == nil {
			p = &Progress{Label: label}
			byLabel[label] = p
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		if kind == "total" {
			p.Total = n
		} else {
			p.Done = n
		}
	}
	for _, p := range byLabel {
		j.Progress = append(j.Progress, *p)
	}
	slices.SortFunc(j.Progress, func(a, b Progress) int { return strings.Compare(a.Label, b.Label) })
	return j, nil
}

// ListJobsParams filters a job listing; zero values match everything.
type ListJobsParams struct {
	Cluster string
	State   string
	Limit   int // default 100
	// Cursor continues a listing where a previous page ended ("" starts
	// at the newest job).
	Cursor string
}

// ErrInvalidCursor is returned for a listing cursor this package did not
// hand out.
var ErrInvalidCursor = errors.New("invalid cursor")

// ListJobs returns jobs newest first.
func (q *Queue) ListJobs(ctx context.Context, p ListJobsParams) ([]Job, error) {
	jobs, _, err := q.ListJobsPage(ctx, p)
	return jobs, err
}

// ListJobsPage returns one page of jobs, newest first, and the cursor of the
// next page ("" after the last). The cursor is the position of the last job
// returned (creation time and id), so jobs submitted meanwhile do not shift
// the pages.
func (q *Queue) ListJobsPage(ctx context.Context, p ListJobsParams) ([]Job, string, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	maxScore, afterID := "+inf", ""
	if p.Cursor != "" {
		ms, id, ok := strings.Cut(p.Cursor, ".")
		if _, err := strconv.ParseInt(ms, 10, 64); !ok || err != nil || id == "" {
			return nil, "", fmt.Errorf("%w %q", ErrInvalidCursor, p.Cursor)
		}
		maxScore, afterID = ms, id
	}
	var out []Job
	var offset int64
	const page = 200
	for {
		zs, err := q.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: keyJobs, Start: maxScore, Stop: "-inf",
			ByScore: true, Rev: true, Offset: offset, Count: page}).Result()
		if err != nil {
			return nil, "", fmt.Errorf("list jobs: %w", err)
		}
		if len(zs) == 0 {
			return out, "", nil
		}
		offset += int64(len(zs))
		pipe := q.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(zs))
		for i, z := range zs {
			cmds[i] = pipe.HMGet(ctx, jobKey(z.Member.(string)), jobFields...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, "", fmt.Errorf("list jobs: %w", err)
		}
		for i, c := range cmds {
			id := zs[i].Member.(string)
			// Members of one score come in reverse lexical order: skip up
			// to and including the cursor's job.
			if afterID != "" && strconv.FormatInt(int64(zs[i].Score), 10) == maxScore && id >= afterID {
				continue
			}
			j, ok := parseJob(c.Val())
			if !ok || (p.Cluster != "" && j.Cluster != p.Cluster) || (p.State != "" && j.State != p.State) {
				continue
			}
			out = append(out, j)
			if len(out) == p.Limit {
				return out, strconv.FormatInt(int64(zs[i].Score), 10) + "." + id, nil
			}
		}
	}
}

// CancelJob stops handing out a job's tasks; running tasks finish.
func (q *Queue) CancelJob(ctx context.Context, id string) (string, error) {
	state, err := q.rdb.FCall(ctx, "rf_cancel", []string{jobKey(id)}, nowMS()).Text()
	return state, jobErr(id, err)
}

// RetryJob re-queues the failed tasks of a failed or canceled job and resumes
// it. Computed tasks are never run again; hints held back while the job was
// stopped are published again.
func (q *Queue) RetryJob(ctx context.Context, id string) error {
	// A job with a notification URL stays in the notification index while
	// it runs again, so its next finish is delivered too. The entry is
	// written before and after the transition: a deliverer that drops it in
	// between sees the job running and puts it back.
	notify, err := q.rdb.HGet(ctx, jobKey(id), "notify").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("retry job: %w", err)
	}
	recheck := time.Now().Add(NotifyRecheck)
	if notify != "" {
		if err := q.indexNotify(ctx, id, recheck); err != nil {
			return err
		}
	}
	res, err := q.rdb.FCall(ctx, "rf_retry", []string{jobKey(id)}, nowMS()).Result()
	if err != nil {
		return jobErr(id, err)
	}
	if notify != "" {
		if err := q.indexNotify(ctx, id, recheck); err != nil {
			return err
		}
	}
	if err := q.Publish(ctx, id, toStrings(res)); err != nil {
		return err
	}
	for {
		res, err := q.rdb.FCall(ctx, "rf_unhold", []string{jobKey(id)}, publishChunk).Result()
		if err != nil {
			return fmt.Errorf("release held tasks: %w", err)
		}
		pub := toStrings(res)
		if len(pub) == 0 {
			break
		}
		if err := q.Publish(ctx, id, pub); err != nil {
			return err
		}
	}
	return q.Republish(ctx, id)
}

func jobErr(id string, err error) error {
	switch {
	case err == nil:
		return nil
	case strings.Contains(err.Error(), "no such job"):
		return fmt.Errorf("%w: %q", ErrJobNotFound, id)
	case strings.Contains(err.Error(), "job is completed"):
		return fmt.Errorf("%w: %q", ErrJobCompleted, id)
	case strings.Contains(err.Error(), "job is archived"):
		return fmt.Errorf("%w: %q", ErrJobArchived, id)
	}
	return err
}

// Task is one task record as stored.
type Task struct {
	Seq     int64  `json:"id"`
	Parent  int64  `json:"parent"` // -1 for the root
	State   string `json:"state"`
	Name    string `json:"name"`
	Version string `json:"version"`
	Cluster string `json:"cluster"`
	Display string `json:"display,omitempty"`
	Input   string `json:"input"` // JSON; empty when the input is stored (InputPayload)
	// InputPayload names an input kept in the payload store (above the
	// submitter's inline limit).
	InputPayload *PayloadRef `json:"input_payload,omitempty"`
	Attempts     int         `json:"attempts"`
	Failures     int         `json:"failures"`
	MaxRetries   int         `json:"max_retries"`
	Optional     bool        `json:"optional,omitempty"`
	Error        string      `json:"error,omitempty"`
	Complete     bool        `json:"complete"`
	Runner       string      `json:"runner,omitempty"`
	Children     []int64     `json:"children,omitempty"`
	Dependents   []int64     `json:"dependents,omitempty"`
	// Losses counts how often the task lost its runner and was queued again.
	Losses         int       `json:"losses,omitempty"`
	QueuedAt       time.Time `json:"queued_at,omitzero"`
	FirstStartedAt time.Time `json:"first_started_at,omitzero"`
	StartedAt      time.Time `json:"started_at,omitzero"`
	EndedAt        time.Time `json:"ended_at,omitzero"`
	childBase      int64
	childCount     int64
	pendingDeps    int64
	startDelay     time.Duration // the last attempt's, from its claim to its start
}

var taskFields = []string{"st", "nm", "v", "cl", "disp", "in", "att", "f", "mr", "opt", "err", "done",
	"own", "kb", "kn", "dn", "tq", "ts", "te", "p", "d", "ts1", "lost", "sd"}

func parseTask(seq int64, vals []any) (Task, bool) {
	s := make([]string, len(vals))
	for i, v := range vals {
		if v != nil {
			s[i], _ = v.(string)
		}
	}
	if s[0] == "" {
		return Task{}, false
	}
	atoi := func(x string) int64 { n, _ := strconv.ParseInt(x, 10, 64); return n }
	t := Task{Seq: seq, State: s[0], Name: s[1], Version: s[2], Cluster: s[3], Display: s[4], Input: s[5],
		Attempts: int(atoi(s[6])), Failures: int(atoi(s[7])), MaxRetries: int(atoi(s[8])), Optional: s[9] == "1",
		Error: s[10], Complete: s[11] == "1", Runner: s[12], childBase: atoi(s[13]), childCount: atoi(s[14]),
		QueuedAt: msTime(s[16]), StartedAt: msTime(s[17]), EndedAt: msTime(s[18]), Parent: -1, pendingDeps: atoi(s[20]),
		FirstStartedAt: msTime(s[21]), Losses: int(atoi(s[22])), startDelay: time.Duration(atoi(s[23])) * time.Millisecond}
	if s[19] != "" {
		t.Parent = atoi(s[19])
	}
	if strings.HasPrefix(t.Input, "@") {
		if ref, ok, err := ParsePayloadRef([]byte(t.Input)); ok && err == nil {
			t.Input, t.InputPayload = "", &ref
		}
	}
	// Fields left out to save writes on the hot path: a first attempt's
	// start is its only start, and a computed task without children is
	// complete.
	if t.FirstStartedAt.IsZero() {
		t.FirstStartedAt = t.StartedAt
	}
	if t.State == TaskComputed && t.childCount == 0 {
		t.Complete = true
	}
	for _, d := range strings.Split(s[15], ",") {
		if d != "" {
			t.Dependents = append(t.Dependents, atoi(d))
		}
	}
	for i := int64(0); i < t.childCount; i++ {
		t.Children = append(t.Children, t.childBase+i)
	}
	return t, true
}

// JobTasks returns every task of a job in tree order (parents before their
// children), walking from the root through committed children only, so
// subtasks staged by an execution that never committed are never listed.
func (q *Queue) JobTasks(ctx context.Context, id string) ([]Task, error) {
	if n, err := q.rdb.Exists(ctx, jobKey(id)).Result(); err != nil {
		return nil, fmt.Errorf("get job tasks: %w", err)
	} else if n == 0 {
		return nil, fmt.Errorf("%w: %q", ErrJobNotFound, id)
	}
	var out []Task
	frontier := []int64{0}
	for len(frontier) > 0 {
		n := min(len(frontier), 1000)
		batch := frontier[:n]
		frontier = frontier[n:]
		pipe := q.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(batch))
		for i, seq := range batch {
			cmds[i] = pipe.HMGet(ctx, taskKey(id, seq), taskFields...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("get job tasks: %w", err)
		}
		vals := make([][]any, len(cmds))
		for i, c := range cmds {
			vals[i] = c.Val()
		}
		if err := q.fillPacked(ctx, id, batch, taskFields, vals); err != nil {
			return nil, fmt.Errorf("get job tasks: %w", err)
		}
		for i, v := range vals {
			t, ok := parseTask(batch[i], v)
			if !ok {
				continue
			}
			out = append(out, t)
			frontier = append(frontier, t.Children...)
		}
	}
	return out, nil
}

func toStrings(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		switch s := x.(type) {
		case string:
			out = append(out, s)
		case int64:
			out = append(out, strconv.FormatInt(s, 10))
		}
	}
	return out
}

func sortClusters(cs []Cluster) {
	slices.SortFunc(cs, func(a, b Cluster) int { return strings.Compare(a.Slug, b.Slug) })
}
