package workflows_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// FailsFirst fails its first attempt and computes on the next.
type FailsFirst struct{}

func (*FailsFirst) Execute(ctx context.Context) error {
	if info, _ := workflows.CurrentTask(ctx); info.Attempt == 1 {
		return errors.New("first attempt fails on purpose")
	}
	return nil
}

// A direct runner's attempts name it, where it ran and when, and how each
// attempt ended.
func TestAttemptsOfADirectRunner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, err := b.client.NewRunner(b.ctx, b.cluster, &FailsFirst{})
	require.NoError(t, err)
	before := time.Now()
	j := b.submit(t, &FailsFirst{}, workflows.WithJobMaxRetries(1))
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)

	as, err := b.client.Jobs().Attempts(b.ctx, j.ID, 0)
	require.NoError(t, err)
	require.Len(t, as, 2)
	require.Equal(t, workflows.AttemptFailed, as[0].Outcome)
	require.Equal(t, "first attempt fails on purpose", as[0].Error)
	require.Equal(t, workflows.AttemptComputed, as[1].Outcome)
	host, _ := os.Hostname()
	for i, a := range as {
		require.Equal(t, i+1, a.Number)
		require.Equal(t, r.ID(), a.Runner)
		require.NotNil(t, a.Context, "attempt %d has its runner's context", a.Number)
		require.Equal(t, workflows.RunnerContext{ID: r.ID(), Host: host, PID: os.Getpid(), Cluster: b.cluster,
			SDKVersion: a.Context.SDKVersion, OS: runtime.GOOS, Arch: runtime.GOARCH}, *a.Context)
		require.NotEmpty(t, a.Context.SDKVersion)
		require.False(t, a.Claimed.Before(before.Truncate(time.Millisecond)), "claimed %v before the submit %v", a.Claimed, before)
		require.False(t, a.Started.Before(a.Claimed), "started before claimed")
		require.False(t, a.Finished.Before(a.Started), "finished before started")
	}
}

// A panic's stack is kept with the attempt, not in the task's error.
func TestAttemptKeepsAPanicsStack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, err := b.client.NewRunner(b.ctx, b.cluster, &Panicker{})
	require.NoError(t, err)
	j := b.submit(t, &Panicker{})
	require.NoError(t, r.RunAll(b.ctx))
	task, err := b.client.Jobs().Task(b.ctx, j.ID, 0)
	require.NoError(t, err)
	require.Equal(t, "task panicked: kaboom", task.Error)
	as, err := b.client.Jobs().Attempts(b.ctx, j.ID, 0)
	require.NoError(t, err)
	require.Len(t, as, 1)
	require.Equal(t, workflows.AttemptFailed, as[0].Outcome)
	require.Contains(t, as[0].Stack, "goroutine ")
	require.Contains(t, as[0].Stack, "Panicker", "the stack reaches the task's code")

	_, err = b.client.Jobs().Task(b.ctx, j.ID, 5)
	require.ErrorIs(t, err, workflows.ErrTaskNotFound)
}

// A release worker's panic keeps its stack across the worker protocol; a
// crashed worker's attempt is lost; the attempts name the release.
func TestAttemptsOfARemoteRunner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tasks := []workflows.Task{&Panicker{}, &benchtask.Noop{}}
	exec := &hostExec{h: pipeWorker(t, tasks...)}
	r := remoteRunner(t, b, tasks, exec)
	p := b.submit(t, &Panicker{})
	require.NoError(t, r.RunAll(b.ctx))
	as, err := b.client.Jobs().Attempts(b.ctx, p.ID, 0)
	require.NoError(t, err)
	require.Len(t, as, 1)
	require.Equal(t, "task panicked: kaboom", as[0].Error)
	require.Contains(t, as[0].Stack, "Panicker")
	require.Equal(t, "rel-test", as[0].Context.Release)

	exec.crashes.Store(1)
	n := b.submit(t, &benchtask.Noop{})
	require.NoError(t, r.RunAll(b.ctx))
	as, err = b.client.Jobs().Attempts(b.ctx, n.ID, 0)
	require.NoError(t, err)
	require.Len(t, as, 2)
	require.Equal(t, workflows.AttemptLost, as[0].Outcome)
	require.Contains(t, as[0].Error, "worker process lost")
	require.Equal(t, workflows.AttemptComputed, as[1].Outcome)
}

// A runner that stops before its task ends hands the task back: that
// attempt's outcome says so, and it is in the archive.
func TestHandedBackAttemptIsKeptAndArchived(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := t.Name()
	r := b.runner(t, b.cluster)
	j := b.submit(t, &Step{Key: key, Label: "waits", WaitFor: "go"})
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r.RunForever(ctx, workflows.WithGracePeriod(20*time.Millisecond)) }()
	require.Eventually(t, func() bool { return b.rec.count("waits") == 1 }, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	b.rec.note("go")
	require.NoError(t, b.runner(t, b.cluster).RunAll(b.ctx))
	as, err := b.client.Jobs().Attempts(b.ctx, j.ID, 0)
	require.NoError(t, err)
	require.Len(t, as, 2)
	require.Equal(t, workflows.AttemptHandedBack, as[0].Outcome)
	require.Equal(t, workflows.AttemptComputed, as[1].Outcome)
	require.NotEqual(t, as[0].Runner, as[1].Runner)

	store, url := fileArchive(t)
	n, err := b.client.ArchiveJobs(b.ctx, store, url, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	archived, err := b.client.Jobs().Attempts(b.ctx, j.ID, 0)
	require.NoError(t, err)
	require.Equal(t, len(as), len(archived))
	for i := range as {
		require.Equal(t, as[i].Outcome, archived[i].Outcome)
		require.Equal(t, as[i].Runner, archived[i].Runner)
		require.Equal(t, as[i].Context, archived[i].Context)
		require.True(t, as[i].Finished.Equal(archived[i].Finished))
	}
}

// Once a job is seen finished, its tasks' log records are stored: the
// runner writes waiting records before it commits the results.
func TestLogsAreStoredBeforeTheJobFinishes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, err := b.client.NewRunner(b.ctx, b.cluster, benchtask.All()...)
	require.NoError(t, err)
	ctx, stop := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r.RunForever(ctx) }()
	defer func() { stop(); <-done }()
	for i := range 5 {
		j := b.submit(t, &benchtask.FanOut{N: 3, Child: "Log"})
		j, err = b.client.Jobs().Wait(b.ctx, j.ID, time.Millisecond, nil)
		require.NoError(t, err)
		require.Equal(t, workflows.JobCompleted, j.State)
		recs, err := b.client.Jobs().Logs(b.ctx, j.ID, queue.LogQuery{Task: -1})
		require.NoError(t, err)
		require.Len(t, recs, 3, "job %d: every record is stored when the job completes", i)
	}
}
