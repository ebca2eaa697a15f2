package workflows_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/workflows"
)

// BenchmarkJobWaitLag measures how long after a job's end Wait returns:
// Wait's return time minus the job's FinishedAt, over 100 jobs of one Noop
// each, with Wait already blocked on the job's events when the runner
// starts (a job that ended before Wait started is not a wait). FinishedAt
// is stamped in whole milliseconds (truncated), so a lag reads up to 1 ms
// high. "sequential" waits for one job at a time, each run by a runner
// started for it (RunAll); "parallel" blocks 100 waiters, then one runner
// runs all 100 jobs.
func BenchmarkJobWaitLag(b *testing.B) {
	const jobs = 100
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	report := func(b *testing.B, lags []time.Duration) {
		slices.Sort(lags)
		b.ReportMetric(ms(lags[len(lags)/2]), "p50-ms")
		b.ReportMetric(ms(lags[len(lags)*99/100]), "p99-ms")
		b.ReportMetric(ms(lags[len(lags)-1]), "max-ms")
		b.ReportMetric(0, "ns/op")
	}
	// waitFor starts Wait for id and returns once it has read the job.
	waitFor := func(ctx context.Context, c *workflows.Client, id string, lag *time.Duration, wg *sync.WaitGroup) {
		read := make(chan struct{})
		var once sync.Once
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, err := c.Jobs().Wait(ctx, id, 0, func(workflows.Job) { once.Do(func() { close(read) }) })
			at := time.Now()
			if err != nil || j.State != workflows.JobCompleted {
				panic("wait: " + j.State + ": " + errString(err))
			}
			*lag = at.Sub(j.FinishedAt)
		}()
		<-read
	}

	b.Run("sequential", func(b *testing.B) {
		c, _, ctx := benchClient(b)
		r, err := c.NewRunner(ctx, "bench", benchtask.All()...)
		require.NoError(b, err)
		var lags []time.Duration
		b.ResetTimer()
		for range b.N {
			for range jobs {
				j, err := c.Jobs().Submit(ctx, "lag", "bench", &benchtask.Noop{})
				require.NoError(b, err)
				var lag time.Duration
				var wg sync.WaitGroup
				waitFor(ctx, c, j.ID, &lag, &wg)
				require.NoError(b, r.RunAll(ctx, workflows.WithIdleWait(time.Millisecond)))
				wg.Wait()
				lags = append(lags, lag)
			}
		}
		b.StopTimer()
		report(b, lags)
	})

	b.Run("parallel", func(b *testing.B) {
		c, rs, ctx := benchClient(b)
		r, err := c.NewRunner(ctx, "bench", benchtask.All()...)
		require.NoError(b, err)
		// Every waiter holds a connection while it blocks.
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, PoolSize: 2 * jobs})
		waiter, err := workflows.NewClient(ctx, workflows.WithRedisClient(rdb),
			workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		require.NoError(b, err)
		b.Cleanup(func() { _ = waiter.Close(); _ = rdb.Close() })
		var lags []time.Duration
		b.ResetTimer()
		for range b.N {
			round := make([]time.Duration, jobs)
			var wg sync.WaitGroup
			for i := range jobs {
				j, err := c.Jobs().Submit(ctx, "lag", "bench", &benchtask.Noop{})
				require.NoError(b, err)
				waitFor(ctx, waiter, j.ID, &round[i], &wg)
			}
			require.NoError(b, r.RunAll(ctx, workflows.WithIdleWait(time.Millisecond)))
			wg.Wait()
			lags = append(lags, round...)
		}
		b.StopTimer()
		report(b, lags)
	})
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
