package workflows_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// TestRunsOnRedisCluster runs jobs with fan-out, dependencies, a failure and
// a retry on a three-master Redis Cluster: any step that touched keys of
// two slots would fail with CROSSSLOT.
func TestRunsOnRedisCluster(t *testing.T) {
	t.Parallel()
	rc := testenv.NewRedisCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs()})
	defer rdb.Close()
	c, err := workflows.NewClient(ctx, workflows.WithRedisClient(rdb),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	for _, slug := range []string{"main", "gpu", "edge"} {
		_, err = c.Clusters().Create(ctx, slug, "")
		require.NoError(t, err)
	}
	rec := newRecorder(t)
	main, err := c.NewRunner(ctx, "main", append(testTasks(), benchtask.All()...)...)
	require.NoError(t, err)
	gpu, err := c.NewRunner(ctx, "gpu", append(testTasks(), benchtask.All()...)...)
	require.NoError(t, err)

	// Many jobs spread over the slots of all three masters.
	var ids []string
	for range 6 {
		j, err := c.Jobs().Submit(ctx, "fan", "main", &benchtask.FanOut{N: 300, Child: "Noop", Merge: true})
		require.NoError(t, err)
		ids = append(ids, j.ID)
	}
	s := Step{Key: t.Name(), Label: "root", Children: []StepChild{
		{Step: Step{Key: t.Name(), Label: "on-gpu"}, Cluster: "gpu"},
		{Step: Step{Key: t.Name(), Label: "after"}, Deps: []int{0}},
		{Step: Step{Key: t.Name(), Label: "flaky", FailAttempts: 1}, Deps: []int{1}},
	}}
	cross, err := c.Jobs().Submit(ctx, "cross", "main", &s)
	require.NoError(t, err)

	gctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- gpu.RunForever(gctx) }()
	require.Eventually(t, func() bool {
		require.NoError(t, main.RunAll(ctx, workflows.WithConcurrency(32)))
		j, err := c.Jobs().Get(ctx, cross.ID)
		require.NoError(t, err)
		return workflows.Finished(j.State)
	}, 30*time.Second, 10*time.Millisecond)
	stop()
	require.NoError(t, <-done)

	for _, id := range ids {
		j, err := c.Jobs().Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, workflows.JobCompleted, j.State)
		require.Equal(t, int64(302), j.TaskCounts[workflows.TaskComputed])
	}
	// "flaky" fails its first attempt with no retries: the job fails; a
	// retry completes it without re-running the rest.
	j, err := c.Jobs().Get(ctx, cross.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobFailed, j.State)
	require.NoError(t, c.Jobs().Retry(ctx, cross.ID))
	require.NoError(t, main.RunAll(ctx))
	j, err = c.Jobs().Get(ctx, cross.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobCompleted, j.State)
	require.Equal(t, 1, rec.count("root"))
	require.Equal(t, 1, rec.count("on-gpu"))
	require.Equal(t, 2, rec.count("flaky"))
	rec.requireBefore(t, "end on-gpu", "start after")

	list, err := c.Jobs().List(ctx, workflows.ListOptions{})
	require.NoError(t, err)
	require.Len(t, list, 7)
}
