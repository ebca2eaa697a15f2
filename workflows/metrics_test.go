package workflows_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// metricsHolds releases MetricsLeaf tasks that wait on a key.
var metricsHolds sync.Map // key -> chan struct{}

// MetricsRoot submits Leaves leaves and one MetricsFlaky that always fails,
// optional, with two retries.
type MetricsRoot struct {
	Leaves int    `json:"leaves"`
	Hold   string `json:"hold"`
}

func (*MetricsRoot) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("MetricsRoot", "v1.0")
}

func (m *MetricsRoot) Execute(ctx context.Context) error {
	leaves := make([]workflows.Task, m.Leaves)
	for i := range leaves {
		leaves[i] = &MetricsLeaf{Hold: m.Hold}
	}
	if _, err := workflows.SubmitSubtasks(ctx, leaves); err != nil {
		return err
	}
	_, err := workflows.SubmitSubtask(ctx, &MetricsFlaky{}, workflows.WithMaxRetries(2), workflows.Optional())
	return err
}

// MetricsLeaf waits until its hold key is released (if any).
type MetricsLeaf struct {
	Hold string `json:"hold"`
}

func (*MetricsLeaf) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("MetricsLeaf", "v1.2")
}

func (m *MetricsLeaf) Execute(ctx context.Context) error {
	if m.Hold == "" {
		return nil
	}
	ch, _ := metricsHolds.Load(m.Hold)
	select {
	case <-ch.(chan struct{}):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// MetricsFlaky always fails.
type MetricsFlaky struct{}

func (*MetricsFlaky) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("MetricsFlaky", "v1.0")
}

func (*MetricsFlaky) Execute(context.Context) error { return errors.New("flaky by design") }

// scrape reads http://addr/metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	return testenv.ScrapeMetrics(t, "http://"+addr+"/metrics")
}

