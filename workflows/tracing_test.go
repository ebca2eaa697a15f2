package workflows_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// Panicky panics.
type Panicky struct{}

func (*Panicky) Execute(context.Context) error { panic("boom") }

// tracedBundle is a Redis, a client tracing into an in-memory recorder and
// two clusters, "main" and "other", each with a runner of its own.
type tracedBundle struct {
	ctx    context.Context
	url    string // Redis
	client *workflows.Client
	rec    *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	runner map[string]*workflows.Runner
}

func setupTraced(t *testing.T) *tracedBundle {
	t.Helper()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithIDGenerator(workflows.TraceIDGenerator()))
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), workflows.WithTracerProvider(tp))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	b := &tracedBundle{ctx: ctx, url: r.URL(), client: c, rec: rec, tp: tp, runner: map[string]*workflows.Runner{}}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	for _, cl := range []string{"main", "other"} {
		_, err = c.Clusters().Create(ctx, cl, "")
		require.NoError(t, err)
		run, err := c.NewRunner(ctx, cl, &benchtask.Traced{}, &Panicky{})
		require.NoError(t, err)
		b.runner[cl] = run
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.NoError(t, run.RunForever(runCtx, workflows.WithConcurrency(4)))
		}()
	}
	return b
}

func (b *tracedBundle) wait(t *testing.T, id string) workflows.Job {
	t.Helper()
	j, err := b.client.Jobs().Wait(b.ctx, id, 10*time.Millisecond, nil)
	require.NoError(t, err)
	return j
}

// spansOf returns the ended spans of trace tid, once n of them have ended.
func (b *tracedBundle) spansOf(t *testing.T, tid trace.TraceID, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	var out []sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		out = out[:0]
		for _, s := range b.rec.Ended() {
			if s.SpanContext().TraceID() == tid {
				out = append(out, s)
			}
		}
		return len(out) >= n
	}, 10*time.Second, 5*time.Millisecond)
	require.Len(t, out, n)
	return out
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// taskSpans maps task ids to their execution spans, and names other spans.
func taskSpans(spans []sdktrace.ReadOnlySpan) (byTask map[int64]sdktrace.ReadOnlySpan, byName map[string]sdktrace.ReadOnlySpan) {
	byTask, byName = map[int64]sdktrace.ReadOnlySpan{}, map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if id, ok := attrs(s)["runfleet.task.id"]; ok && s.SpanKind() == trace.SpanKindConsumer {
			byTask[id.AsInt64()] = s
		} else {
			byName[s.Name()] = s
		}
	}
	return byTask, byName
}

// The spans of a job form its tree: the caller's span, the submit, the
// root execution, each subtask's execution under the execution that
// submitted it, in whichever cluster (runner) it ran, and the spans task
// code started under its execution.
func TestExecutionSpansMirrorTheJobTree(t *testing.T) {
	t.Parallel()
	b := setupTraced(t)
	tree := &benchtask.Traced{Span: "plan", Children: []benchtask.TracedChild{
		{Cluster: "other", Task: benchtask.Traced{Span: "render", Children: []benchtask.TracedChild{
			{Cluster: "main", Task: benchtask.Traced{}}}}},
		{After: []int{0}, Task: benchtask.Traced{Span: "merge"}},
	}}
	callerCtx, caller := b.tp.Tracer("test").Start(b.ctx, "caller")
	j, err := b.client.Jobs().Submit(callerCtx, "traced", "main", tree)
	require.NoError(t, err)
	caller.End()
	require.Equal(t, workflows.JobCompleted, b.wait(t, j.ID).State)

	tid := caller.SpanContext().TraceID()
	sc, ok := parseTraceParent(j.TraceParent)
	require.True(t, ok, "the job stores its traceparent: %q", j.TraceParent)
	require.Equal(t, tid, sc.TraceID(), "the job continues the caller's trace")

	byTask, byName := taskSpans(b.spansOf(t, tid, 9))
	require.Len(t, byTask, 4)
	submit := byName["submit traced"]
	require.NotNil(t, submit)
	require.Equal(t, trace.SpanKindProducer, submit.SpanKind())
	require.Equal(t, caller.SpanContext().SpanID(), submit.Parent().SpanID())
	require.Equal(t, sc.SpanID(), submit.SpanContext().SpanID(), "the stored traceparent names the submit span")
	require.Equal(t, j.ID, attrs(submit)["runfleet.job.id"].AsString())
	require.Equal(t, "send", attrs(submit)["messaging.operation.type"].AsString())

	parentOf := map[int64]trace.SpanID{0: submit.SpanContext().SpanID(), 1: byTask[0].SpanContext().SpanID(),
		2: byTask[0].SpanContext().SpanID(), 3: byTask[1].SpanContext().SpanID()}
	cluster := map[int64]string{0: "main", 1: "other", 2: "main", 3: "main"}
	for seq, s := range byTask {
		a := attrs(s)
		require.Equal(t, "task/Traced", s.Name())
		require.Equal(t, parentOf[seq], s.Parent().SpanID(), "parent of task %d", seq)
		require.True(t, s.Parent().IsRemote(), "parents are named by computed ids")
		require.Equal(t, j.ID, a["runfleet.job.id"].AsString())
		require.Equal(t, int64(1), a["runfleet.task.attempt"].AsInt64())
		require.Equal(t, cluster[seq], a["runfleet.cluster"].AsString())
		require.Equal(t, b.runner[cluster[seq]].ID(), a["runfleet.runner.id"].AsString())
		require.Equal(t, "runfleet", a["messaging.system"].AsString())
		require.Equal(t, queue.StreamKey(cluster[seq], queue.Identifier{Name: "Traced", Major: 1}), a["messaging.destination.name"].AsString())
		require.NotEmpty(t, a["messaging.message.id"].AsString())
		require.NotContains(t, a, attribute.Key("runfleet.task.outcome"), "only executions that did not compute name their outcome")
		require.Equal(t, codes.Unset, s.Status().Code)
	}
	for name, under := range map[string]int64{"plan": 0, "render": 1, "merge": 2} {
		require.NotNil(t, byName[name], name)
		require.Equal(t, byTask[under].SpanContext().SpanID(), byName[name].Parent().SpanID(), "%s is under task %d", name, under)
	}
	require.False(t, byTask[2].StartTime().Before(byTask[3].EndTime()),
		"the merge waited for the render's whole subtree")
}

