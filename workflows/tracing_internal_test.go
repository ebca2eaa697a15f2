package workflows

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/runfleet/runfleet/internal/telemetry"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/queue"
)

// allocProbe fails at once: its executions stay off Redis, so their
// allocations are the runner's own.
type allocProbe struct{}

func (*allocProbe) Execute(context.Context) error { return errAllocProbe }

var errAllocProbe = errors.New("probe")

// With no OTEL_EXPORTER_OTLP_* endpoint and no WithTracerProvider, a client
// makes no provider, wraps no logger, and an execution allocates exactly
// what it does without the tracing hook; the release-worker hooks
// allocate nothing.
func TestTracingOffAllocatesNothing(t *testing.T) {
	// Not parallel: it clears the OpenTelemetry environment.
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"} {
		t.Setenv(k, "")
		require.NoError(t, os.Unsetenv(k))
	}
	rdb := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	handler := slog.NewTextHandler(io.Discard, nil)
	c, err := NewClient(ctx, WithRedisURL(rdb.URL()), WithLogger(slog.New(handler)))
	require.NoError(t, err)
	defer c.Close()
	require.Nil(t, c.tracer)
	require.Nil(t, c.tel)
	require.Same(t, handler, c.logger.Handler(), "the logger is not wrapped")
	_, err = c.Clusters().Create(ctx, "main", "")
	require.NoError(t, err)
	r, err := c.NewRunner(ctx, "main", &allocProbe{})
	require.NoError(t, err)
	require.Nil(t, r.tracing)

	claim := queue.Claimed{JobID: "job", Seq: 3, Task: r.reg.ids[0], Input: []byte("{}"), Attempt: 1, Parent: 0,
		Hint: queue.Hint{Stream: "s", ID: "1-1", JobID: "job", Seq: 3, N: 1, Total: 1}}
	now := time.Now()
	out := r.execute(ctx, claim, nil, now) // records the runner's context with the job, once
	require.ErrorIs(t, out.err, errAllocProbe)
	// AllocsPerRun counts the whole process's allocations: goroutines of
	// earlier tests and the client's own timers may add some to a round,
	// never take any away, so the least of several rounds is the
	// execution's own. The rounds alternate, so a busy spell of the machine
	// (CI runs packages side by side) weighs on both alike.
	reg, ok := r.reg.lookup(claim.Task)
	require.True(t, ok)
	hooked, bare := math.Inf(1), math.Inf(1)
	for range 8 {
		hooked = min(hooked, testing.AllocsPerRun(100, func() { out = r.execute(ctx, claim, nil, now) }))
		bare = min(bare, testing.AllocsPerRun(100, func() { out = r.executeAs(ctx, reg, claim, nil, nil) }))
	}
	require.Equal(t, bare, hooked)
	require.Zero(t, testing.AllocsPerRun(200, func() { _ = r.tracing.traceParent(ctx) }))
	x := protocol.Execute{JobID: "job", TaskID: 3}
	require.Zero(t, testing.AllocsPerRun(200, func() { _ = workerTraceContext(ctx, x) }))
}

// BenchmarkExecutionSpan measures what tracing adds to one execution: its
// span started and ended (lineage cached, as for all but a job's first
// execution per parent) and exported over OTLP/HTTP to a local endpoint
// that discards it. cpu-ns/op is the whole process's CPU time, the batch
// exporter's encoding included. The loop waits for an export every 4,096
// executions, as many as a request takes: left to run ahead, it would
// queue millions of spans, and measure the queue's growth. "sdk" is a client given a TracerProvider
// (an SDK span each), "env" one set up from the environment (compact
// records, telemetry.ExecSpans).
func BenchmarkExecutionSpan(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	b.Run("sdk", func(b *testing.B) {
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(srv.URL+"/v1/traces"))
		require.NoError(b, err)
		// A queue that takes every span: none dropped, all exported.
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithMaxQueueSize(1<<22)),
			sdktrace.WithIDGenerator(TraceIDGenerator()))
		benchExecutionSpan(b, &Client{tracer: telemetry.Tracer(tp)}, tp.ForceFlush,
			func() error { return tp.Shutdown(context.Background()) })
	})
	b.Run("env", func(b *testing.B) {
		b.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", srv.URL+"/v1/traces")
		b.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", strconv.Itoa(1<<22))
		tel, err := telemetry.FromEnv(context.Background(), telemetry.Config{ServiceName: "bench"})
		require.NoError(b, err)
		benchExecutionSpan(b, &Client{tracer: telemetry.Tracer(tel.TracerProvider()), tel: tel}, tel.ExecSpans().Flush, func() error {
			err := tel.Shutdown(context.Background())
			require.Zero(b, tel.ExecSpans().Dropped())
			return err
		})
	})
}

