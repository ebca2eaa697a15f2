package workflows_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"

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
// runner and Redis, so by default it runs in Linux's SCHED_IDLE class, the
// lowest priority there is: it decodes everything, almost only in CPU time
// the runner and Redis leave idle, closer to a collector on a machine of
// its own. RUNFLEET_BENCH_COLLECTOR_SCHED=normal runs it as an ordinary
// process taking turns with them (RUNFLEET_BENCH_COLLECTOR_NICE=19 then
// lowers its priority).
//
// A traced burn-down's last spans (fewer than a request's worth) wait in
// the queue when its job ends and are exported early in the next traced
// one, as in steady work they would overlap the next tasks. The queue is
// held to two requests' worth (execSpanQueueBench) rather than the
// default four, so that a collector that falls behind, starved of CPU,
// makes the runner drop spans; the benchmark fails on a dropped span or a
// failed export, so such a collector cannot pass for a cheap one.
func BenchmarkObservabilityOverhead(b *testing.B) {
	for _, child := range []string{"noop", "log1"} {
		for _, conc := range []int{8, 256} {
			b.Run("child="+child+"/concurrency="+strconv.Itoa(conc), func(b *testing.B) {
				benchObservability(b, child, conc)
			})
		}
	}
}

// execSpanQueueBench is the execution span queue of the traced side: two
// requests' worth of the default 4,096 spans.
const execSpanQueueBench = 8192

func benchObservability(b *testing.B, child string, conc int) {
	const n = 20_000
	r := testenv.NewRedis(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	quiet := workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var colOpts []testenv.OTLPReceiverOption
	sched, nice := os.Getenv("RUNFLEET_BENCH_COLLECTOR_SCHED"), os.Getenv("RUNFLEET_BENCH_COLLECTOR_NICE")
	switch sched {
	case "", "idle":
		sched = "idle"
		if nice != "" {
			b.Fatalf("RUNFLEET_BENCH_COLLECTOR_NICE=%s applies with RUNFLEET_BENCH_COLLECTOR_SCHED=normal only", nice)
		}
		if _, err := exec.LookPath("chrt"); err != nil {
			b.Fatalf("the collector runs under chrt --idle 0 (util-linux), which is missing: %v; "+
				"RUNFLEET_BENCH_COLLECTOR_SCHED=normal runs it without", err)
		}
		colOpts = append(colOpts, testenv.WithIdleScheduling())
	case "normal":
		if nice != "" {
			n, err := strconv.Atoi(nice)
			if err != nil || n < 1 || n > 19 {
				b.Fatalf("RUNFLEET_BENCH_COLLECTOR_NICE=%q: want a nice level from 1 to 19", nice)
			}
			colOpts = append(colOpts, testenv.WithNice(n))
		}
	default:
		b.Fatalf("RUNFLEET_BENCH_COLLECTOR_SCHED=%q: want idle (the default) or normal", sched)
	}
	col := testenv.NewDiscardingOTLPReceiver(b, colOpts...)
	// Exports that fail in the background reach OpenTelemetry's error
	// handler, not the dropped count.
	var exportErrs atomic.Int64
	var lastExportErr atomic.Value
	prevHandler := otel.GetErrorHandler()
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		exportErrs.Add(1)
		lastExportErr.Store(err.Error())
	}))
	b.Cleanup(func() { otel.SetErrorHandler(prevHandler) })

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
	b.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", strconv.Itoa(execSpanQueueBench))
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
	require.NoError(b, workflows.FlushExecSpans(ctx, on))
	if d := workflows.ExecSpansDropped(on); d > 0 {
		b.Fatalf("the runner dropped %d execution spans (queue of %d, collector scheduled %s): the collector fell behind",
			d, execSpanQueueBench, sched)
	}
	if n := exportErrs.Load(); n > 0 {
		b.Fatalf("%d exports or other OpenTelemetry operations failed; the last: %v", n, lastExportErr.Load())
	}
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
