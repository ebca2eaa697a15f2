package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// Attempts. Every execution of a task is an attempt. What the hot path
// already writes to the task hash (own, att, ts, te and sd, the start delay)
// describes the task's last attempt; only an attempt that ends otherwise
// (failed, handed back, lost) gets a record of its own, written by the same
// atomic step that ends it (rf_fail, rf_reclaim):
//
//	rf:{j:<id>}:att      hash "<seq>:<attempt>" -> attempt record JSON
//	rf:{j:<id>}:runners  hash runner id -> RunnerContext JSON, written once
//	                     per runner, with the commit after its first
//	                     execution of the job (rf_runner_context)
//
// A computed task costs nothing extra, and a runner's context is stored
// once per job rather than once per attempt.
func attemptsKey(id string) string   { return jobPrefix(id) + "att" }
func jobRunnersKey(id string) string { return jobPrefix(id) + "runners" }

// ErrTaskNotFound means the job has no task with that id.
var ErrTaskNotFound = errors.New("task not found")

// AttemptTextLimit caps an attempt's error message and panic stack, each.
const AttemptTextLimit = 16 << 10

// Attempt outcomes.
const (
	AttemptRunning    = "running"
	AttemptComputed   = "computed"
	AttemptFailed     = "failed"
	AttemptLost       = "lost"
	AttemptHandedBack = "handed_back"
)