// A job submitted without tracing still stores a traceparent: a runner
// that traces makes its root execution the root of the job's own trace.
// Failed executions carry the error, and a panic an exception event with
// its stack.
func TestUntracedSubmitAndFailuresInTheTrace(t *testing.T) {
	t.Parallel()
	b := setupTraced(t)
	plain, err := workflows.NewClient(b.ctx, workflows.WithRedisURL(b.url),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	defer plain.Close()
	j, err := plain.Jobs().Submit(b.ctx, "untraced", "main", &benchtask.Traced{Fail: "nope"})
	require.NoError(t, err)
	require.Equal(t, workflows.JobFailed, b.wait(t, j.ID).State)
	sc, ok := parseTraceParent(j.TraceParent)
	require.True(t, ok, "traceparent %q", j.TraceParent)
	byTask, _ := taskSpans(b.spansOf(t, sc.TraceID(), 1))
	root := byTask[0]
	require.False(t, root.Parent().IsValid(), "no span was made at submit: the root execution starts the trace")
	require.Equal(t, codes.Error, root.Status().Code)
	require.Equal(t, "nope", root.Status().Description)
	require.Equal(t, "failed", attrs(root)["runfleet.task.outcome"].AsString())

	j, err = plain.Jobs().Submit(b.ctx, "panics", "other", &Panicky{})
	require.NoError(t, err)
	require.Equal(t, workflows.JobFailed, b.wait(t, j.ID).State)
	sc, _ = parseTraceParent(j.TraceParent)
	byTask, _ = taskSpans(b.spansOf(t, sc.TraceID(), 1))
	root = byTask[0]
	require.Equal(t, codes.Error, root.Status().Code)
	require.Equal(t, "task panicked: boom", root.Status().Description)
	require.Len(t, root.Events(), 1)
	ev := root.Events()[0]
	require.Equal(t, "exception", ev.Name)
	evAttrs := map[attribute.Key]string{}
	for _, kv := range ev.Attributes {
		evAttrs[kv.Key] = kv.Value.AsString()
	}
	require.Equal(t, "boom", evAttrs["exception.message"])
	require.Contains(t, evAttrs["exception.stacktrace"], "Panicky")
}

// parseTraceParent reads a W3C traceparent.
func parseTraceParent(s string) (trace.SpanContext, bool) {
	if len(s) != 55 {
		return trace.SpanContext{}, false
	}
	tid, err := trace.TraceIDFromHex(s[3:35])
	if err != nil {
		return trace.SpanContext{}, false
	}
	sid, err := trace.SpanIDFromHex(s[36:52])
	if err != nil {
		return trace.SpanContext{}, false
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}), true
}
