package workflows_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/queue"
)

// TestIdleRunnersStopTrimming: runners trim the entries a job's tasks left
// in their streams once those are acknowledged, then, idle, stop asking
// Redis about their streams (three commands per stream every second each,
// before).
func TestIdleRunnersStopTrimming(t *testing.T) {
	f := startFleet(t, 2, 4)
	ctx := context.Background()
	// Small stream nodes, so that approximate trimming shows.
	require.NoError(t, f.rdb.ConfigSet(ctx, "stream-node-max-entries", "8").Err())
	stream := queue.StreamKey("many", queue.Identifier{Name: "ShareTask", Major: 1, Minor: 0})

	_, _ = f.spread(t, ctx, 2000, 0)
	require.Eventually(t, func() bool {
		n, err := f.rdb.XLen(ctx, stream).Result()
		return err == nil && n <= 16
	}, 15*time.Second, 50*time.Millisecond, "the job's hints are trimmed from the stream")

	time.Sleep(1500 * time.Millisecond) // a trim under way when the job ended lands
	before := commandCalls(t, ctx, f.rdb)
	time.Sleep(3 * time.Second)
	after := commandCalls(t, ctx, f.rdb)
	for _, cmd := range []string{"xinfo|groups", "xpending", "xtrim"} {
		require.Equal(t, before[cmd].calls, after[cmd].calls, "idle runners sent %s", cmd)
	}
	require.Greater(t, after["xreadgroup"].calls, before["xreadgroup"].calls, "the runners are alive and reading")
}