// RunnerContext is where an attempt ran: the runner process and what it ran.
type RunnerContext struct {
	ID   string `json:"id"`
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// Cluster is the cluster the runner serves.
	Cluster string `json:"cluster"`
	// Release is the release the task ran from on a release runner; empty
	// on a direct runner.
	Release string `json:"release,omitempty"`
	// SDKVersion is the runfleet build of the runner process: runnerd's
	// for a release runner, whose release id names what its worker runs.
	SDKVersion string `json:"sdk_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

// Attempt is one execution of a task.
type Attempt struct {
	Number int    `json:"number"`
	Runner string `json:"runner"`
	// Context is the runner's context; nil when the runner never recorded
	// one for this job (it died before it could, or predates recording).
	Context  *RunnerContext `json:"context,omitempty"`
	Claimed  time.Time      `json:"claimed,omitzero"`
	Started  time.Time      `json:"started,omitzero"`
	Finished time.Time      `json:"finished,omitzero"`
	// Outcome is running, computed, failed, lost or handed_back.
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
	// Stack is the goroutine stack of a panic, capped at AttemptTextLimit.
	Stack string `json:"stack,omitempty"`
}

// attemptRecord is an attempt as stored: times in unix ms, no context.
type attemptRecord struct {
	Number   int    `json:"number"`
	Runner   string `json:"runner"`
	Claimed  int64  `json:"claimed,omitempty"`
	Started  int64  `json:"started,omitempty"`
	Finished int64  `json:"finished,omitempty"`
	Outcome  string `json:"outcome"`
	Error    string `json:"error,omitempty"`
	Stack    string `json:"stack,omitempty"`
}

func msOf(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func timeOfMS(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// CapText cuts s to at most limit bytes on a character boundary, ending it
// with "…[truncated N bytes]", N being what was cut. Attempts' errors and
// stacks and task log records are capped with it.
func CapText(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	// Room for the suffix, whose number has at most as many digits as len(s).
	n := max(limit-len("…[truncated  bytes]")-len(strconv.Itoa(len(s))), 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…[truncated " + strconv.Itoa(len(s)-n) + " bytes]"
}

// encodeAttempt is the record rf_fail stores for a failure f by owner.
func encodeAttempt(owner string, f *Failure, finished int64) string {
	outcome := AttemptFailed
	switch {
	case f.Lost:
		outcome = AttemptLost
	case f.HandBack:
		outcome = AttemptHandedBack
	}
	b, _ := json.Marshal(attemptRecord{Number: f.Attempt, Runner: owner, Claimed: msOf(f.Claimed),
		Started: msOf(f.Started), Finished: finished, Outcome: outcome,
		Error: CapText(f.Error, AttemptTextLimit), Stack: CapText(f.Stack, AttemptTextLimit)})
	return string(b)
}

// JobRunners returns the contexts of the runners that executed tasks of a
// job, by runner id.
func (q *Queue) JobRunners(ctx context.Context, jobID string) (map[string]RunnerContext, error) {
	m, err := q.rdb.HGetAll(ctx, jobRunnersKey(jobID)).Result()
	if err != nil {
		return nil, fmt.Errorf("get job runners: %w", err)
	}
	return decodeRunners(m), nil
}

func decodeRunners(m map[string]string) map[string]RunnerContext {
	out := make(map[string]RunnerContext, len(m))
	for id, v := range m {
		var rc RunnerContext
		if json.Unmarshal([]byte(v), &rc) == nil {
			out[id] = rc
		}
	}
	return out
}

// GetTask returns one task of a job.
func (q *Queue) GetTask(ctx context.Context, jobID string, seq int64) (Task, error) {
	pipe := q.rdb.Pipeline()
	exists := pipe.Exists(ctx, jobKey(jobID))
	fields := pipe.HMGet(ctx, taskKey(jobID, seq), taskFields...)
	if _, err := pipe.Exec(ctx); err != nil {
		return Task{}, fmt.Errorf("get task: %w", err)
	}
	if exists.Val() == 0 {
		return Task{}, fmt.Errorf("%w: %q", ErrJobNotFound, jobID)
	}
	vals := [][]any{fields.Val()}
	if err := q.fillPacked(ctx, jobID, []int64{seq}, taskFields, vals); err != nil {
		return Task{}, fmt.Errorf("get task: %w", err)
	}
	t, ok := parseTask(seq, vals[0])
	if !ok {
		return Task{}, fmt.Errorf("%w: job %s has no task %d", ErrTaskNotFound, jobID, seq)
	}
	return t, nil
}

// TaskAttempts returns every attempt of a task, oldest first.
func (q *Queue) TaskAttempts(ctx context.Context, jobID string, seq int64) ([]Attempt, error) {
	t, err := q.GetTask(ctx, jobID, seq)
	if err != nil {
		return nil, err
	}
	pipe := q.rdb.Pipeline()
	var recs *redis.SliceCmd
	if t.Attempts > 0 {
		fields := make([]string, t.Attempts)
		for n := range fields {
			fields[n] = strconv.FormatInt(seq, 10) + ":" + strconv.Itoa(n+1)
		}
		recs = pipe.HMGet(ctx, attemptsKey(jobID), fields...)
	}
	runners := pipe.HGetAll(ctx, jobRunnersKey(jobID))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("get task attempts: %w", err)
	}
	stored := map[int]attemptRecord{}
	if recs != nil {
		for _, v := range recs.Val() {
			if s, ok := v.(string); ok {
				var r attemptRecord
				if json.Unmarshal([]byte(s), &r) == nil {
					stored[r.Number] = r
				}
			}
		}
	}
	return BuildAttempts(t, stored, decodeRunners(runners.Val())), nil
}

// JobAttempts returns the attempts of every task of a job that has any, by
// task id, reading the job's records in one pass.
func (q *Queue) JobAttempts(ctx context.Context, jobID string, tasks []Task) (map[int64][]Attempt, error) {
	stored := map[int64]map[int]attemptRecord{}
	err := q.scanHash(ctx, attemptsKey(jobID), func(field, value string) error {
		seqText, _, _ := strings.Cut(field, ":")
		seq, err := strconv.ParseInt(seqText, 10, 64)
		if err != nil {
			return nil
		}
		var r attemptRecord
		if json.Unmarshal([]byte(value), &r) != nil {
			return nil
		}
		if stored[seq] == nil {
			stored[seq] = map[int]attemptRecord{}
		}
		stored[seq][r.Number] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get job attempts: %w", err)
	}
	runners, err := q.JobRunners(ctx, jobID)
	if err != nil {
		return nil, err
	}
	out := make(map[int64][]Attempt, len(tasks))
	for _, t := range tasks {
		if t.Attempts > 0 {
			out[t.Seq] = BuildAttempts(t, stored[t.Seq], runners)
		}
	}
	return out, nil
}

// BuildAttempts puts a task's attempts together from its stored records and
// its hash: the last attempt, unless it has a record, is read from the task
// (its runner, claim, start delay and end).
func BuildAttempts(t Task, stored map[int]attemptRecord, runners map[string]RunnerContext) []Attempt {
	out := make([]Attempt, 0, t.Attempts)
	for n := 1; n <= t.Attempts; n++ {
		var a Attempt
		if r, ok := stored[n]; ok {
			a = Attempt{Number: n, Runner: r.Runner, Claimed: timeOfMS(r.Claimed), Started: timeOfMS(r.Started),
				Finished: timeOfMS(r.Finished), Outcome: r.Outcome, Error: r.Error, Stack: r.Stack}
		} else if n == t.Attempts {
			a = Attempt{Number: n, Runner: t.Runner, Claimed: t.StartedAt}
			switch t.State {
			case TaskRunning:
				a.Outcome = AttemptRunning
			case TaskComputed:
				a.Outcome, a.Finished = AttemptComputed, t.EndedAt
				a.Started = t.StartedAt.Add(t.startDelay)
			default:
				// Failed before attempts were recorded, or settled by a
				// path that keeps no record (a cancel): the task's own
				// error is the best account.
				a.Outcome, a.Finished, a.Error = t.State, t.EndedAt, t.Error
			}
		} else {
			// An earlier attempt with no record: it ended before attempts
			// were recorded.
			a = Attempt{Number: n, Outcome: "unknown"}
		}
		if rc, ok := runners[a.Runner]; ok {
			a.Context = &rc
		}
		out = append(out, a)
	}
	return out
}
