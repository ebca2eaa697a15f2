package workflows_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// BenchmarkObservabilityOverhead is the issue-11 bar: a burn-down (one job
// of 20,000 subtasks, one runner) with stored task logs, tracing exported to
// a real OpenTelemetry Collector and Prometheus metrics all on, against the
// same burn-down with all three off, on one redis-server. Each iteration runs
// one pair, the order alternating, so both sides see the same machine; the
// figures are tasks/s of each side and on/off, their ratio. Child "noop"
// tasks log nothing; child "log1" tasks write one INFO record each, which
// is then stored (and exported over OTLP). Besides the rates it reports
// the CPU each side costs per task in this process (runner and client),
// in redis-server and in the collector, to say where a difference lands.
//
// The collector decodes every span and log record it receives and drops
// them (testenv.NewDiscardingOTLPReceiver): in production it runs
// elsewhere, and on this machine's cores writing JSON would cost more than
// the runner it measures. It still shares this machine's cores with the
// runner and Redis, so by default it runs in the SCHED_IDLE class: it
// decodes everything, but only in CPU time the runner and Redis leave
// idle, as a collector on a machine of its own would take none of theirs.
// RUNFLEET_BENCH_COLLECTOR_SCHED=normal runs it as an ordinary process
// taking turns with them (RUNFLEET_BENCH_COLLECTOR_NICE=19 then lowers
// its priority). Either way, after each "on" burn-down its spans are
// flushed to the collector before the next burn-down starts, outside the
// timed part but inside the CPU counted, and the benchmark fails if the
// runner dropped a span: a collector starved of CPU cannot pass for a
// cheap one.
func BenchmarkObservabilityOverhead(b *testing.B) {
	for _, child := range []string{"noop", "log1"} {
		for _, conc := range []int{8, 256} {
			b.Run("child="+child+"/concurrency="+strconv.Itoa(conc), func(b *testing.B) {
				benchObservability(b, child, conc)
			})
		}
	}
}

func benchObservability(b *testing.B, child string, conc int) {
	const n = 20_000
	r := testenv.NewRedis(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	quiet := workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var colOpts []testenv.OTLPReceiverOption
	switch sched := os.Getenv("RUNFLEET_BENCH_COLLECTOR_SCHED"); sched {
	case "", "idle":
		colOpts = append(colOpts, testenv.WithIdleScheduling())
	case "normal":
		if n, err := strconv.Atoi(os.Getenv("RUNFLEET_BENCH_COLLECTOR_NICE")); err == nil && n > 0 {
			colOpts = append(colOpts, testenv.WithNice(n))
		}
	default:
		b.Fatalf("RUNFLEET_BENCH_COLLECTOR_SCHED=%q: want idle (the default) or normal", sched)
	}
	col := testenv.NewDiscardingOTLPReceiver(b, colOpts...)

	// Each side's client and runs carry a profiler label (side=on|off), so
	// a CPU profile of this benchmark (-cpuprofile, then pprof -tagfocus)
	// tells the two apart; goroutines inherit the label of the one that
	// starts them, the exporters' among them.
	labelled := func(side string) {
		pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("side", side)))
	}
	defer pprof.SetGoroutineLabels(ctx)
	labelled("off")
	off, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()), quiet)
	require.NoError(b, err)
	b.Cleanup(func() { _ = off.Close() })
	_, err = off.Clusters().Create(ctx, "bench", "")
	require.NoError(b, err)

	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.Endpoint())
	labelled("on")
	on, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()), quiet)
	require.NoError(b, err)
	b.Cleanup(func() { _ = on.Close() })

	labelled("off")
	offRunner, err := off.NewRunner(ctx, "bench", benchtask.All()...)
	require.NoError(b, err)
	labelled("on")
	onRunner, err := on.NewRunner(ctx, "bench", benchtask.All()...)
	require.NoError(b, err)
	base := []workflows.RunOption{workflows.WithConcurrency(conc), workflows.WithIdleWait(time.Millisecond)}
	offOpts := append(base, workflows.WithTaskLogs(workflows.TaskLogs{Off: true}))
	onOpts := append(base[:len(base):len(base)], workflows.WithMetrics(workflows.NewMetrics()))

	fan := &benchtask.FanOut{N: n, Child: "Noop"}
	if child == "log1" {
		fan = &benchtask.FanOut{N: n, Child: "Log", ChildInput: json.RawMessage(`{"message":"tile done","attrs":{"tile":"x12y7"}}`)}
	}
	// CPU each side costs per task, by process: this one (runner, client
	// and exporters), redis-server and the collector.
	type cost struct{ wall, self, redis, col time.Duration }
	cpuNow := func() (c cost) {
		var ru syscall.Rusage
		require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
		c.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		var err error
		c.redis, err = r.CPUTime()
		require.NoError(b, err)
		c.col, err = col.CPUTime()
		require.NoError(b, err)
		return c
	}
	burn := func(c *workflows.Client, run *workflows.Runner, opts []workflows.RunOption, total *cost) {
		if c == on {
			labelled("on")
		} else {
			labelled("off")
		}
		before := cpuNow()
		start := time.Now()
		j, err := c.Jobs().Submit(ctx, "burn", "bench", fan)
		require.NoError(b, err)
		require.NoError(b, run.RunAll(ctx, opts...))
		j, err = c.Jobs().Get(ctx, j.ID)
		require.NoError(b, err)
		require.Equal(b, int64(n+1), j.TaskCounts[workflows.TaskComputed])
		// Timed up to the job's end; the spans still queued then cost
		// their CPU here, not in the next burn-down.
		require.NoError(b, workflows.FlushExecSpans(ctx, c))
		after := cpuNow()
		total.wall += j.FinishedAt.Sub(start)
		total.self += after.self - before.self
		total.redis += after.redis - before.redis
		total.col += after.col - before.col
	}
	var offTotal, onTotal cost
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			burn(off, offRunner, offOpts, &offTotal)
			burn(on, onRunner, onOpts, &onTotal)
		} else {
			burn(on, onRunner, onOpts, &onTotal)
			burn(off, offRunner, offOpts, &offTotal)
		}
		i++
	}
	require.Zero(b, workflows.ExecSpansDropped(on), "execution spans dropped: the collector fell behind")
	tasks := float64(i * (n + 1))
	perTask := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / tasks }
	b.ReportMetric(tasks/offTotal.wall.Seconds(), "off-tasks/s")
	b.ReportMetric(tasks/onTotal.wall.Seconds(), "on-tasks/s")
	b.ReportMetric(offTotal.wall.Seconds()/onTotal.wall.Seconds(), "on/off")
	b.ReportMetric(perTask(offTotal.self), "off-runner-µs/task")
	b.ReportMetric(perTask(onTotal.self), "on-runner-µs/task")
	b.ReportMetric(perTask(offTotal.redis), "off-redis-µs/task")
	b.ReportMetric(perTask(onTotal.redis), "on-redis-µs/task")
	b.ReportMetric(perTask(onTotal.col), "collector-µs/task")
	b.ReportMetric(0, "ns/op")
}
