package workflows_test

import (
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// buildBench builds the bench runner binary once per benchmark.
func buildBench(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "bench")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/runfleet/runfleet/examples/bench").CombinedOutput()
	require.NoError(b, err, "%s", out)
	return bin
}

// BenchmarkRecovery kills (SIGKILL) a runner process while it runs a long
// task and reports how long until the task starts on another runner, with
// the default heartbeat settings and with a tuned 1s TTL.
func BenchmarkRecovery(b *testing.B) {
	bin := buildBench(b)
	for _, tc := range []struct {
		name    string
		ttl     time.Duration
		reclaim time.Duration
	}{
		{"defaults(ttl=5s,reclaim=1s)", 5 * time.Second, time.Second},
		{"tuned(ttl=1s,reclaim=200ms)", time.Second, 200 * time.Millisecond},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c, rs, ctx := benchClient(b)
			rescuer, err := c.NewRunner(ctx, "bench", benchtask.All()...)
			require.NoError(b, err)
			var lat []time.Duration
			for range max(b.N, 3) {
				lat = append(lat, recoverOnce(b, c, ctx, bin, rs.URL(), rescuer, tc.ttl, tc.reclaim))
			}
			slices.Sort(lat)
			b.ReportMetric(lat[len(lat)/2].Seconds(), "median-recovery-s")
			b.ReportMetric(lat[len(lat)-1].Seconds(), "max-recovery-s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func recoverOnce(b *testing.B, c *workflows.Client, ctx context.Context, bin, url string, rescuer *workflows.Runner, ttl, reclaim time.Duration) time.Duration {
	b.Helper()
	victim := exec.Command(bin, "--cluster", "bench", "--redis", url,
		"--heartbeat-ttl", ttl.String(), "--reclaim-interval", reclaim.String())
	victim.Stderr = io.Discard
	require.NoError(b, victim.Start())
	defer func() { _ = victim.Process.Kill(); _ = victim.Wait() }()

	j, err := c.Jobs().Submit(ctx, "long", "bench", &benchtask.Sleep{MS: 3_600_000})
	require.NoError(b, err)
	require.Eventually(b, func() bool {
		ts, err := c.Jobs().Tasks(ctx, j.ID)
		return err == nil && ts[0].State == workflows.TaskRunning
	}, 20*time.Second, 2*time.Millisecond)

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = rescuer.RunForever(runCtx, workflows.WithHeartbeatTTL(ttl), workflows.WithReclaimInterval(reclaim),
			workflows.WithGracePeriod(0))
	}()
	killed := time.Now()
	require.NoError(b, victim.Process.Kill())
	var started time.Time
	require.Eventually(b, func() bool {
		ts, err := c.Jobs().Tasks(ctx, j.ID)
		if err == nil && ts[0].Attempts == 2 && ts[0].State == workflows.TaskRunning {
			started = time.Now()
			return true
		}
		return false
	}, 60*time.Second, 2*time.Millisecond)
	stop()
	wg.Wait()
	require.NoError(b, c.Jobs().Cancel(ctx, j.ID))
	return started.Sub(killed)
}

// BenchmarkHeartbeatCost simulates 1,000 idle runners of one cluster doing
// what idle runners do besides waiting for work (heartbeats every TTL/5 and
// a dead-runner check every second, with the default 5s TTL) and reports the
// Redis commands per second that costs.
func BenchmarkHeartbeatCost(b *testing.B) {
	const runners = 1000
	r := testenv.NewRedis(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, PoolSize: 64})
	defer rdb.Close()
	q, err := queue.New(ctx, rdb)
	require.NoError(b, err)
	_, err = q.CreateCluster(ctx, "idle", "")
	require.NoError(b, err)
	ttl := 5 * time.Second
	var wg sync.WaitGroup
	for i := range runners {
		info := queue.RunnerInfo{ID: "sim-" + strconv.Itoa(i), Streams: []string{"rf:{c:idle}:q:Noop:v1.0"}}
		require.NoError(b, q.Heartbeat(ctx, "idle", info, ttl, true))
		wg.Add(1)
		go func() {
			defer wg.Done()
			beat := time.NewTicker(ttl / 5)
			check := time.NewTicker(time.Second)
			defer beat.Stop()
			defer check.Stop()
			for n := 1; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-beat.C:
					_ = q.Heartbeat(ctx, "idle", info, ttl, n%10 == 0)
				case <-check.C:
					_, _ = q.ReclaimDead(ctx, "idle", info.ID, nil, 20)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second) // let the tickers spread out
	before := totalCalls(b, ctx, rdb)
	start := time.Now()
	time.Sleep(5 * time.Second)
	calls := totalCalls(b, ctx, rdb) - before
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	b.ReportMetric(float64(calls)/elapsed.Seconds(), "redis-cmds/s")
	b.ReportMetric(float64(calls)/elapsed.Seconds()/runners, "cmds/s-per-runner")
	b.ReportMetric(0, "ns/op")
}

func totalCalls(b *testing.B, ctx context.Context, rdb *redis.Client) int64 {
	b.Helper()
	info, err := rdb.Info(ctx, "commandstats").Result()
	require.NoError(b, err)
	var total int64
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_") || strings.HasPrefix(line, "cmdstat_info:") {
			continue
		}
		if i := strings.Index(line, "calls="); i >= 0 {
			rest := line[i+len("calls="):]
			if j := strings.IndexByte(rest, ','); j >= 0 {
				n, _ := strconv.ParseInt(rest[:j], 10, 64)
				total += n
			}
		}
	}
	return total
}
