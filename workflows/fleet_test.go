package workflows_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/workflows"
)

// A task that runs far longer than the heartbeat TTL on a live runner stays
// with that runner, even with another runner reclaiming eagerly beside it.
func TestLongTaskOnALiveRunnerIsNotReclaimed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	slow, other := b.runner(t, b.cluster), b.runner(t, b.cluster)
	j := b.submit(t, &benchtask.Sleep{MS: 2500})
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	opts := []workflows.RunOption{workflows.WithHeartbeatTTL(500 * time.Millisecond),
		workflows.WithReclaimInterval(50 * time.Millisecond)}
	var wg sync.WaitGroup
	for _, r := range []*workflows.Runner{slow, other} {
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, r.RunForever(ctx, opts...)) }()
	}
	done, err := b.client.Jobs().Wait(b.ctx, j.ID, 20*time.Millisecond, nil)
	require.NoError(t, err)
	cancel()
	wg.Wait()
	require.Equal(t, workflows.JobCompleted, done.State)
	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, 1, ts[0].Attempts, "the task ran once")
}

func TestGracefulStopHandsBackWhatDidNotFinish(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	j := b.submit(t, &benchtask.Sleep{MS: 60_000}) // honours its context
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r.RunForever(ctx, workflows.WithGracePeriod(100*time.Millisecond)) }()
	require.Eventually(t, func() bool { return b.job(t, j.ID).TaskCounts[workflows.TaskRunning] == 1 },
		10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.TaskQueued, ts[0].State)
	require.Equal(t, 0, ts[0].Failures, "a hand-back is not a failed attempt")
	require.Contains(t, ts[0].Error, "interrupted")

	// Another runner picks it up again at once, as attempt 2.
	next := b.runner(t, b.cluster)
	ctx2, cancel2 := context.WithCancel(b.ctx)
	done2 := make(chan error, 1)
	go func() { done2 <- next.RunForever(ctx2, workflows.WithGracePeriod(0)) }()
	require.Eventually(t, func() bool {
		ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
		require.NoError(t, err)
		return ts[0].Attempts == 2 && ts[0].State == workflows.TaskRunning
	}, 10*time.Second, 5*time.Millisecond)
	cancel2()
	require.NoError(t, <-done2)
}

// Stubborn ignores its context: it returns only when released.
type Stubborn struct {
	Key string `json:"key"`
}

var stubbornRelease sync.Map // key -> chan struct{}

func (s *Stubborn) Execute(context.Context) error {
	ch, _ := stubbornRelease.LoadOrStore(s.Key, make(chan struct{}))
	recorderFor(s.Key).start("stubborn")
	<-ch.(chan struct{})
	return nil
}

func TestStopNowHandsBackATaskThatIgnoresCancellation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, err := b.client.NewRunner(b.ctx, b.cluster, &Stubborn{})
	require.NoError(t, err)
	ch := make(chan struct{})
	stubbornRelease.Store(t.Name(), ch)
	defer close(ch)
	j := b.submit(t, &Stubborn{Key: t.Name()})
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r.RunForever(ctx, workflows.WithGracePeriod(time.Hour)) }()
	require.Eventually(t, func() bool { return b.rec.count("stubborn") == 1 }, 10*time.Second, 5*time.Millisecond)
	cancel()    // first signal: the grace period starts
	r.StopNow() // second signal: no more waiting
	require.NoError(t, <-done)

	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.TaskQueued, ts[0].State)
	require.Equal(t, 0, ts[0].Failures)
}

func TestOneRunAtATimePerRunner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	j := b.submit(t, &benchtask.Sleep{MS: 60_000})
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r.RunForever(ctx, workflows.WithGracePeriod(0)) }()
	require.Eventually(t, func() bool { return b.job(t, j.ID).TaskCounts[workflows.TaskRunning] == 1 },
		10*time.Second, 5*time.Millisecond)
	err := r.RunAll(b.ctx)
	require.ErrorContains(t, err, "runner is already running")
	cancel()
	require.NoError(t, <-done)
	require.NoError(t, b.client.Jobs().Cancel(b.ctx, j.ID))
	require.NoError(t, r.RunAll(b.ctx), "a finished run frees the runner")
}