// sample finds the metric of family name whose labels include want; nil if
// none.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// counter is the value of a counter (0 when the series does not exist).
func counter(fams map[string]*dto.MetricFamily, name, task string) float64 {
	m := sample(fams, name, map[string]string{"cluster": "main", "task": task})
	if m == nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// sumCounter sums a counter over every task.
func sumCounter(fams map[string]*dto.MetricFamily, name string) float64 {
	var n float64
	if f := fams[name]; f != nil {
		for _, m := range f.Metric {
			n += m.GetCounter().GetValue()
		}
	}
	return n
}

func histCount(fams map[string]*dto.MetricFamily, name string, labels map[string]string) uint64 {
	m := sample(fams, name, labels)
	if m == nil {
		return 0
	}
	return m.GetHistogram().GetSampleCount()
}

func gauge(fams map[string]*dto.MetricFamily, name string) float64 {
	m := sample(fams, name, map[string]string{"cluster": "main"})
	if m == nil {
		return -1
	}
	return m.GetGauge().GetValue()
}

func TestMetricsCountAJobsTasksDuringAndAfterIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const leaves = 6
	hold := t.Name()
	release := make(chan struct{})
	metricsHolds.Store(hold, release)
	t.Cleanup(func() { metricsHolds.Delete(hold) })

	r, err := b.client.NewRunner(b.ctx, b.cluster, &MetricsRoot{}, &MetricsLeaf{}, &MetricsFlaky{})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() {
		done <- r.RunForever(runCtx, workflows.WithConcurrency(4), workflows.WithMetricsAddr("127.0.0.1:0"))
	}()
	t.Cleanup(func() { stop(); <-done })

	j := b.submit(t, &MetricsRoot{Leaves: leaves, Hold: hold})

	// During the job: four leaves hold every slot.
	var fams map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		if r.MetricsAddr() == "" {
			return false
		}
		fams = scrape(t, r.MetricsAddr())
		return gauge(fams, "runfleet_slots_busy") == 4
	}, 20*time.Second, 10*time.Millisecond, "four leaves never held the four slots")
	require.Equal(t, float64(0), gauge(fams, "runfleet_slots_free"))
	require.Equal(t, float64(1), counter(fams, "runfleet_tasks_computed_total", "MetricsRoot@v1.0"))
	require.Equal(t, float64(0), counter(fams, "runfleet_tasks_computed_total", "MetricsLeaf@v1.2"))
	require.GreaterOrEqual(t, counter(fams, "runfleet_tasks_claimed_total", "MetricsLeaf@v1.2"), float64(4))
	require.GreaterOrEqual(t, sumCounter(fams, "runfleet_tasks_claimed_total"), sumCounter(fams, "runfleet_tasks_computed_total"))

	close(release)
	final, err := b.client.Jobs().Wait(b.ctx, j.ID, 0, nil)
	require.NoError(t, err)
	require.Equal(t, "completed", final.State)

	// After the job: the counters add up to its task counts. Commits are
	// counted once they land, which is before the job shows finished; the
	// last slot is given back just after its commit.
	require.Eventually(t, func() bool {
		fams = scrape(t, r.MetricsAddr())
		return gauge(fams, "runfleet_slots_busy") == 0
	}, 10*time.Second, 10*time.Millisecond, "a slot stayed busy after the job finished")
	computed := final.TaskCounts["computed"]
	require.Equal(t, int64(1+leaves), computed)
	require.Equal(t, float64(computed), sumCounter(fams, "runfleet_tasks_computed_total"))
	require.Equal(t, float64(leaves), counter(fams, "runfleet_tasks_computed_total", "MetricsLeaf@v1.2"))
	require.Equal(t, float64(2), counter(fams, "runfleet_tasks_retried_total", "MetricsFlaky@v1.0"))
	require.Equal(t, float64(1), counter(fams, "runfleet_tasks_failed_total", "MetricsFlaky@v1.0"))
	require.Equal(t, float64(final.TaskCounts["failed_optional"]), sumCounter(fams, "runfleet_tasks_failed_total"))
	require.Equal(t, float64(0), sumCounter(fams, "runfleet_tasks_lost_total"))
	require.Equal(t, float64(computed+3), sumCounter(fams, "runfleet_tasks_claimed_total"),
		"every execution was claimed once: root, leaves and three attempts of the flaky task")
	require.Equal(t, uint64(leaves), histCount(fams, "runfleet_task_duration_seconds",
		map[string]string{"cluster": "main", "task": "MetricsLeaf@v1.2", "outcome": "computed"}))
	require.Equal(t, uint64(2), histCount(fams, "runfleet_task_duration_seconds",
		map[string]string{"cluster": "main", "task": "MetricsFlaky@v1.0", "outcome": "retried"}))
	require.Equal(t, uint64(1), histCount(fams, "runfleet_task_duration_seconds",
		map[string]string{"cluster": "main", "task": "MetricsFlaky@v1.0", "outcome": "failed"}))
	require.Equal(t, uint64(leaves), histCount(fams, "runfleet_task_queue_wait_seconds",
		map[string]string{"cluster": "main", "task": "MetricsLeaf@v1.2"}))
	require.Equal(t, float64(0), gauge(fams, "runfleet_slots_busy"))
	require.Equal(t, float64(4), gauge(fams, "runfleet_slots_free"))
	require.NotNil(t, fams["go_goroutines"], "the Go collector is on the endpoint")
	require.NotNil(t, fams["process_cpu_seconds_total"], "the process collector is on the endpoint")
	for name, f := range fams {
		if f.GetType() == dto.MetricType_GAUGE {
			require.NotRegexp(t, `_total$`, name, "a gauge named like a counter")
		}
	}
}

