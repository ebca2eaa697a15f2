package runnerd_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/runnerd"
	"github.com/runfleet/runfleet/workflows"
)

// A release runner with GPUs names one device in every execute message; the
// worker's task sees it in CurrentTask and reports the CUDA_VISIBLE_DEVICES
// value it would give what it starts. The runners of the daemon share the
// devices and register them.
func TestWorkerTasksGetTheirDevice(t *testing.T) {
	f := newFixture(t)
	rel := f.publish(t, "a", nil)
	f.deploy(t, rel)
	devices := []workflows.Device{{Index: 0, UUID: "GPU-0c0ffee0-aaaa", Name: "Test GPU", MemoryMiB: 1024}, {Index: 1}}
	d := f.start(t, func(c *runnerd.Config) {
		c.Devices = devices
		c.Runners = 2
		c.RunOptions = []workflows.RunOption{workflows.WithGracePeriod(20 * time.Second),
			workflows.WithHeartbeatTTL(2 * time.Second), workflows.WithReclaimInterval(200 * time.Millisecond)}
	})
	waitStatus(t, d, "release a running", onlyRunning(rel.ID))

	// Runners register with their first heartbeat, just after they start.
	var rs []workflows.RunnerInfo
	require.Eventually(t, func() bool {
		var err error
		rs, err = f.client.Clusters().Runners(f.ctx, f.cluster)
		require.NoError(t, err)
		return len(rs) == 2
	}, 20*time.Second, 10*time.Millisecond, "one registry entry per runner")
	for _, r := range rs {
		require.Equal(t, devices, r.Devices)
		require.Equal(t, 2, r.Concurrency, "concurrency defaults to the number of devices")
	}

	j := f.submit(t, &benchtask.Probe{MS: 50, Children: 8, ChildMS: 50})
	require.Equal(t, workflows.JobCompleted, f.wait(t, j.ID).State)
	used := map[string][]workflows.TaskInfo{}
	for _, task := range f.tasks(t, j.ID) {
		_, cuda, ok := strings.Cut(task.Display, " cuda=")
		require.True(t, ok, "task %d reports a device: %q", task.Seq, task.Display)
		require.Contains(t, []string{"GPU-0c0ffee0-aaaa", "1"}, cuda, "task %d got exactly one of the runner's devices", task.Seq)
		require.Equal(t, 1, task.Attempts, "task %d", task.Seq)
		used[cuda] = append(used[cuda], task)
	}
	require.Len(t, used, 2, "both devices were handed out: %v", used)
	// A device stays with its task from the claim to the commit (the
	// task's start and end in Redis), so those spans of the tasks of one
	// device never overlap: no two executions shared it, and no task was
	// claimed to wait for it.
	for dev, tasks := range used {
		for i, a := range tasks {
			require.False(t, a.StartedAt.IsZero() || a.EndedAt.IsZero(), "task %d has start and end times", a.Seq)
			for _, b := range tasks[:i] {
				require.False(t, a.StartedAt.Before(b.EndedAt) && b.StartedAt.Before(a.EndedAt),
					"tasks %d (%v to %v) and %d (%v to %v) held device %s at once", a.Seq, a.StartedAt, a.EndedAt,
					b.Seq, b.StartedAt, b.EndedAt, dev)
			}
		}
	}
}

func TestDuplicateDevicesRefused(t *testing.T) {
	f := newFixture(t)
	_, err := runnerd.New(runnerd.Config{Client: f.client, Cluster: f.cluster, Store: f.store, CacheDir: f.cache,
		Devices: []workflows.Device{{Index: 2}, {Index: 2}}})
	require.EqualError(t, err, "runnerd: device pool: device 2 given twice")
}
