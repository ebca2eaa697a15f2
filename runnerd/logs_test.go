package runnerd_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/runnerd"
	"github.com/runfleet/runfleet/workflows"
)

// logsOf waits until a job has want stored log records (runners store
// them within about 100 ms, maybe after the job finished).
func (f *fixture) logsOf(t *testing.T, id string, want int) []workflows.LogRecord {
	t.Helper()
	var recs []workflows.LogRecord
	require.Eventually(t, func() bool {
		var err error
		recs, err = f.client.Jobs().Logs(f.ctx, id, workflows.LogQuery{Task: -1})
		require.NoError(t, err)
		return len(recs) >= want
	}, 20*time.Second, 20*time.Millisecond)
	require.Len(t, recs, want)
	return recs
}

// A task of a release worker process logs through workflows.Logger: its
// records reach the release runner over the worker protocol (not the
// worker's stderr) and are stored with the job under the runner's
// identity, within the runner's caps; a record of 1 MiB is cut, not
// refused.
func TestReleaseWorkerLogsAreStored(t *testing.T) {
	f := newFixture(t)
	rel := f.publish(t, "a", nil)
	f.deploy(t, rel)
	d := f.start(t, func(c *runnerd.Config) {
		c.RunOptions = append(c.RunOptions, workflows.WithTaskLogs(workflows.TaskLogs{PerTask: 64 << 10}))
	})
	st := waitStatus(t, d, "release a running", onlyRunning(rel.ID))

	j := f.submit(t, &benchtask.Log{Lines: 2, Message: "from the worker", Attrs: map[string]any{"k": "v"}})
	require.Equal(t, workflows.JobCompleted, f.wait(t, j.ID).State)
	recs := f.logsOf(t, j.ID, 2)
	for i, r := range recs {
		require.Equal(t, fmt.Sprintf("from the worker %d", i), r.Message)
		require.Equal(t, "INFO", r.Level)
		require.Equal(t, int64(0), r.TaskID)
		require.Equal(t, "Log", r.Task)
		require.Equal(t, 1, r.Attempt)
		require.Contains(t, r.Runner, fmt.Sprintf("-%d-", os.Getpid()), "the release runner's id, not the worker's")
		require.NotContains(t, r.Runner, fmt.Sprintf("-%d-", st[0].PID))
		require.Equal(t, map[string]any{"k": "v", "i": float64(i)}, r.Attrs)
	}
	require.NotContains(t, f.logs.String(), "from the worker", "records travel over the protocol, not stderr")

	capped := f.submit(t, &benchtask.Log{Lines: 1000, Bytes: 100})
	huge := f.submit(t, &benchtask.Log{Bytes: 1 << 20, AttrBytes: 1 << 20})
	require.Equal(t, workflows.JobCompleted, f.wait(t, capped.ID).State)
	require.Equal(t, workflows.JobCompleted, f.wait(t, huge.ID).State)

	var recsCapped []workflows.LogRecord
	require.Eventually(t, func() bool {
		var err error
		recsCapped, err = f.client.Jobs().Logs(f.ctx, capped.ID, workflows.LogQuery{Task: -1})
		require.NoError(t, err)
		return len(recsCapped) > 0 && recsCapped[len(recsCapped)-1].Truncated
	}, 20*time.Second, 20*time.Millisecond)
	require.Less(t, len(recsCapped), 1000)
	require.Contains(t, recsCapped[len(recsCapped)-1].Message, "cap of 65536 bytes per execution")

	big := f.logsOf(t, huge.ID, 1)[0]
	require.True(t, big.Truncated)
	require.LessOrEqual(t, len(big.Message), 16<<10)
	require.True(t, strings.HasSuffix(big.Message, " bytes]"), big.Message[len(big.Message)-40:])
	require.Less(t, len(big.Attrs["blob"].(string)), 2<<10)
}