func TestMetricsOfTwoRunnersInOneProcessDoNotCollide(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Two runners with an endpoint each, and two sharing one Metrics, as
	// runnerd's release runners do.
	shared := workflows.NewMetrics()
	serveCtx, stopServe := context.WithCancel(b.ctx)
	t.Cleanup(stopServe)
	sharedAddr, err := shared.Serve(serveCtx, "127.0.0.1:0", nil)
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(b.ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	var own []*workflows.Runner
	for i := range 4 {
		r, err := b.client.NewRunner(b.ctx, b.cluster, &MetricsRoot{}, &MetricsLeaf{}, &MetricsFlaky{})
		require.NoError(t, err)
		opt := workflows.WithMetrics(shared)
		if i < 2 {
			opt = workflows.WithMetricsAddr("127.0.0.1:0")
			own = append(own, r)
		}
		wg.Go(func() { _ = r.RunForever(runCtx, workflows.WithConcurrency(2), opt) })
	}
	j := b.submit(t, &MetricsRoot{Leaves: 40})
	final, err := b.client.Jobs().Wait(b.ctx, j.ID, 0, nil)
	require.NoError(t, err)
	require.Equal(t, "completed", final.State)

	var computed, claimed, free float64
	sum := func() {
		computed, claimed, free = 0, 0, 0
		for _, addr := range []string{own[0].MetricsAddr(), own[1].MetricsAddr(), sharedAddr.String()} {
			require.NotEmpty(t, addr)
			fams := scrape(t, addr)
			computed += sumCounter(fams, "runfleet_tasks_computed_total")
			claimed += sumCounter(fams, "runfleet_tasks_claimed_total")
			free += gauge(fams, "runfleet_slots_free")
		}
	}
	// A runner counts its last commit and frees its slot just after the
	// job shows completed: wait for both, then compare.
	want := float64(final.TaskCounts["computed"])
	deadline := time.Now().Add(10 * time.Second)
	for sum(); (computed != want || free != 4*2) && time.Now().Before(deadline); sum() {
		time.Sleep(20 * time.Millisecond)
	}
	require.Equal(t, want, computed)
	require.Equal(t, computed+3, claimed)
	require.Equal(t, float64(4*2), free, "every runner's slots are free, the shared set's summed")
}

func TestMetricsAddrInUseIsAnErrorNamingIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r1, err := b.client.NewRunner(b.ctx, b.cluster, &MetricsLeaf{})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r1.RunForever(ctx, workflows.WithMetricsAddr("127.0.0.1:0")) }()
	t.Cleanup(func() { stop(); <-done })
	require.Eventually(t, func() bool { return r1.MetricsAddr() != "" }, 10*time.Second, 5*time.Millisecond)

	r2, err := b.client.NewRunner(b.ctx, b.cluster, &MetricsLeaf{})
	require.NoError(t, err)
	err = r2.RunAll(b.ctx, workflows.WithMetricsAddr(r1.MetricsAddr()))
	require.ErrorContains(t, err, "serve metrics on "+r1.MetricsAddr())
}

// BenchmarkMetricsBurnDown runs one job of 20,000 Noop subtasks through one
// runner at concurrency 8, with metrics off and on, and reports tasks/s
// from submit to completed.
func BenchmarkMetricsBurnDown(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "metrics=off"
		if on {
			name = "metrics=on"
		}
		b.Run(name, func(b *testing.B) {
			const n = 20_000
			c, _, ctx := benchClient(b)
			r, err := c.NewRunner(ctx, "bench", benchtask.All()...)
			require.NoError(b, err)
			opts := []workflows.RunOption{workflows.WithConcurrency(8), workflows.WithIdleWait(time.Millisecond)}
			if on {
				opts = append(opts, workflows.WithMetrics(workflows.NewMetrics()))
			}
			var total time.Duration
			for b.Loop() {
				start := time.Now()
				j, err := c.Jobs().Submit(ctx, "burn", "bench", &benchtask.FanOut{N: n, Child: "Noop"})
				require.NoError(b, err)
				require.NoError(b, r.RunAll(ctx, opts...))
				j, err = c.Jobs().Get(ctx, j.ID)
				require.NoError(b, err)
				require.Equal(b, int64(n+1), j.TaskCounts[workflows.TaskComputed])
				total += j.FinishedAt.Sub(start)
			}
			b.ReportMetric(float64(b.N*(n+1))/total.Seconds(), "tasks/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
