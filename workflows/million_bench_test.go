package workflows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/jobgraph"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// bigJob is one run of a job of many Noop subtasks on a fresh redis-server:
// submitted by one task (parents 1) or by parents tasks of n/parents each.
type bigJob struct {
	n, parents int
	// Measured.
	commit      time.Duration // from the root's start until every subtask is queued
	burn        time.Duration // from then until the job completed
	usedBefore  int64         // used_memory before the job
	usedQueued  int64         // once every subtask is queued
	usedDone    int64         // once the job completed
	peak        int64         // used_memory_peak of the server
	slowestMS   float64       // the slowest Redis command of the run
	firstPage   time.Duration // job tasks --limit 100
	failedPage  time.Duration // job tasks --state failed --limit 100
	graphFields time.Duration // every task's graph fields (GraphTasks)
	graph       time.Duration // the graph drawn as the console and CLI do (GraphSummary)
	jobID       string
}

func usedMemory(tb testing.TB, ctx context.Context, rdb *redis.Client, field string) int64 {
	tb.Helper()
	info, err := rdb.InfoMap(ctx, "memory").Result()
	require.NoError(tb, err)
	n, err := strconv.ParseInt(info["Memory"][field], 10, 64)
	require.NoError(tb, err)
	return n
}

// runBigJob runs j on a redis-server of its own through one runner process
// at concurrency 1024.
func runBigJob(tb testing.TB, j *bigJob) {
	tb.Helper()
	r := testenv.NewRedis(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	c, err := workflows.NewClient(ctx, workflows.WithRedisClient(rdb),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(tb, err)
	defer c.Close()
	_, err = c.Clusters().Create(ctx, "bench", "")
	require.NoError(tb, err)
	fanOut, err := c.NewRunner(ctx, "bench", &benchtask.FanOut{})
	require.NoError(tb, err)
	noop, err := c.NewRunner(ctx, "bench", &benchtask.Noop{})
	require.NoError(tb, err)
	require.NoError(tb, rdb.ConfigSet(ctx, "slowlog-log-slower-than", "1000").Err())
	require.NoError(tb, rdb.Do(ctx, "SLOWLOG", "RESET").Err())

	root := &benchtask.FanOut{N: j.n, Child: "Noop"}
	if j.parents > 1 {
		child, err := json.Marshal(benchtask.FanOut{N: j.n / j.parents, Child: "Noop"})
		require.NoError(tb, err)
		root = &benchtask.FanOut{N: j.parents, Child: "FanOut", ChildInput: child}
	}
	j.usedBefore = usedMemory(tb, ctx, rdb, "used_memory")
	start := time.Now()
	job, err := c.Jobs().Submit(ctx, "big", "bench", root)
	require.NoError(tb, err)
	j.jobID = job.ID
	// The FanOut runner submits every subtask (through every parent), the
	// Noop runner then burns them down.
	require.NoError(tb, fanOut.RunAll(ctx, workflows.WithConcurrency(64), workflows.WithIdleWait(10*time.Millisecond)))
	j.commit = time.Since(start)
	got, err := c.Jobs().Get(ctx, job.ID)
	require.NoError(tb, err)
	require.Equal(tb, int64(j.n), got.TaskCounts[workflows.TaskQueued], "every subtask queued")
	j.usedQueued = usedMemory(tb, ctx, rdb, "used_memory")
	start = time.Now()
	require.NoError(tb, noop.RunAll(ctx, workflows.WithConcurrency(1024), workflows.WithIdleWait(10*time.Millisecond)))
	got, err = c.Jobs().Get(ctx, job.ID)
	require.NoError(tb, err)
	require.Equal(tb, workflows.JobCompleted, got.State)
	j.burn = got.FinishedAt.Sub(start)
	j.usedDone = usedMemory(tb, ctx, rdb, "used_memory")
	j.peak = usedMemory(tb, ctx, rdb, "used_memory_peak")
	logs, err := rdb.SlowLogGet(ctx, -1).Result()
	require.NoError(tb, err)
	for _, l := range logs {
		j.slowestMS = max(j.slowestMS, float64(l.Duration.Microseconds())/1000)
	}

	// Inspecting the finished job: first pages and the graph's read.
	t0 := time.Now()
	page, next, err := c.Jobs().TasksPage(ctx, job.ID, -1, 100, "")
	j.firstPage = time.Since(t0)
	require.NoError(tb, err)
	require.Len(tb, page, 100)
	require.Equal(tb, int64(99), next)
	t0 = time.Now()
	failed, next, err := c.Jobs().TasksPage(ctx, job.ID, -1, 100, workflows.TaskFailed)
	j.failedPage = time.Since(t0)
	require.NoError(tb, err)
	require.Empty(tb, failed)
	require.Equal(tb, int64(-1), next)
	t0 = time.Now()
	graph, err := c.Queue().GraphTasks(ctx, job.ID)
	j.graphFields = time.Since(t0)
	require.NoError(tb, err)
	parents := 0
	if j.parents > 1 {
		parents = j.parents
	}
	require.Len(tb, graph, 1+parents+j.n)
	t0 = time.Now()
	listed, leaves, err := c.Queue().GraphSummary(ctx, job.ID)
	require.NoError(tb, err)
	g := jobgraph.Build(got, listed, jobgraph.Options{Leaves: leaves})
	named, err := c.Queue().Tasks(ctx, job.ID, g.NodeSeqs())
	require.NoError(tb, err)
	g.Label(named)
	var svg bytes.Buffer
	require.NoError(tb, g.WriteSVG(&svg))
	j.graph = time.Since(t0)
	require.Equal(tb, int64(1+parents+j.n), g.Tasks)
}

func (j *bigJob) perFinished() float64 { return float64(j.usedDone-j.usedBefore) / float64(j.n) }

func (j *bigJob) String() string {
	return fmt.Sprintf("%d tasks by %d parent(s): commit %.1f s, burn-down %.0f tasks/s, %.0f B/queued, %.0f B/finished task, peak %.0f MiB, slowest command %.1f ms; first page %.1f ms, failed page %.1f ms, graph fields of every task %.0f ms, graph drawn %.1f ms",
		j.n, j.parents, j.commit.Seconds(), float64(j.n)/j.burn.Seconds(),
		float64(j.usedQueued-j.usedBefore)/float64(j.n), j.perFinished(), float64(j.peak)/(1<<20), j.slowestMS,
		float64(j.firstPage.Microseconds())/1000, float64(j.failedPage.Microseconds())/1000,
		float64(j.graphFields.Microseconds())/1000, float64(j.graph.Microseconds())/1000)
}

// BenchmarkMillionTaskJob runs a job of RUNFLEET_BENCH_TASKS (default
// 1,000,000) Noop subtasks, submitted by one task and by 1,000 tasks, on a
// fresh redis-server each, and reports commit time, burn-down, memory per
// queued and finished task, peak memory, the slowest command and how long
// the first pages take on the finished job.
//
//	go test ./workflows -run '^$' -bench MillionTaskJob -benchtime 1x -timeout 60m -v
//	RUNFLEET_BENCH_TASKS=10000000 go test ./workflows -run '^$' -bench 'MillionTaskJob/parents=1000$' -benchtime 1x -timeout 60m -v
func BenchmarkMillionTaskJob(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("RUNFLEET_BENCH_TASKS"); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		require.NoError(b, err)
	}
	for _, parents := range []int{1, 1000} {
		b.Run(fmt.Sprintf("parents=%d", parents), func(b *testing.B) {
			var last bigJob
			for range b.N {
				last = bigJob{n: n, parents: parents}
				runBigJob(b, &last)
				b.Log(last.String())
			}
			b.ReportMetric(last.commit.Seconds(), "commit-s")
			b.ReportMetric(float64(n)/last.burn.Seconds(), "tasks/s")
			b.ReportMetric(last.perFinished(), "B/finished-task")
			b.ReportMetric(float64(last.peak)/(1<<20), "peak-MiB")
			b.ReportMetric(last.slowestMS, "slowest-ms")
			b.ReportMetric(float64(last.firstPage.Microseconds())/1000, "first-page-ms")
			b.ReportMetric(float64(last.graph.Microseconds())/1000, "graph-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestHundredThousandTaskJob is BenchmarkMillionTaskJob's job at 100,000
// tasks, for CI: it completes, its pages answer, and a finished task costs
// Redis at most 150 bytes (computed tasks leave their hashes for buckets).
func TestHundredThousandTaskJob(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 tasks: not in -short runs")
	}
	j := &bigJob{n: 100_000, parents: 100}
	runBigJob(t, j)
	t.Log(j.String())
	require.LessOrEqual(t, j.perFinished(), 150.0, "bytes of Redis memory per finished task")
}
