package events

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// BenchmarkGatewaySubmit64 submits jobs through a gateway's POST /v1/jobs
// from 64 concurrent clients, each on its own keep-alive connection, and
// reports the submissions per second, the p50 and p99 latency of one
// submission, and the Redis commands each took (INFO's
// total_commands_processed, which counts the commands inside functions
// too). The token's rate limit is raised out of the way; no runner takes
// the jobs.
func BenchmarkGatewaySubmit64(b *testing.B) {
	requireServers(b, false)
	const clients, perClient = 64, 100
	f := newFleet(b, controlplane.TokenSpec{Name: "bench", Rate: 1e6, Burst: 1_000_000})
	gw, _ := f.startGateway(b, time.Second)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: clients, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
	body := []byte(`{"cluster":"` + cluster + `","name":"bench","task":"Noop","version":"v1.0"}`)
	submit := func() (time.Duration, error) {
		start := time.Now()
		status, resp, err := post(context.Background(), hc, gw+"/v1/jobs", "Bearer "+f.token, body)
		if err == nil && status != http.StatusCreated {
			err = fmt.Errorf("submit answered %d: %s", status, resp)
		}
		return time.Since(start), err
	}
	// round runs n submissions from 64 clients and returns their latencies.
	round := func(n int) ([]time.Duration, error) {
		lat := make([]time.Duration, n)
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for range clients {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					d, err := submit()
					if err != nil {
						errs <- err
						return
					}
					lat[i] = d
				}
			})
		}
		wg.Wait()
		close(errs)
		return lat, <-errs
	}
	// Open the 64 connections first.
	_, err := round(clients)
	require.NoError(b, err)

	var all []time.Duration
	var elapsed time.Duration
	cmds := redisCommands(b, f.redis)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		lat, err := round(clients * perClient)
		elapsed += time.Since(start)
		require.NoError(b, err)
		all = append(all, lat...)
	}
	b.StopTimer()
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "jobs/s")
	reportLatency(b, all)
	b.ReportMetric(float64(redisCommands(b, f.redis)-cmds)/float64(len(all)), "redis_cmds/job")
}

// redisCommands is the number of commands r has processed.
func redisCommands(b *testing.B, r *testenv.Redis) int64 {
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	info, err := rdb.Info(context.Background(), "stats").Result()
	require.NoError(b, err)
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_commands_processed:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(b, err)
			return n
		}
	}
	b.Fatalf("no total_commands_processed in INFO stats")
	return 0
}

// BenchmarkUploadToQueued measures the time from the start of a PutObject
// to MinIO until the job its notification makes is queued in Redis, for 50
// uploads one after another. MinIO posts to the gateway directly (no queue
// directory: with one, MinIO replays its queue every 3 s and that interval
// dominates).
func BenchmarkUploadToQueued(b *testing.B) {
	requireServers(b, true)
	const uploads = 50
	f := newFleet(b, controlplane.TokenSpec{})
	gw, _ := f.startGateway(b, time.Second)
	m := testenv.NewMinIOEnv(b, webhookEnv(gw+"/v1/events/s3", f.token, "")...)
	bucket := m.NewBucket(b)
	notifyBucket(b, m, bucket, false)
	f.storageAutomation(b, "ingest", "s3://"+bucket, "", "")
	ctx := context.Background()

	var all []time.Duration
	seq := 0
	b.ResetTimer()
	for range b.N {
		for range uploads {
			seq++
			key := fmt.Sprintf("upload-%d.tif", seq)
			start := time.Now()
			upload(b, m, bucket, key, key)
			for {
				jobs, err := f.wc.Jobs().List(ctx, workflows.ListOptions{Cluster: cluster, Limit: 1})
				require.NoError(b, err)
				if len(jobs) == 1 && jobs[0].Name == "ingest "+key && jobs[0].State == workflows.JobSubmitted {
					break
				}
				if time.Since(start) > 30*time.Second {
					b.Fatalf("no queued job for %s within 30 s; %s", key, m.LogTail())
				}
				time.Sleep(200 * time.Microsecond)
			}
			all = append(all, time.Since(start))
		}
	}
	b.StopTimer()
	reportLatency(b, all)
}

// reportLatency reports the p50 and p99 of lat in milliseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50_ms")
	b.ReportMetric(at(0.99), "p99_ms")
}
