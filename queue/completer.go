package queue

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
