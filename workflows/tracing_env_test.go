package workflows_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// A client set up from the environment exports a computed execution as a
// record built straight into OTLP and a failed one as an SDK span; both
// reach a real collector in the job's tree, with the resource of the
// runner. (Not parallel: it sets the process's environment.)
func TestEnvTracingExportsComputedAndFailedExecutions(t *testing.T) {
	col := testenv.NewOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.Endpoint())
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Clusters().Create(ctx, "main", "")
	require.NoError(t, err)
	run, err := c.NewRunner(ctx, "main", &benchtask.Traced{})
	require.NoError(t, err)

	j, err := c.Jobs().Submit(ctx, "env-traced", "main", &benchtask.Traced{Span: "plan", Children: []benchtask.TracedChild{
		{Task: benchtask.Traced{}},
		{After: []int{0}, Task: benchtask.Traced{Fail: "nope"}}, // after task 1, so both run
	}})
	require.NoError(t, err)
	require.NoError(t, run.RunAll(ctx))
	job, err := c.Jobs().Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobFailed, job.State)
	sc, ok := parseTraceParent(j.TraceParent)
	require.True(t, ok)
	tid := sc.TraceID().String()

	// submit, task 0, plan, task 1 (computed), task 2 (failed)
	spans := col.WaitSpans(t, tid, 5, 30*time.Second)
	byTask := map[int64]testenv.Span{}
	byName := map[string]testenv.Span{}
	for _, s := range spans {
		if id, ok := s.Attributes["runfleet.task.id"].(int64); ok {
			byTask[id] = s
		} else {
			byName[s.Name] = s
		}
	}
	require.Len(t, byTask, 3, "%v", spans)
	submit := byName["submit env-traced"]
	require.Equal(t, "PRODUCER", submit.Kind)
	require.Equal(t, submit.SpanID, byTask[0].ParentSpanID)
	require.Equal(t, byTask[0].SpanID, byName["plan"].ParentSpanID)
	for seq, s := range byTask {
		require.Equal(t, "task/Traced", s.Name)
		require.Equal(t, "CONSUMER", s.Kind)
		require.Equal(t, j.ID, s.Attributes["runfleet.job.id"])
		require.Equal(t, run.ID(), s.Attributes["runfleet.runner.id"])
		require.Equal(t, "main", s.Attributes["runfleet.cluster"])
		require.Equal(t, "runfleet", s.Attributes["messaging.system"])
		require.NotEmpty(t, s.Attributes["messaging.message.id"])
		require.Equal(t, "runfleet-runner", s.Resource["service.name"])
		require.Equal(t, run.ID(), s.Resource["service.instance.id"])
		require.EqualValues(t, os.Getpid(), s.Resource["process.pid"])
		require.False(t, s.End.Before(s.Start), "task %d ends after it starts", seq)
		if seq > 0 {
			require.Equal(t, byTask[0].SpanID, s.ParentSpanID, "task %d is under the root's execution", seq)
		}
	}
	require.Equal(t, "UNSET", byTask[1].Status)
	require.NotContains(t, byTask[1].Attributes, "runfleet.task.outcome")
	require.Equal(t, "ERROR", byTask[2].Status)
	require.Equal(t, "failed", byTask[2].Attributes["runfleet.task.outcome"])
}
