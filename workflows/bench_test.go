package workflows_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

func benchClient(b *testing.B) (*workflows.Client, *testenv.Redis, context.Context) {
	b.Helper()
	r := testenv.NewRedis(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(b, err)
	b.Cleanup(func() { _ = c.Close() })
	_, err = c.Clusters().Create(ctx, "bench", "")
	require.NoError(b, err)
	return c, r, ctx
}

// slowest returns the slowest command Redis logged since the last call, in
// milliseconds, and resets the log. Every command over 100µs is logged.
func slowest(b *testing.B, ctx context.Context, r *testenv.Redis) float64 {
	b.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	logs, err := rdb.SlowLogGet(ctx, -1).Result()
	require.NoError(b, err)
	var worst time.Duration
	for _, l := range logs {
		worst = max(worst, l.Duration)
	}
	require.NoError(b, rdb.Do(ctx, "SLOWLOG", "RESET").Err())
	require.NoError(b, rdb.ConfigSet(ctx, "slowlog-log-slower-than", "100").Err())
	require.NoError(b, rdb.ConfigSet(ctx, "slowlog-max-len", "100000").Err())
	return float64(worst.Microseconds()) / 1000
}

// BenchmarkBurnDown runs one job of 100,000 Noop subtasks through one runner
// process and reports tasks/s from submit to completed.
func BenchmarkBurnDown(b *testing.B) {
	for _, conc := range []int{256, 1024} {
		b.Run("concurrency="+strconv.Itoa(conc), func(b *testing.B) {
			const n = 100_000
			c, rs, ctx := benchClient(b)
			r, err := c.NewRunner(ctx, "bench", benchtask.All()...)
			require.NoError(b, err)
			slowest(b, ctx, rs)
			b.ResetTimer()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				j, err := c.Jobs().Submit(ctx, "burn", "bench", &benchtask.FanOut{N: n, Child: "Noop"})
				require.NoError(b, err)
				require.NoError(b, r.RunAll(ctx, workflows.WithConcurrency(conc), workflows.WithIdleWait(time.Millisecond)))
				j, err = c.Jobs().Get(ctx, j.ID)
				require.NoError(b, err)
				require.Equal(b, workflows.JobCompleted, j.State)
				require.Equal(b, int64(n+1), j.TaskCounts[workflows.TaskComputed])
				total += j.FinishedAt.Sub(start)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*(n+1))/total.Seconds(), "tasks/s")
			b.ReportMetric(slowest(b, ctx, rs), "slowest-redis-ms")
		})
	}
}

// Stamp records when it started executing.
type Stamp struct {
	Seq int `json:"seq"`
}

var stamps sync.Map // seq -> time.Time

func (*Stamp) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Stamp", "v1.0")
}
func (s *Stamp) Execute(context.Context) error {
	stamps.Store(s.Seq, time.Now())
	return nil
}

// BenchmarkSubmitToStart measures, with an idle runner blocked on its
// streams, the time from calling Submit to the task's Execute starting.
func BenchmarkSubmitToStart(b *testing.B) {
	c, _, ctx := benchClient(b)
	r, err := c.NewRunner(ctx, "bench", &Stamp{})
	require.NoError(b, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.RunForever(runCtx) }()
	// Warm up connections on both sides.
	for i := -10; i < 0; i++ {
		j, err := c.Jobs().Submit(ctx, "warm", "bench", &Stamp{Seq: i})
		require.NoError(b, err)
		_, err = c.Jobs().Wait(ctx, j.ID, time.Millisecond, nil)
		require.NoError(b, err)
	}
	samples := max(b.N, 200)
	lat := make([]time.Duration, 0, samples)
	b.ResetTimer()
	for i := 0; i < samples; i++ {
		start := time.Now()
		_, err := c.Jobs().Submit(ctx, "lat", "bench", &Stamp{Seq: i})
		require.NoError(b, err)
		var at time.Time
		for {
			if v, ok := stamps.Load(i); ok {
				at = v.(time.Time)
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		lat = append(lat, at.Sub(start))
		// Let the completion land so the runner is idle again.
		time.Sleep(2 * time.Millisecond)
	}
	b.StopTimer()
	stop()
	require.NoError(b, <-done)
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(0, "ns/op")
}