// tracedChildClaim is the tracing of a runner of c in cluster, and a claim
// of a Noop child of task 0 (attempt 1) whose job's trace and parent's
// span are cached, so that starting its span reads nothing from Redis;
// job is the span context the job's (missing) traceparent gives.
func tracedChildClaim(c *Client, cluster string) (tr *taskTracing, claim queue.Claimed, job trace.SpanContext) {
	r := &Runner{client: c, id: "host-1-abcd", cluster: cluster, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	tr = newTaskTracing(c, r)
	id := queue.Identifier{Name: "Noop", Major: 1}
	claim = queue.Claimed{JobID: "0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d", Task: id, Attempt: 1, Parent: 0,
		Hint: queue.Hint{Stream: queue.StreamKey(cluster, id), ID: "1764460800000-7"}}
	tj := newTracedJob(claim.JobID, "")
	tr.parents.store(parentKey{claim.JobID, 0}, tracedParent{job: tj, span: tj.ids.Execution(0, 1)})
	return tr, claim, tj.sc
}

// TestLineageCachesAreBounded: a runner's caches of job traces and parent
// spans are emptied when full, and a key that executors which missed at
// the same time all store counts once, and empties no full cache.
func TestLineageCachesAreBounded(t *testing.T) {
	const limit = 100
	c := boundedCache[parentKey, trace.SpanID]{limit: limit}
	key := func(i int) parentKey { return parentKey{"job", int64(i)} }
	id := func(i int) trace.SpanID { return trace.SpanID{7: byte(i + 1)} }
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { c.store(key(0), id(0)) })
	}
	wg.Wait()
	require.Equal(t, 1, c.n)
	for i := range limit {
		c.store(key(i), id(i))
	}
	require.Equal(t, limit, c.n)
	c.store(key(limit-1), id(limit-1))
	require.Equal(t, limit, c.n, "a key already cached does not empty a full cache")
	got, ok := c.load(key(0))
	require.True(t, ok)
	require.Equal(t, id(0), *got)

	c.store(key(limit), id(limit))
	require.Equal(t, 1, c.n)
	_, ok = c.load(key(0))
	require.False(t, ok, "a full cache is emptied before the next entry")
	got, ok = c.load(key(limit))
	require.True(t, ok)
	require.Equal(t, id(limit), *got)
}

// BenchmarkSpanParentLookup is the lookup every traced execution of a
// subtask makes for its parent's span, from executors on every CPU at
// once, as a runner's are.
func BenchmarkSpanParentLookup(b *testing.B) {
	tr, claim, job := tracedChildClaim(&Client{tracer: telemetry.Tracer(sdktrace.NewTracerProvider())}, "bench")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := claim
		for pb.Next() {
			if parent, _, _ := tr.parentOf(context.Background(), &c); parent.TraceID() != job.TraceID() {
				b.Fatal("the parent's span is not in the job's trace")
			}
		}
	})
}

