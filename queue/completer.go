package queue

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

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
	// StartDelay is the time from the task's claim to its start on the
	// runner (hints are read ahead), kept with the attempt.
	StartDelay time.Duration
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
	res, err := q.CommitAndClaim(ctx, owner, Commit{Completions: cs})
	return res.Completed, err
}

// Commit is what a busy runner sends in one round trip: the results of
// finished executions, hints to claim in their place, and hints of results
// committed by an earlier round trip, now to acknowledge.
type Commit struct {
	Completions []Completion
	Claims      []Hint
	Acks        []Hint
	// Contexts are the runner's context (RunnerContext JSON) to record in
	// each job it names, best effort: an attempt whose runner's context is
	// missing still shows the runner id.
	Contexts []JobContext
}

// JobContext is a runner context to record in a job.
type JobContext struct {
	JobID   string
	Context []byte
}

// CommitResult is what CommitAndClaim did.
type CommitResult struct {
	// Completed holds per completion nil (committed), ErrLost (no longer
	// held by this runner at this attempt) or the error of its call, in
	// which case it may or may not have been committed: commit it again.
	Completed []error
	// Claimed are the tasks handed out for Claims, as Claim returns them.
	Claimed []Claimed
	// Unclaimed are the Claims whose call failed: still pending under the
	// runner, to be claimed again.
	Unclaimed []Hint
	// ContextErr is the first failure to record a runner context; it
	// fails nothing else.
	ContextErr error
	// AckErr is set when an XACK of c.Acks failed: those entries may
	// still be pending.
	AckErr error
	// Stale are the Claims of which no task was handed out (malformed,
	// stale or duplicate hints, tasks skipped or held for a stopped job):
	// nothing to run. The caller acknowledges them (see Claim).
	Stale []Hint
}

