package workflows_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
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
// is then stored (and exported over OTLP).
//
// The collector decodes every span and log record it receives and drops
// them (testenv.NewDiscardingOTLPReceiver): in production it runs
// elsewhere, and on this machine's cores writing JSON would cost more than
// the runner it measures.
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

	off, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()), quiet)
	require.NoError(b, err)
	b.Cleanup(func() { _ = off.Close() })
	_, err = off.Clusters().Create(ctx, "bench", "")
	require.NoError(b, err)

	col := testenv.NewDiscardingOTLPReceiver(b)
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.Endpoint())
	on, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()), quiet)
	require.NoError(b, err)
	b.Cleanup(func() { _ = on.Close() })

	offRunner, err := off.NewRunner(ctx, "bench", benchtask.All()...)
	require.NoError(b, err)
	onRunner, err := on.NewRunner(ctx, "bench", benchtask.All()...)
	require.NoError(b, err)
	base := []workflows.RunOption{workflows.WithConcurrency(conc), workflows.WithIdleWait(time.Millisecond)}
	offOpts := append(base, workflows.WithTaskLogs(workflows.TaskLogs{Off: true}))
	onOpts := append(base[:len(base):len(base)], workflows.WithMetrics(workflows.NewMetrics()))

	fan := &benchtask.FanOut{N: n, Child: "Noop"}
	if child == "log1" {
		fan = &benchtask.FanOut{N: n, Child: "Log", ChildInput: json.RawMessage(`{"message":"tile done","attrs":{"tile":"x12y7"}}`)}
	}
	burn := func(c *workflows.Client, r *workflows.Runner, opts []workflows.RunOption) time.Duration {
		start := time.Now()
		j, err := c.Jobs().Submit(ctx, "burn", "bench", fan)
		require.NoError(b, err)
		require.NoError(b, r.RunAll(ctx, opts...))
		j, err = c.Jobs().Get(ctx, j.ID)
		require.NoError(b, err)
		require.Equal(b, int64(n+1), j.TaskCounts[workflows.TaskComputed])
		return j.FinishedAt.Sub(start)
	}
	var offTotal, onTotal time.Duration
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			offTotal += burn(off, offRunner, offOpts)
			onTotal += burn(on, onRunner, onOpts)
		} else {
			onTotal += burn(on, onRunner, onOpts)
			offTotal += burn(off, offRunner, offOpts)
		}
		i++
	}
	tasks := float64(i * (n + 1))
	b.ReportMetric(tasks/offTotal.Seconds(), "off-tasks/s")
	b.ReportMetric(tasks/onTotal.Seconds(), "on-tasks/s")
	b.ReportMetric(offTotal.Seconds()/onTotal.Seconds(), "on/off")
	b.ReportMetric(0, "ns/op")
}
