package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/queue"
)

// The per-task updates allocate nothing and hash no label: the children
// are looked up once per (cluster, task).
func TestTaskMetricsUpdatesDoNotAllocate(t *testing.T) {
	m := NewMetrics()
	tm := m.forTask("c", queue.Identifier{Name: "T", Major: 1, Minor: 2})
	require.Same(t, tm, m.forTask("c", queue.Identifier{Name: "T", Major: 1, Minor: 2}), "children are cached")
	c := queue.Claimed{Hint: queue.Hint{ID: "1764460800000-7"}}
	o := &outcome{m: tm, took: time.Millisecond}
	now := time.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		tm.started(c, now)
		o.count(outcomeComputed)
		o.count(failOutcome(queue.Failure{}, queue.OutcomeRetry))
	})
	require.Zero(t, allocs)
}

func BenchmarkTaskMetricsPerTask(b *testing.B) {
	m := NewMetrics()
	tm := m.forTask("c", queue.Identifier{Name: "T", Major: 1})
	c := queue.Claimed{Hint: queue.Hint{ID: "1764460800000-7"}}
	o := &outcome{m: tm, took: time.Millisecond}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		tm.started(c, now)
		o.count(outcomeComputed)
	}
}