// CommitAndClaim sends one pipeline: XACKs for c.Acks, then per job one
// rf_complete that commits the job's completions and claims the job's hints
// in the same atomic step, and an rf_claim for hints of jobs with nothing to
// commit. A runner whose tasks are short thus costs one round trip and one
// function call per job per batch. Acks go first and only for results whose
// commit has been confirmed: an acknowledged hint no longer shows a
// reclaimer what this runner holds. Nothing else is acknowledged here:
// unlike Claim, stale hints are returned (CommitResult.Stale), since only
// the caller knows what else of their entries it holds.
func (q *Queue) CommitAndClaim(ctx context.Context, owner string, c Commit) (CommitResult, error) {
	res := CommitResult{Completed: make([]error, len(c.Completions))}
	cs := c.Completions
	// Claims travel as whole hints (parts), each in exactly one call, so a
	// failed call tells which hints stay pending.
	claims := map[string][]int{} // job -> indexes into c.Claims
	var claimJobs []string
	for i, h := range c.Claims {
		if h.Seq < 0 {
			continue
		}
		if _, ok := claims[h.JobID]; !ok {
			claimJobs = append(claimJobs, h.JobID)
		}
		claims[h.JobID] = append(claims[h.JobID], i)
	}
	type call struct {
		job    string
		items  []int // completions carried; nil for an rf_claim
		claims []int // indexes into c.Claims of the hints it claims
		cmd    *redis.Cmd
	}
	// takeClaims moves whole hints of job, up to room tasks, into args
	// (with first, at least one hint).
	takeClaims := func(job string, room int, args []any, first bool) ([]any, []int) {
		var took []int
		for len(claims[job]) > 0 {
			h := c.Claims[claims[job][0]]
			if int(h.N) > room && !(first && len(took) == 0) {
				break
			}
			for seq := h.Seq; seq < h.Seq+h.N; seq++ {
				args = append(args, seq)
			}
			took = append(took, claims[job][0])
			claims[job] = claims[job][1:]
			room -= int(h.N)
		}
		return args, took
	}
	var calls []*call
	groupByJob(len(cs), func(i int) (string, int) {
		w := 1
		if !cs[i].staged {
			w += len(cs[i].Subtasks)
		}
		return cs[i].JobID, w
	}, func(job string, idx []int) {
		calls = append(calls, &call{job: job, items: idx})
	})
	pipe := q.rdb.Pipeline()
	acks := queueAcks(ctx, pipe, c.Acks)
	contexts := make([]*redis.Cmd, len(c.Contexts))
	for i, jc := range c.Contexts {
		contexts[i] = pipe.FCall(ctx, "rf_runner_context", []string{jobKey(jc.JobID)}, owner, jc.Context)
	}
	for k, cl := range calls {
		args := []any{owner, nowMS(), len(cl.items)}
		weight := 0
		for _, i := range cl.items {
			args = appendCompletion(args, &cs[i])
			weight++
			if !cs[i].staged {
				weight += len(cs[i].Subtasks)
			}
		}
		// A job's claims ride on its last call, as many as keep the call
		// within callBudget; the rest go in rf_claim calls below.
		if k == len(calls)-1 || calls[k+1].job != cl.job {
			args, cl.claims = takeClaims(cl.job, callBudget-weight, args, false)
		}
		cl.cmd = pipe.FCall(ctx, "rf_complete", []string{jobKey(cl.job)}, args...)
	}
	for _, job := range claimJobs {
		for len(claims[job]) > 0 {
			cl := &call{job: job}
			var args []any
			args, cl.claims = takeClaims(job, callBudget, []any{owner, nowMS()}, true)
			cl.cmd = pipe.FCall(ctx, "rf_claim", []string{jobKey(job)}, args...)
			calls = append(calls, cl)
		}
	}
	_, _ = pipe.Exec(ctx)
	for _, a := range acks {
		if err := a.Err(); err != nil && res.AckErr == nil {
			res.AckErr = fmt.Errorf("acknowledge committed hints: %w", err)
		}
	}
	for _, cmd := range contexts {
		if err := cmd.Err(); err != nil && res.ContextErr == nil {
			res.ContextErr = fmt.Errorf("record runner context: %w", err)
		}
	}

	var firstErr error
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	// Hints whose claims were not made (indexes into c.Claims): they stay
	// pending.
	failed := map[int]bool{}
	for _, cl := range calls {
		v, err := cl.cmd.Result()
		if err != nil {
			for _, i := range cl.claims {
				failed[i] = true
			}
			for _, i := range cl.items {
				res.Completed[i] = fmt.Errorf("commit tasks: %w", err)
			}
			if cl.items == nil {
				fail(fmt.Errorf("claim tasks: %w", err))
			} else {
				fail(fmt.Errorf("complete tasks: %w", err))
			}
			continue
		}
		var pub []string
		var rows []any
		if cl.items == nil {
			all, _ := v.([]any)
			if len(all) > 0 {
				pub, rows = toStrings(all[0]), all[1:]
			}
		} else {
			parts, _ := v.([]any)
			if len(parts) != 3 {
				for _, i := range cl.claims {
					failed[i] = true
				}
				fail(fmt.Errorf("complete tasks: unexpected reply %v", v))
				for _, i := range cl.items {
					res.Completed[i] = fmt.Errorf("complete tasks: unexpected reply")
				}
				continue
			}
			for k, r := range toStrings(parts[0]) {
				if r == "lost" && k < len(cl.items) {
					res.Completed[cl.items[k]] = ErrLost
				}
			}
			pub = toStrings(parts[1])
			rows, _ = parts[2].([]any)
		}
		if err := q.Publish(ctx, cl.job, pub); err != nil {
			fail(err)
		}
		res.Claimed = appendClaimed(res.Claimed, cl.job, rows)
		for _, i := range cl.items {
			if cs[i].staged && res.Completed[i] == nil {
				if err := q.publishStaged(ctx, &cs[i]); err != nil {
					fail(err)
				}
			}
		}
	}
	res.Stale = matchHints(res.Claimed, c.Claims, failed)
	for i, h := range c.Claims {
		if failed[i] {
			res.Unclaimed = append(res.Unclaimed, h)
		}
	}
	return res, firstErr
}

// appendCompletion appends one rf_complete item: its 9-field header, then
// its inline subtask records.
func appendCompletion(args []any, c *Completion) []any {
	staged, inline := "0", 0
	if c.staged {
		staged = "1"
	} else {
		inline = len(c.Subtasks)
	}
	args = append(args, c.Seq, c.Attempt, c.Display, c.Progress, len(c.Subtasks), staged, c.base, inline,
		max(c.StartDelay.Milliseconds(), 0))
	if inline > 0 {
		args = encodeSubtasks(c.Subtasks, dependentsOf(c.Subtasks), 0, inline, args)
	}
	return args
}

