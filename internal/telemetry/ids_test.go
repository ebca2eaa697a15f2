package telemetry

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestTraceParentRoundTrip(t *testing.T) {
	t.Parallel()
	tid := JobTraceID("job-1")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: ExecutionSpanID(tid, "job-1", 3, 2),
		TraceFlags: trace.FlagsSampled})
	tp := FormatTraceParent(sc)
	require.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`, tp)
	back, ok := ParseTraceParent(tp)
	require.True(t, ok)
	require.Equal(t, sc.TraceID(), back.TraceID())
	require.Equal(t, sc.SpanID(), back.SpanID())
	require.True(t, back.IsSampled())
	require.True(t, back.IsRemote())

	require.Empty(t, FormatTraceParent(trace.SpanContext{}))
	// The W3C example value.
	w3c, ok := ParseTraceParent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	require.True(t, ok)
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", w3c.TraceID().String())
	require.Equal(t, "b7ad6b7169203331", w3c.SpanID().String())
	// A later version's value is read by its version-00 prefix.
	_, ok = ParseTraceParent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra")
	require.True(t, ok)
}

func TestParseTraceParentRefusesMalformedValues(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",         // no flags
		"00-00000000000000000000000000000000-b7ad6b7169203331-01",      // zero trace id
		"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",      // zero span id
		"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",      // uppercase
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",    // version 00 is exactly 55 bytes
		"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",      // forbidden version
		"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",      // separator
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz",      // flags
		"00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",      // not hex
		"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01extra", // no dash after the prefix
	} {
		_, ok := ParseTraceParent(s)
		require.False(t, ok, "%q", s)
	}
}

func TestExecutionSpanIDsAreStableAndDistinct(t *testing.T) {
	t.Parallel()
	tid := JobTraceID("job")
	require.True(t, tid.IsValid())
	require.Equal(t, tid, JobTraceID("job"), "the same in every process")
	require.NotEqual(t, tid, JobTraceID("job2"))

	seen := map[trace.SpanID]string{}
	for _, job := range []string{"job", "jo", "b"} {
		for seq := int64(-1); seq < 50; seq++ {
			for att := 0; att < 4; att++ {
				id := ExecutionSpanID(tid, job, seq, att)
				require.True(t, id.IsValid())
				require.Equal(t, id, ExecutionSpanID(tid, job, seq, att))
				key := fmt.Sprintf("%s/%d/%d", job, seq, att)
				prev, dup := seen[id]
				require.False(t, dup, "%s and %s share span id %s", prev, key, id)
				seen[id] = key
			}
		}
	}
	require.NotEqual(t, ExecutionSpanID(tid, "job", 1, 1), ExecutionSpanID(JobTraceID("other"), "job", 1, 1),
		"the trace id is part of the hash")
	require.Equal(t, ExecutionSpanID(tid, "job", -1, 0), PlaceholderSpanID(tid, "job"))
	require.Equal(t, ExecutionSpanID(tid, "job", 7, 2), NewJobSpanIDs(tid, "job").Execution(7, 2))
}

// Runners of different versions compute each other's span ids: the hash
// may not change. These values were computed before JobSpanIDs split
// the hash in two.
func TestExecutionSpanIDsKeepTheirValues(t *testing.T) {
	t.Parallel()
	const job = "0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d"
	tid := JobTraceID(job)
	require.Equal(t, "3ba52eacd2268e98bc25cd9598102d69", tid.String())
	require.Equal(t, "006a705c5ea69439", ExecutionSpanID(tid, job, 20000, 3).String())
	require.Equal(t, "006a705c5ea69439", NewJobSpanIDs(tid, job).Execution(20000, 3).String())
	require.Equal(t, "888b96c2d0d26d8a", PlaceholderSpanID(tid, job).String())
}

// The generator gives exactly the span started with WithIDs the wanted
// ids; its children, and spans without a wish, get random ones.
func TestIDGeneratorGivesWantedIDs(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithIDGenerator(NewIDGenerator()))
	tr := tp.Tracer("test")
	tid := JobTraceID("j")
	want := ExecutionSpanID(tid, "j", 0, 1)

	// A root with wanted trace and span ids.
	_, root := tr.Start(WithIDs(context.Background(), tid, want), "root", trace.WithNewRoot())
	require.Equal(t, tid, root.SpanContext().TraceID())
	require.Equal(t, want, root.SpanContext().SpanID())
	// Children start from a context without the wish, as a task's does.
	_, child := tr.Start(trace.ContextWithSpan(context.Background(), root), "child")
	require.Equal(t, tid, child.SpanContext().TraceID())
	require.NotEqual(t, want, child.SpanContext().SpanID())

	// A child of a remote parent with a wanted span id.
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: want, TraceFlags: trace.FlagsSampled, Remote: true})
	sub := ExecutionSpanID(tid, "j", 1, 1)
	_, s := tr.Start(WithIDs(trace.ContextWithRemoteSpanContext(context.Background(), parent), tid, sub), "sub")
	require.Equal(t, sub, s.SpanContext().SpanID())

	// A wish for another trace is ignored.
	_, other := tr.Start(WithIDs(trace.ContextWithRemoteSpanContext(context.Background(), parent), JobTraceID("x"), sub), "other")
	require.NotEqual(t, sub, other.SpanContext().SpanID())

	// No wish: random, valid ids.
	_, free := tr.Start(context.Background(), "free")
	require.True(t, free.SpanContext().IsValid())
	require.NotEqual(t, tid, free.SpanContext().TraceID())
}
