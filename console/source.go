package console

import (
	"cmp"
	"context"
	"slices"
	"strconv"

	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// taskSource is where a job's tasks, attempts and logs are read from: Redis
// for a live job, page by page; the archive for a job that left Redis,
// which is read once per request and paged in memory.
type taskSource interface {
	// page returns up to limit tasks after seq after in seq order, with
	// state when set, and the after of the next page (-1: none).
	page(ctx context.Context, after int64, limit int, state string) ([]queue.Task, int64, error)
	// graphTasks returns every task with what the graph needs, some of
	// them as counts (queue.GraphSummary).
	graphTasks(ctx context.Context) ([]queue.Task, []queue.LeafGroup, error)
	// tasks returns the full records of seqs.
	tasks(ctx context.Context, seqs []int64) ([]queue.Task, error)
	attempts(ctx context.Context, seq int64) ([]queue.Attempt, error)
	runners(ctx context.Context) ([]queue.RunnerContext, error)
	logs(ctx context.Context, p queue.LogQuery) ([]queue.LogRecord, error)
	// stamp changes whenever the job's tasks may have: graphs are cached
	// under it.
	stamp() string
}

// tasksOf is where the page reads job j's tasks: Redis, or arch, the
// archive loadJob read (nil for a job in Redis).
func (c *Console) tasksOf(j queue.Job, arch *workflows.JobArchive) taskSource {
	if arch == nil {
		return liveSource{c: c, job: j}
	}
	tasks := slices.Clone(arch.Tasks)
	slices.SortFunc(tasks, func(a, b queue.Task) int { return cmp.Compare(a.Seq, b.Seq) })
	return &archivedSource{job: j, all: tasks, attemptsOf: arch.Attempts, records: arch.Logs}
}

type liveSource struct {
	c   *Console
	job queue.Job
}

func (s liveSource) page(ctx context.Context, after int64, limit int, state string) ([]queue.Task, int64, error) {
	return s.c.q.TasksPage(ctx, s.job.ID, after, limit, state)
}

func (s liveSource) graphTasks(ctx context.Context) ([]queue.Task, []queue.LeafGroup, error) {
	return s.c.q.GraphSummary(ctx, s.job.ID)
}

func (s liveSource) tasks(ctx context.Context, seqs []int64) ([]queue.Task, error) {
	return s.c.q.Tasks(ctx, s.job.ID, seqs)
}

func (s liveSource) attempts(ctx context.Context, seq int64) ([]queue.Attempt, error) {
	return s.c.q.TaskAttempts(ctx, s.job.ID, seq)
}

func (s liveSource) runners(ctx context.Context) ([]queue.RunnerContext, error) {
	m, err := s.c.q.JobRunners(ctx, s.job.ID)
	if err != nil {
		return nil, err
	}
	return sortedRunners(m), nil
}

func (s liveSource) logs(ctx context.Context, p queue.LogQuery) ([]queue.LogRecord, error) {
	return s.c.q.JobLogs(ctx, s.job.ID, p)
}

// stamp of a live job: its state and task counts. Every task transition
// moves a count, and a job whose counts and state are unchanged has drawn
// the same picture except for which of two tasks holds a state, which only
// a running job shows (and its graph is never cached).
func (s liveSource) stamp() string { return jobStamp(s.job) }

func jobStamp(j queue.Job) string {
	b := []byte(j.ID + "|" + j.State)
	for _, st := range workflows.TaskStates {
		b = append(b, '|')
		b = strconv.AppendInt(b, j.TaskCounts[st], 10)
	}
	return string(b)
}

type archivedSource struct {
	job        queue.Job
	all        []queue.Task // by seq
	attemptsOf map[int64][]queue.Attempt
	records    []queue.LogRecord
}

func (s *archivedSource) page(_ context.Context, after int64, limit int, state string) ([]queue.Task, int64, error) {
	i, _ := slices.BinarySearchFunc(s.all, after+1, func(t queue.Task, seq int64) int { return cmp.Compare(t.Seq, seq) })
	var out []queue.Task
	for ; i < len(s.all); i++ {
		t := s.all[i]
		if state != "" && t.State != state {
			continue
		}
		if len(out) == limit {
			return out, out[len(out)-1].Seq, nil
		}
		out = append(out, t)
	}
	return out, -1, nil
}

func (s *archivedSource) graphTasks(context.Context) ([]queue.Task, []queue.LeafGroup, error) {
	return s.all, nil, nil
}

func (s *archivedSource) tasks(_ context.Context, seqs []int64) ([]queue.Task, error) {
	var out []queue.Task
	for _, seq := range seqs {
		if i, ok := slices.BinarySearchFunc(s.all, seq, func(t queue.Task, seq int64) int { return cmp.Compare(t.Seq, seq) }); ok {
			out = append(out, s.all[i])
		}
	}
	return out, nil
}

func (s *archivedSource) attempts(_ context.Context, seq int64) ([]queue.Attempt, error) {
	return s.attemptsOf[seq], nil
}

func (s *archivedSource) runners(context.Context) ([]queue.RunnerContext, error) {
	m := map[string]queue.RunnerContext{}
	for _, as := range s.attemptsOf {
		for _, a := range as {
			if a.Context != nil {
				m[a.Runner] = *a.Context
			}
		}
	}
	return sortedRunners(m), nil
}

func (s *archivedSource) logs(_ context.Context, p queue.LogQuery) ([]queue.LogRecord, error) {
	return queue.SelectLogs(s.records, p), nil
}

func (s *archivedSource) stamp() string { return "archived|" + jobStamp(s.job) }

func sortedRunners(m map[string]queue.RunnerContext) []queue.RunnerContext {
	out := make([]queue.RunnerContext, 0, len(m))
	for _, rc := range m {
		out = append(out, rc)
	}
	slices.SortFunc(out, func(a, b queue.RunnerContext) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