// publishStaged XADDs the dependency-free subtasks of a committed, staged
// set straight from memory, in runs of up to HintRun consecutive tasks per
// entry, then clears the set's cursor; a republisher after a crash reads the
// set back from Redis instead.
func (q *Queue) publishStaged(ctx context.Context, c *Completion) error {
	err := inParallel(ctx, len(c.Subtasks), publishChunk, func(ctx context.Context, first, end int) error {
		var runs []hintRun
		for i := first; i < end; i++ {
			s := c.Subtasks[i]
			if len(s.Deps) > 0 {
				continue
			}
			stream, seq := StreamKey(s.Cluster, s.Task), c.base+int64(i)
			if k := len(runs) - 1; k >= 0 && runs[k].stream == stream && runs[k].first+runs[k].n == seq && runs[k].n < HintRun {
				runs[k].n++
				continue
			}
			runs = append(runs, hintRun{stream: stream, job: c.JobID, first: seq, n: 1})
		}
		return q.publishRuns(ctx, runs)
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

// hintRun is one stream entry to add: n consecutive tasks of job from first.
type hintRun struct {
	stream, job string
	first, n    int64
}

// publishRuns XADDs one entry per run, in one pipeline.
func (q *Queue) publishRuns(ctx context.Context, runs []hintRun) error {
	if len(runs) == 0 {
		return nil
	}
	pipe := q.rdb.Pipeline()
	for _, r := range runs {
		values := []string{"j", r.job, "t", strconv.FormatInt(r.first, 10)}
		if r.n > 1 {
			values = append(values, "n", strconv.FormatInt(r.n, 10))
		}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: r.stream, Values: values})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("publish ready tasks: %w", err)
	}
	return nil
}

// Repost publishes parts of entries again, each as an entry of its own, for
// another runner to take: a runner hands on the tasks of an entry it read
// beyond what it will hold, rather than sit on them. The original entry
// still names them; a reclaimer of it leaves alone tasks another runner
// holds, and duplicate hints are harmless.
func (q *Queue) Repost(ctx context.Context, parts []Hint) error {
	runs := make([]hintRun, 0, len(parts))
	for _, h := range parts {
		if h.Seq >= 0 && h.N > 0 {
			runs = append(runs, hintRun{stream: h.Stream, job: h.JobID, first: h.Seq, n: h.N})
		}
	}
	return q.publishRuns(ctx, runs)
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
	// Claimed, Started and Stack go into the attempt's record; Stack is a
	// panic's stack, "" otherwise.
	Claimed, Started time.Time
	Stack            string
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
			now := nowMS()
			args := []any{owner, now, len(idx)}
			for _, i := range idx {
				f := &fs[i]
				counts := "1"
				switch {
				case f.Lost:
					counts = "2"
				case f.HandBack:
					counts = "0"
				}
				args = append(args, f.Seq, f.Attempt, f.Error, f.Display, f.Progress, counts, encodeAttempt(owner, f, now))
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
	var firstErr error
	groupByJob(n, key, func(job string, idx []int) {
		if err := call(job, idx); err != nil && firstErr == nil {
			firstErr = err
		}
	})
	return firstErr
}

// groupByJob hands fn the items of each job, in calls whose summed weight
// stays within callBudget; a job's calls come one after another.
func groupByJob(n int, key func(i int) (string, int), fn func(job string, idx []int)) {
	var order []string
	groups := map[string][]int{}
	for i := 0; i < n; i++ {
		j, _ := key(i)
		if _, ok := groups[j]; !ok {
			order = append(order, j)
		}
		groups[j] = append(groups[j], i)
	}
	for _, j := range order {
		var batch []int
		weight := 0
		for _, i := range groups[j] {
			_, w := key(i)
			if len(batch) > 0 && weight+w > callBudget {
				fn(j, batch)
				batch, weight = nil, 0
			}
			batch = append(batch, i)
			weight += w
		}
		if len(batch) > 0 {
			fn(j, batch)
		}
	}
}
