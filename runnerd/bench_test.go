package runnerd_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/runnerd"
)

// rollouts is how many deployments BenchmarkRollout times per run: the
// first two download their release, the rest find it cached.
const rollouts = 10

// BenchmarkRollout measures deploy → first task executing on the new
// release, alternating between two releases of the bench workflow on one
// release runner (file store). Jobs are submitted back to back from the
// moment of the deploy; the figure is the start time of the first task that
// ran on the new release, minus the deploy time.
func BenchmarkRollout(b *testing.B) {
	for b.Loop() {
		f := newFixture(b)
		ra, rb := f.publish(b, "a", nil), f.publish(b, "b", nil)
		next := []struct {
			label string
			rel   artifacts.Release
		}{{"b", rb}, {"a", ra}}
		f.deploy(b, ra)
		d := f.start(b, nil)
		waitStatus(b, d, "release a running", onlyRunning(ra.ID))
		var samples []time.Duration
		var first time.Duration
		for i := range rollouts {
			label, rel := next[i%2].label, next[i%2].rel
			t0 := time.Now()
			f.deploy(b, rel)
			for {
				j := f.submit(b, &benchtask.Probe{})
				f.wait(b, j.ID)
				task := f.tasks(b, j.ID)[0]
				if strings.Contains(task.Display, where(label, rel.ID)) {
					samples = append(samples, task.StartedAt.Sub(t0))
					break
				}
			}
			if i == 0 {
				first = samples[0]
			}
			waitStatus(b, d, "old release drained", onlyRunning(rel.ID))
		}
		slices.Sort(samples)
		b.ReportMetric(float64(first.Microseconds())/1000, "first-ms")
		b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "median-ms")
		b.ReportMetric(float64(samples[len(samples)-1].Microseconds())/1000, "max-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// startSamples is how many cold and cached starts BenchmarkReleaseStart
// times per run.
const startSamples = 5

// BenchmarkReleaseStart measures deploy → worker ready for a 20 MB release
// stored in MinIO on loopback: download, digest check, unpack and the
// worker's start up to its hello, with an empty cache ("cold") and with the
// release already unpacked ("cached", after an undeploy).
func BenchmarkReleaseStart(b *testing.B) {
	for b.Loop() {
		f := newFixture(b)
		m := testenv.NewMinIO(b)
		store, err := artifacts.NewS3Store(f.ctx, artifacts.S3Options{Bucket: m.NewBucket(b),
			Endpoint: m.Endpoint(), AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey})
		require.NoError(b, err)
		f.store, f.catalog = store, &artifacts.Catalog{Store: store}

		// The bench binary plus incompressible data: a 20 MB artifact.
		pad := make([]byte, 16<<20)
		_, _ = rand.Read(pad)
		path := filepath.Join(b.TempDir(), "big.tar.zst")
		out, err := os.Create(path)
		require.NoError(b, err)
		_, err = artifacts.Pack(out, benchManifest(), map[string]artifacts.File{
			"bin/bench": {Path: benchBinary(b, "a"), Executable: true}, "data/pad.bin": {Data: pad}})
		require.NoError(b, err)
		require.NoError(b, out.Close())
		rel, _, err := f.catalog.Publish(f.ctx, path, nil)
		require.NoError(b, err)
		b.ReportMetric(float64(rel.Size)/1e6, "artifact-MB")

		var cold, cached []time.Duration
		for range startSamples {
			f.cache = b.TempDir()
			d, stop := f.startStoppable(b, nil)
			t0 := time.Now()
			f.deploy(b, rel)
			waitStatusFast(b, d, onlyRunning(rel.ID))
			cold = append(cold, time.Since(t0))
			_, err := f.client.Deployments().Undeploy(f.ctx, f.cluster, rel.Workflow)
			require.NoError(b, err)
			waitStatusFast(b, d, func(st []runnerd.Status) bool { return len(st) == 0 })
			t0 = time.Now()
			f.deploy(b, rel)
			waitStatusFast(b, d, onlyRunning(rel.ID))
			cached = append(cached, time.Since(t0))
			_, err = f.client.Deployments().Undeploy(f.ctx, f.cluster, rel.Workflow)
			require.NoError(b, err)
			stop()
		}
		slices.Sort(cold)
		slices.Sort(cached)
		b.ReportMetric(float64(cold[len(cold)/2].Microseconds())/1000, "cold-median-ms")
		b.ReportMetric(float64(cold[len(cold)-1].Microseconds())/1000, "cold-max-ms")
		b.ReportMetric(float64(cached[len(cached)/2].Microseconds())/1000, "cached-median-ms")
		b.ReportMetric(float64(cached[len(cached)-1].Microseconds())/1000, "cached-max-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// waitStatusFast polls the status without sleeping between reads, for
// timings at sub-millisecond resolution.
func waitStatusFast(t testing.TB, d *runnerd.Daemon, ok func([]runnerd.Status) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok(d.Status()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out; status: %+v", d.Status())
		}
		runtime.Gosched()
	}
}
