package runnerd_test

import (
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/runnerd"
	"github.com/runfleet/runfleet/workflows"
)

func scrapeDaemon(t *testing.T, d *runnerd.Daemon) map[string]*dto.MetricFamily {
	t.Helper()
	require.NotEmpty(t, d.MetricsAddr(), "the daemon serves metrics while it runs")
	return testenv.ScrapeMetrics(t, "http://"+d.MetricsAddr()+"/metrics")
}

func counterOf(fams map[string]*dto.MetricFamily, name, task string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["cluster"] == "dev" && labels["task"] == task {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// The release runners' metrics count a job's tasks, and a task whose worker
// crashed under it as lost, not retried.
func TestDaemonMetricsCountReleaseRunnersTasks(t *testing.T) {
	f := newFixture(t)
	rel := f.publish(t, "a", nil)
	f.deploy(t, rel)
	d := f.start(t, func(c *runnerd.Config) { c.MetricsAddr = "127.0.0.1:0" })
	waitStatus(t, d, "release a running", onlyRunning(rel.ID))

	j := f.submit(t, &benchtask.Probe{Children: 3})
	require.Equal(t, workflows.JobCompleted, f.wait(t, j.ID).State)
	marker := filepath.Join(t.TempDir(), "crashed")
	j = f.submit(t, &benchtask.Crash{Marker: marker})
	require.Equal(t, workflows.JobCompleted, f.wait(t, j.ID).State)

	probe := "Probe@" + benchtask.Version
	crash := "Crash@" + benchtask.Version
	// A commit is counted once it has landed, which may be just after the
	// job shows finished.
	var fams map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		fams = scrapeDaemon(t, d)
		return counterOf(fams, "runfleet_tasks_computed_total", crash) == 1
	}, 10*time.Second, 10*time.Millisecond, "the crash task's computed execution was never counted")
	require.Equal(t, float64(4), counterOf(fams, "runfleet_tasks_computed_total", probe))
	require.Equal(t, float64(4), counterOf(fams, "runfleet_tasks_claimed_total", probe))
	require.Equal(t, float64(1), counterOf(fams, "runfleet_tasks_computed_total", crash))
	require.Equal(t, float64(1), counterOf(fams, "runfleet_tasks_lost_total", crash))
	require.Equal(t, float64(0), counterOf(fams, "runfleet_tasks_retried_total", crash))
	// Claims are the task's attempts: the lost one, the computed one and,
	// when the runner claimed it again while the crashed worker was still
	// restarting, a hand-back of the attempt no worker took.
	attempts, err := f.client.Jobs().Attempts(f.ctx, j.ID, 0)
	require.NoError(t, err)
	outcomes := map[string]int{}
	for _, a := range attempts {
		outcomes[a.Outcome]++
	}
	require.Equal(t, 1, outcomes[workflows.AttemptLost], "%v", attempts)
	require.Equal(t, 1, outcomes[workflows.AttemptComputed], "%v", attempts)
	require.Equal(t, len(attempts), outcomes[workflows.AttemptLost]+outcomes[workflows.AttemptComputed]+outcomes[workflows.AttemptHandedBack],
		"no other outcome: %v", attempts)
	require.Equal(t, float64(len(attempts)), counterOf(fams, "runfleet_tasks_claimed_total", crash))
	require.NotNil(t, fams["runfleet_slots_free"])
	require.NotNil(t, fams["go_goroutines"])
}
