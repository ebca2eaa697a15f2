package workflows_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// BenchmarkJobCache measures job cache Put and Get against a local MinIO,
// one operation at a time, for 1 KiB and 16 MiB values: throughput (MB/s,
// ops/s) and latency (median and p99 of the operations run).
//
//	go test -run '^$' -bench BenchmarkJobCache -benchtime 200x ./workflows/
func BenchmarkJobCache(b *testing.B) {
	ctx := b.Context()
	rdb := testenv.NewRedis(b)
	m := testenv.NewMinIO(b)
	b.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	b.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	url := "s3://" + m.NewBucket(b) + "/bench?endpoint=" + m.Endpoint()
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(rdb.URL()), workflows.WithJobCache(url))
	require.NoError(b, err)
	b.Cleanup(func() { _ = c.Close() })
	_, err = c.Clusters().Create(ctx, "main", "")
	require.NoError(b, err)
	_, err = c.NewRunner(ctx, "main", &Progressing{}) // registers the task
	require.NoError(b, err)
	j, err := c.Jobs().Submit(ctx, "bench", "main", &Progressing{})
	require.NoError(b, err)
	jc := c.Jobs().Cache(j.ID)
	for _, size := range []int{1 << 10, 16 << 20} {
		value := cacheBytes(size, 5)
		name := fmt.Sprintf("%dKiB", size>>10)
		if size >= 1<<20 {
			name = fmt.Sprintf("%dMiB", size>>20)
		}
		b.Run("put/"+name, func(b *testing.B) {
			b.SetBytes(int64(size))
			lat := make([]time.Duration, 0, b.N)
			i := 0
			for b.Loop() {
				start := time.Now()
				require.NoError(b, jc.Put(ctx, fmt.Sprintf("%s/%d", name, i%16), value))
				lat = append(lat, time.Since(start))
				i++
			}
			reportLatency(b, lat)
		})
		b.Run("get/"+name, func(b *testing.B) {
			b.SetBytes(int64(size))
			lat := make([]time.Duration, 0, b.N)
			i := 0
			for b.Loop() {
				start := time.Now()
				got, err := jc.Get(ctx, fmt.Sprintf("%s/%d", name, i%16))
				require.NoError(b, err)
				require.Len(b, got, size)
				lat = append(lat, time.Since(start))
				i++
			}
			reportLatency(b, lat)
		})
	}
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "ms-p99")
	var total time.Duration
	for _, d := range lat {
		total += d
	}
	b.ReportMetric(float64(len(lat))/total.Seconds(), "ops/s")
}