func benchExecutionSpan(b *testing.B, c *Client, flush func(context.Context) error, shutdown func() error) {
	tr, claim, _ := tracedChildClaim(c, "bench")
	ctx := context.Background()
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		claim.Seq = int64(i + 1)
		var span execSpan
		_ = tr.start(ctx, &claim, &span, time.Now())
		tr.end(&span, &claim, &outcome{claim: claim})
		if i%4096 == 4095 {
			require.NoError(b, flush(ctx))
		}
	}
	require.NoError(b, shutdown()) // the rest of the export, counted
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// An execution whose outcome was never set (a panic of the runner's own
// code unwinding through execute) records no span; one that computed, in
// the same export, does. (Not parallel: it sets the environment.)
func TestUnsetOutcomeRecordsNoSpan(t *testing.T) {
	col := testenv.NewOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", col.Endpoint()+"/v1/traces")
	tel, err := telemetry.FromEnv(context.Background(), telemetry.Config{ServiceName: "unset-outcome"})
	require.NoError(t, err)
	c := &Client{tracer: telemetry.Tracer(tel.TracerProvider()), tel: tel}
	tr, claim, job := tracedChildClaim(c, "main")
	require.NotNil(t, tr.records, "the record path")
	for seq, out := range map[int64]*outcome{1: {}, 2: {claim: claim}} {
		claim.Seq = seq
		var span execSpan
		_ = tr.start(context.Background(), &claim, &span, time.Now())
		tr.end(&span, &claim, out)
	}
	require.NoError(t, tel.Shutdown(context.Background())) // one export holds both, if both were queued
	spans := col.WaitSpans(t, job.TraceID().String(), 1, 10*time.Second)
	require.Len(t, spans, 1, "%v", spans)
	require.Equal(t, int64(2), spans[0].Attributes["runfleet.task.id"])
}

// A traced execution's context hands out its span as
// trace.ContextWithSpanContext would (to SpanFromContext, to spans task
// code starts, through contexts derived from it) along with the
// execution, and tracing an execution allocates nothing: no context and
// no span of its own. (Not parallel: it sets the environment.)
func TestTracedExecutionContext(t *testing.T) {
	require.NotNil(t, spanKey, "OpenTelemetry's span key was not learnt")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", srv.URL+"/v1/traces")
	tel, err := telemetry.FromEnv(context.Background(), telemetry.Config{ServiceName: "exec-context"})
	require.NoError(t, err)
	defer func() { require.NoError(t, tel.Shutdown(context.Background())) }()
	c := &Client{tracer: telemetry.Tracer(tel.TracerProvider()), tel: tel}
	tr, claim, job := tracedChildClaim(c, "main")
	require.NotNil(t, tr.records, "the record path")
	claim.Seq = 5

	// The parent's own span, which the execution's must hide.
	outer := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}})
	parentCtx, stop := context.WithCancel(trace.ContextWithSpanContext(context.Background(), outer))
	defer stop()
	var span execSpan
	ctx := tr.start(parentCtx, &claim, &span, time.Now())
	e := &execution{}
	taskCtx, cancel := context.WithCancel(newExecContext(ctx, e, &span))
	defer cancel()
	sc := trace.SpanContextFromContext(taskCtx)
	require.Equal(t, job.TraceID(), sc.TraceID())
	require.Equal(t, telemetry.ExecutionSpanID(job.TraceID(), claim.JobID, claim.Seq, claim.Attempt), sc.SpanID())
	require.True(t, sc.IsSampled())
	require.False(t, trace.SpanFromContext(taskCtx).IsRecording())
	require.Same(t, e, executionFrom(taskCtx))

	// A span task code starts is the execution's child.
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, child := tp.Tracer("task").Start(taskCtx, "child")
	child.End()
	require.Len(t, rec.Ended(), 1)
	require.Equal(t, sc.SpanID(), rec.Ended()[0].Parent().SpanID())
	require.Equal(t, sc.TraceID(), rec.Ended()[0].SpanContext().TraceID())
	tr.end(&span, &claim, &outcome{claim: claim})

	// Untraced, the context's span is its parent's.
	require.Equal(t, outer, trace.SpanContextFromContext(newExecContext(parentCtx, &execution{}, nil)))

	// Tracing adds no allocation: the least of several rounds, as in
	// TestTracingOffAllocatesNothing.
	traced, bare := math.Inf(1), math.Inf(1)
	for range 8 {
		traced = min(traced, testing.AllocsPerRun(100, func() {
			claim.Seq++
			var span execSpan
			ctx := tr.start(parentCtx, &claim, &span, time.Now())
			_ = newExecContext(ctx, e, &span)
			tr.end(&span, &claim, &outcome{claim: claim})
		}))
		bare = min(bare, testing.AllocsPerRun(100, func() { _ = newExecContext(parentCtx, e, nil) }))
	}
	require.Equal(t, bare, traced)

	// Cancelling the runner's context reaches the task's.
	stop()
	require.ErrorIs(t, taskCtx.Err(), context.Canceled)
}
