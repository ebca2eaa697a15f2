package cli

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/queue"
)

func TestSweepRequeuesTheTasksOfADeadRunner(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.register("dev")

	sweep := func() map[string]int {
		r := f.ok("sweep", "--json")
		var rep map[string]int
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), r.stdout)
		return rep
	}
	require.Equal(t, map[string]int{"dead_runners": 0, "requeued": 0, "failed": 0, "republished": 0}, sweep())

	// A runner takes the task and dies: its heartbeat is gone.
	id := f.submit("dev", "Sleep", `{"ms": 60000}`)
	ctx := context.Background()
	opts, err := redis.ParseURL(f.url)
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	q, err := queue.New(ctx, rdb)
	require.NoError(t, err)
	sleep, err := queue.ParseIdentifier("Sleep", benchtask.Version)
	require.NoError(t, err)
	stream := queue.StreamKey("dev", sleep)
	require.NoError(t, q.Heartbeat(ctx, "dev", queue.RunnerInfo{ID: "gone", Streams: []string{stream}}, time.Minute, true))
	hints, err := q.Read(ctx, "gone", []string{stream}, 10, -1)
	require.NoError(t, err)
	held, err := q.Claim(ctx, "gone", hints)
	require.NoError(t, err)
	require.Len(t, held, 1)
	require.NoError(t, q.Stopped(ctx, "dev", "gone"))

	require.Equal(t, map[string]int{"dead_runners": 1, "requeued": 1, "failed": 0, "republished": 0}, sweep())
	counts := f.job(id)["task_counts"].(map[string]any)
	require.Equal(t, float64(1), counts["queued"])
	require.Equal(t, float64(0), counts["running"])
	require.Contains(t, f.ok("sweep").stdout, "swept: 0 dead runners")
}
