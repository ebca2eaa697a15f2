package controlplane_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// Idle is a task no test submits: a runner registered for it only is
// alive and claims none of the bench tasks.
type Idle struct{}

func (*Idle) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Idle", "v1.0")
}
func (*Idle) Execute(context.Context) error { return nil }

func scrapeGateway(t *testing.T, url string) map[string]*dto.MetricFamily {
	return testenv.ScrapeMetrics(t, url)
}

// gaugesByLabels maps a gauge family's series to their values, keyed by
// their label values joined with "/".
func gaugesByLabels(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	if f == nil {
		return out
	}
	for _, m := range f.Metric {
		key := ""
		for i, l := range m.Label {
			if i > 0 {
				key += "/"
			}
			key += l.GetValue()
		}
		out[key] = m.GetGauge().GetValue()
	}
	return out
}

func TestGatewayMetricsReportQueueDepthAndLiveRunnersAsRedisDoes(t *testing.T) {
	t.Parallel()
	b := newSweepBundle(t) // "dev": bench tasks registered, no runner running; "prod": empty
	srv := b.server(t, controlplane.Config{})
	hs := httptest.NewServer(srv.MetricsHandler())
	t.Cleanup(hs.Close)

	// Two live runners on dev that claim none of the queued tasks.
	runCtx, stop := context.WithCancel(b.ctx)
	done := make(chan struct{}, 2)
	t.Cleanup(func() { stop(); <-done; <-done })
	for range 2 {
		r, err := b.client.NewRunner(b.ctx, "dev", &Idle{})
		require.NoError(t, err)
		go func() { _ = r.RunForever(runCtx); done <- struct{}{} }()
	}
	for range 3 {
		b.submit(t, &benchtask.Sleep{})
	}
	b.submit(t, &benchtask.Noop{})

	q := b.client.Queue()
	var fams map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		fams = scrapeGateway(t, hs.URL)
		return gaugesByLabels(fams["runfleet_runners_alive"])["dev"] == 2
	}, 20*time.Second, 20*time.Millisecond, "the two runners never showed as alive")

	ready := gaugesByLabels(fams["runfleet_queue_ready_tasks"])
	require.Equal(t, map[string]float64{"dev/Sleep@v1.0": 3, "dev/Noop@v1.0": 1}, ready)
	want, err := q.ClusterMetrics(b.ctx, "dev")
	require.NoError(t, err)
	for task, n := range want.Ready {
		require.Equal(t, float64(n), ready["dev/"+task], "ready %s as Redis says", task)
	}
	require.Equal(t, float64(want.LiveRunners), gaugesByLabels(fams["runfleet_runners_alive"])["dev"])
	require.Equal(t, float64(0), gaugesByLabels(fams["runfleet_runners_alive"])["prod"])
	require.Greater(t, gaugesByLabels(fams["runfleet_queue_oldest_ready_age_seconds"])["dev"], float64(0))
	require.Equal(t, float64(0), gaugesByLabels(fams["runfleet_queue_oldest_ready_age_seconds"])["prod"])
	require.Equal(t, float64(0), gaugesByLabels(fams["runfleet_queue_running_tasks"])["dev"])
	require.NotNil(t, fams["go_goroutines"])
	require.NotNil(t, fams["process_cpu_seconds_total"])

	// Once the tasks run, the ready gauges follow Redis down to nothing.
	require.NoError(t, b.runner.RunAll(b.ctx, workflows.WithConcurrency(4)))
	fams = scrapeGateway(t, hs.URL)
	require.Empty(t, gaugesByLabels(fams["runfleet_queue_ready_tasks"]))
	require.Equal(t, float64(0), gaugesByLabels(fams["runfleet_queue_oldest_ready_age_seconds"])["dev"])
}

func TestGatewayMetricsScrapeFailsLoudlyWhenRedisIsGone(t *testing.T) {
	t.Parallel()
	b := newSweepBundle(t)
	srv := b.server(t, controlplane.Config{})
	hs := httptest.NewServer(srv.MetricsHandler())
	t.Cleanup(hs.Close)
	require.NoError(t, b.client.Close())
	// The Go collectors still answer; the queue gauges are missing and
	// the error is logged rather than served as zeros.
	fams := testenv.ScrapeMetrics(t, hs.URL)
	require.Nil(t, fams["runfleet_runners_alive"])
	require.NotNil(t, fams["go_goroutines"])
}
