package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
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
		r := f.ok("sweep", "--no-archive", "--json")
		var rep map[string]int
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), r.stdout)
		return rep
	}
	counts := func(dead, requeued int) map[string]int {
		return map[string]int{"dead_runners": dead, "requeued": requeued, "failed": 0, "republished": 0,
			"stages_dropped": 0, "archived": 0, "notified": 0, "notify_failed": 0}
	}
	require.Equal(t, counts(0, 0), sweep())

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

	require.Equal(t, counts(1, 1), sweep())
	tasks := f.job(id)["task_counts"].(map[string]any)
	require.Equal(t, float64(1), tasks["queued"])
	require.Equal(t, float64(0), tasks["running"])
	require.Contains(t, f.ok("sweep", "--no-archive").stdout, "swept: 0 dead runners")
}

func TestSweepArchivesOldJobsThatJobGetStillFinds(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	id := f.submit("dev", "Noop", `{}`)
	f.ok("job", "wait", id, "--interval", "20ms", "--timeout", "30s")
	dir := t.TempDir()
	store := "file://" + dir
	// The job finished a few milliseconds ago: past a 1ms retention.
	time.Sleep(5 * time.Millisecond)

	r := f.ok("sweep", "--store", store, "--retention", "1ms", "--json")
	var rep map[string]int
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), r.stdout)
	require.Equal(t, 1, rep["archived"])
	require.FileExists(t, filepath.Join(dir, "jobs", id+".json.zst"))

	job := f.job(id)
	require.Equal(t, true, job["archived"])
	require.Equal(t, "completed", job["state"])
	require.Contains(t, f.ok("job", "tasks", id).stdout, "Noop")
	require.Zero(t, f.jobCount(), "archived jobs leave the listing")
	retry := f.run("job", "retry", id)
	require.Equal(t, ExitFailure, retry.code)
	require.Contains(t, retry.stderr, "archived")

	again := f.ok("sweep", "--store", store, "--retention", "1ms")
	require.Contains(t, again.stdout, "0 jobs finished over 1ms ago archived to "+store)
}

func TestSweepMetricsPrintsOneEMFLinePerClusterOnStdout(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.cluster("prod")
	f.register("dev")
	f.submit("dev", "Noop", `{}`)

	r := f.ok("sweep", "--no-archive", "--metrics")
	require.Contains(t, r.stderr, "swept: 0 dead runners", "the summary moves to stderr")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2)
	ready := map[string]float64{}
	for _, l := range lines {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		require.Contains(t, m, "_aws")
		ready[m["Cluster"].(string)] = m["ReadyTasks"].(float64)
	}
	require.Equal(t, map[string]float64{"dev": 1, "prod": 0}, ready)
}

func TestSweepRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--retention", "0"},
		{"--retention", "-1d"},
		{"--retention", "7days"},
		{"--retention", "d"},
		{"--no-archive", "--store", "file:///tmp/x"},
	} {
		r := runCLI(t, "", append([]string{"--redis", "redis://127.0.0.1:1/0", "sweep"}, args...)...)
		require.Equal(t, ExitUsage, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, "--", args)
	}
}
