package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/gpu"
	"github.com/runfleet/runfleet/workflows"
)

// gpuRunner starts a direct runner of the bench tasks with GPUs spec until
// the test ends.
func (f *fixture) gpuRunner(cluster, spec string) *workflows.Runner {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := f.client().NewRunner(ctx, cluster, benchtask.All()...)
	require.NoError(f.t, err)
	done := make(chan error, 1)
	go func() { done <- r.RunForever(ctx, workflows.WithGPUs(spec), workflows.WithGracePeriod(0)) }()
	f.t.Cleanup(func() {
		cancel()
		require.NoError(f.t, <-done)
	})
	return r
}

func TestClusterRunnersListsLiveRunnersWithTheirGPUs(t *testing.T) {
	t.Setenv(gpu.CommandEnv, filepath.Join(t.TempDir(), "no-nvidia-smi")) // indexes as given
	f := newFixture(t)
	f.cluster("gpu")

	r := f.run("cluster", "runners", "gpu")
	require.Equal(t, ExitOK, r.code)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "no live runners in cluster gpu")
	require.Equal(t, "[]\n", f.ok("cluster", "runners", "gpu", "--json").stdout)

	runner := f.gpuRunner("gpu", "0,2")
	var rs []map[string]any
	require.Eventually(t, func() bool {
		require.NoError(t, json.Unmarshal([]byte(f.ok("cluster", "runners", "gpu", "--json").stdout), &rs))
		return len(rs) == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, runner.ID(), rs[0]["id"])
	require.NotEmpty(t, rs[0]["host"])
	require.NotEmpty(t, rs[0]["version"])
	require.EqualValues(t, 2, rs[0]["concurrency"], "concurrency defaults to the number of devices")
	require.Equal(t, []any{map[string]any{"index": 0.0}, map[string]any{"index": 2.0}}, rs[0]["devices"])
	require.NotEmpty(t, rs[0]["last_beat"])

	lines := strings.Split(strings.TrimSpace(f.ok("cluster", "runners", "gpu").stdout), "\n")
	require.Len(t, lines, 2)
	require.Regexp(t, `^ID\s+HOST\s+PID\s+VERSION\s+CONCURRENCY\s+GPUS\s+STARTED\s+LAST BEAT$`, lines[0])
	require.Regexp(t, `^`+runner.ID()+`\s+\S+\s+\d+\s+\S+\s+2\s+0,2\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+[\d.]+m?s ago$`, lines[1])

	r = f.run("cluster", "runners", "nope")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, `cluster not found: "nope"`)
}

func TestRunnerStartGPUs(t *testing.T) {
	t.Setenv(gpu.CommandEnv, filepath.Join(t.TempDir(), "no-nvidia-smi"))
	r := runCLI(t, "", "runner", "start", "--cluster", "dev", "--gpus", "0,x")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, `--gpus "0,x": "x" is not a device index`)
	r = runCLI(t, "", "runner", "start", "--cluster", "dev", "--gpus", "all")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, "--gpus all needs nvidia-smi to list the devices, and it is not installed")

	// Valid indexes start the release runner, which hands out those devices
	// and runs two tasks at once.
	f := newFixture(t)
	f.cluster("gpu")
	a, _, errOut := testApp("")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- a.run(ctx, []string{"--redis", f.url, "runner", "start", "--cluster", "gpu", "--gpus", "1,3",
			"--store", "file://" + t.TempDir(), "--cache-dir", t.TempDir()})
	}()
	require.Eventually(t, func() bool { return strings.Contains(errOut.String(), "release runner started") },
		20*time.Second, 20*time.Millisecond, errOut.String())
	cancel()
	require.Equal(t, ExitOK, <-done, errOut.String())
	require.Contains(t, errOut.String(), `gpus="1, 3" concurrency=2`)
}
