package workflows_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// noFallback is a fallback interval no test outlives: a Wait that returns
// with it learned of the change from an event, not from a poll.
const noFallback = time.Hour

// waitResult is what a Wait started in the background returned.
type waitResult struct {
	job workflows.Job
	err error
	at  time.Time
}

// updates records the jobs a Wait passed to onUpdate and signals the first.
type updates struct {
	mu    sync.Mutex
	jobs  []workflows.Job
	first chan struct{}
	once  sync.Once
}

func newUpdates() *updates { return &updates{first: make(chan struct{})} }

func (u *updates) add(j workflows.Job) {
	u.mu.Lock()
	u.jobs = append(u.jobs, j)
	u.mu.Unlock()
	u.once.Do(func() { close(u.first) })
}

func (u *updates) all() []workflows.Job {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]workflows.Job(nil), u.jobs...)
}

// waitInBackground starts Wait and returns where its result arrives, once
// Wait has read the job for the first time.
func waitInBackground(t *testing.T, ctx context.Context, c *workflows.Client, id string, every time.Duration, u *updates) <-chan waitResult {
	t.Helper()
	out := make(chan waitResult, 1)
	go func() {
		j, err := c.Jobs().Wait(ctx, id, every, u.add)
		out <- waitResult{j, err, time.Now()}
	}()
	select {
	case <-u.first:
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not read the job")
	}
	return out
}

func runInBackground(t *testing.T, ctx context.Context, r *workflows.Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.RunForever(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

func TestWaitLearnsOfTheEndFromAnEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	runInBackground(t, b.ctx, b.runner(t, b.cluster))
	j := b.submit(t, &Step{Key: t.Name(), Label: "gated", WaitFor: "go"})

	u := newUpdates()
	res := waitInBackground(t, b.ctx, b.client, j.ID, noFallback, u)
	require.False(t, workflows.Finished(u.all()[0].State), "Wait started before the job could end")
	b.rec.note("go")
	r := <-res
	require.NoError(t, r.err)
	require.Equal(t, workflows.JobCompleted, r.job.State)
	require.Equal(t, int64(1), r.job.TaskCounts[workflows.TaskComputed])
	require.False(t, r.at.Before(r.job.FinishedAt.Truncate(time.Millisecond)))
}

// Reporter submits a task that reports progress and, after it, one that
// waits for the recorder event "go".
type Reporter struct {
	Key string `json:"key"`
}

func (*Reporter) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Reporter", "v1.0")
}
func (r *Reporter) Execute(ctx context.Context) error {
	f, err := workflows.SubmitSubtask(ctx, &Progressing{})
	if err != nil {
		return err
	}
	_, err = workflows.SubmitSubtask(ctx, &Step{Key: r.Key, Label: "gated", WaitFor: "go"}, workflows.WithDependencies(f))
	return err
}

func TestWaitPassesProgressOnAsItIsCommitted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, err := b.client.NewRunner(b.ctx, b.cluster, append(testTasks(), &Reporter{})...)
	require.NoError(t, err)
	runInBackground(t, b.ctx, r)
	j := b.submit(t, &Reporter{Key: t.Name()})

	// onUpdate lets the job end once it saw the progress of its first
	// subtask; with no fallback poll, only an event can bring it.
	u := newUpdates()
	var once sync.Once
	res := make(chan waitResult, 1)
	go func() {
		j, err := b.client.Jobs().Wait(b.ctx, j.ID, noFallback, func(j workflows.Job) {
			u.add(j)
			if len(j.Progress) == 1 && j.Progress[0].Done == 10 {
				once.Do(func() { b.rec.note("go") })
			}
		})
		res <- waitResult{j, err, time.Now()}
	}()
	w := <-res
	require.NoError(t, w.err, "%+v", u.all())
	require.Equal(t, workflows.JobCompleted, w.job.State)
	var sawProgress bool
	for _, x := range u.all() {
		if x.State == workflows.JobRunning && len(x.Progress) == 1 && x.Progress[0] == (workflows.ProgressInfo{Label: "items", Total: 10, Done: 10}) {
			sawProgress = true
		}
	}
	require.True(t, sawProgress, "onUpdate saw the progress while the job ran: %v", u.all())
}

func TestWaitReturnsAtOnceWhenCanceled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t, b.cluster) // registers the tasks; runs nothing
	j := b.submit(t, &benchtask.Noop{})
	ctx, cancel := context.WithCancel(b.ctx)
	res := waitInBackground(t, ctx, b.client, j.ID, noFallback, newUpdates())
	time.Sleep(20 * time.Millisecond) // into the blocking read
	canceled := time.Now()
	cancel()
	r := <-res
	require.ErrorIs(t, r.err, context.Canceled)
	require.Equal(t, workflows.JobSubmitted, r.job.State, "the job as last read")
	require.Less(t, r.at.Sub(canceled), time.Second, "before the blocking read's own end")
}

func TestWaitFallsBackToReadingTheJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t, b.cluster)
	j := b.submit(t, &benchtask.Noop{})
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.Addr})
	defer rdb.Close()

	u := newUpdates()
	res := waitInBackground(t, b.ctx, b.client, j.ID, 50*time.Millisecond, u)
	time.Sleep(300 * time.Millisecond)
	require.Less(t, len(u.all()), 30, "reads about every 50 ms, not in a loop")

	// The job ends by a change that added no event, and its stream is gone,
	// as after a Redis restart that lost them: the fallback read sees it.
	keys, err := rdb.Keys(b.ctx, "rf:{j:"+j.ID+"}:events").Result()
	require.NoError(t, err)
	if len(keys) > 0 {
		require.NoError(t, rdb.Del(b.ctx, keys...).Err())
	}
	now := time.Now().UnixMilli()
	require.NoError(t, rdb.HSet(b.ctx, "rf:{j:"+j.ID+"}:job", "state", workflows.JobCanceled, "finished", now).Err())
	select {
	case r := <-res:
		require.NoError(t, r.err)
		require.Equal(t, workflows.JobCanceled, r.job.State)
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not notice the change")
	}
}

func TestWaitOutlivesARedisRestart(t *testing.T) {
	t.Parallel()
	rs := testenv.NewRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(rs.URL()),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Clusters().Create(ctx, "main", "")
	require.NoError(t, err)
	r, err := c.NewRunner(ctx, "main", benchtask.All()...)
	require.NoError(t, err)
	j, err := c.Jobs().Submit(ctx, "restart", "main", &benchtask.Noop{})
	require.NoError(t, err)

	res := waitInBackground(t, ctx, c, j.ID, noFallback, newUpdates())
	time.Sleep(20 * time.Millisecond) // into the blocking read
	rs.Kill()
	require.NoError(t, rs.Restart(ctx))
	runInBackground(t, ctx, r)
	select {
	case w := <-res:
		require.NoError(t, w.err)
		require.Equal(t, workflows.JobCompleted, w.job.State, "the job survived the restart (AOF) and its end came as an event")
	case <-time.After(40 * time.Second):
		t.Fatal("Wait hangs after a Redis restart")
	}
}

func TestWaitForAJobThatDoesNotExist(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.Jobs().Wait(b.ctx, "no-such-job", noFallback, nil)
	require.ErrorIs(t, err, workflows.ErrJobNotFound)
}
