package workflows

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/runfleet/runfleet/internal/telemetry"
	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/queue"
)

// Tracing. A job is one OpenTelemetry trace: submit stores a W3C
// traceparent with the job (a "submit <name>" span when the client traces,
// else the context's span or a new trace id), and each execution is a
// span "task/<Name>" of kind CONSUMER, parented on the execution that
// submitted its task, so the trace mirrors the job's tree. Span ids of
// executions are computed, not stored (telemetry.ExecutionSpanID): the
// runner of a subtask reads the job's traceparent and its parent's
// committed attempt, once per job and per parent (cached), and only when
// it traces. Without tracing none of this runs.

// Attribute keys of execution and submit spans.
const (
	attrJobID       = attribute.Key("runfleet.job.id")
	attrJobName     = attribute.Key("runfleet.job.name")
	attrTaskID      = attribute.Key("runfleet.task.id")
	attrTaskName    = attribute.Key("runfleet.task.name")
	attrTaskVersion = attribute.Key("runfleet.task.version")
	attrAttempt     = attribute.Key("runfleet.task.attempt")
	attrOutcome     = attribute.Key("runfleet.task.outcome")
	attrRunnerID    = attribute.Key("runfleet.runner.id")
	attrCluster     = attribute.Key("runfleet.cluster")
	attrRelease     = attribute.Key("runfleet.release")
)

// messagingSystem names runfleet's task queue as the messaging system.
var messagingSystem = semconv.MessagingSystemKey.String("runfleet")

// DefaultServiceName is service.name of a client that sets up
// OpenTelemetry from the environment without WithServiceName or
// OTEL_SERVICE_NAME.
const DefaultServiceName = "runfleet-runner"

// WithTracerProvider traces submits and executions with tp instead of
// setting OpenTelemetry up from the environment. Build tp with
// sdktrace.WithIDGenerator(workflows.TraceIDGenerator()): other runners
// name an execution's span as the parent of the spans of its subtasks by a
// computed id, which only that generator gives it. The client does not
// shut tp down.
func WithTracerProvider(tp trace.TracerProvider) ClientOption {
	return func(c *clientConfig) { c.tracerProvider = tp }
}

// WithServiceName is service.name in what the client exports when it sets
// OpenTelemetry up from the environment; OTEL_SERVICE_NAME wins over it.
// Default DefaultServiceName.
func WithServiceName(name string) ClientOption {
	return func(c *clientConfig) { c.serviceName = name }
}

// TraceIDGenerator returns the span id generator a TracerProvider given to
// WithTracerProvider needs (see there).
func TraceIDGenerator() sdktrace.IDGenerator { return telemetry.NewIDGenerator() }

// setUpTelemetry gives the client a tracer: cfg's provider's, else, when
// OTEL_EXPORTER_OTLP_ENDPOINT or a signal's endpoint is set, providers made
// from the environment, installed as OpenTelemetry's global ones (so that
// otel.Tracer in task code exports too), with the client's logger handing
// its records to the OTLP log exporter as well.
func (c *Client) setUpTelemetry(ctx context.Context, cfg clientConfig) error {
	if cfg.tracerProvider != nil {
		c.tracer = telemetry.Tracer(cfg.tracerProvider)
		return nil
	}
	name := cfg.serviceName
	if name == "" {
		name = DefaultServiceName
	}
	tel, err := telemetry.FromEnv(ctx, telemetry.Config{ServiceName: name, InstanceID: c.instanceID})
	if err != nil || tel == nil {
		return err
	}
	c.tel = tel
	tel.SetGlobal(c.logger)
	c.logger = slog.New(tel.LogHandler(c.logger.Handler()))
	if tp := tel.TracerProvider(); tp != nil {
		c.tracer = telemetry.Tracer(tp)
	}
	return nil
}

// takeRunnerID is the id of a new runner: the client's instance id for
// its first, so that service.instance.id names that runner.
func (c *Client) takeRunnerID() string {
	if c.idTaken.CompareAndSwap(false, true) {
		return c.instanceID
	}
	return newRunnerID()
}

// shutdownTelemetry flushes what the client's own providers hold.
func (c *Client) shutdownTelemetry() error {
	if c.tel == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.tel.Shutdown(ctx)
}

// submitJob writes a job with its traceparent: a "submit <name>" span's
// when the client traces, else the context's span's, else a new trace's.
func (c *Client) submitJob(ctx context.Context, p queue.SubmitJobParams) error {
	if c.tracer == nil {
		p.TraceParent = untracedParent(ctx, p.ID)
		return c.q.SubmitJob(ctx, p)
	}
	ctx, span := c.tracer.Start(ctx, "submit "+p.Name, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attrJobID.String(p.ID), attrJobName.String(p.Name), attrCluster.String(p.Cluster),
			attrTaskName.String(p.Task.Name), attrTaskVersion.String(p.Task.Version()), messagingSystem,
			semconv.MessagingOperationTypeSend, semconv.MessagingDestinationNameKey.String(queue.StreamKey(p.Cluster, p.Task))))
	defer span.End()
	p.TraceParent = telemetry.FormatTraceParent(span.SpanContext())
	if p.TraceParent == "" {
		// A provider that records nothing (a no-op one).
		p.TraceParent = untracedParent(ctx, p.ID)
	}
	err := c.q.SubmitJob(ctx, p)
	if err != nil && !errors.Is(err, queue.ErrJobExists) {
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// untracedParent is the traceparent of a job submitted without a span of
// its own: the context's span, or a new trace (the job's own trace id,
// sampled) whose placeholder parent no span has.
func untracedParent(ctx context.Context, jobID string) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return telemetry.FormatTraceParent(sc)
	}
	tid := telemetry.JobTraceID(jobID)
	return telemetry.FormatTraceParent(trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid,
		SpanID: telemetry.PlaceholderSpanID(tid, jobID), TraceFlags: trace.FlagsSampled}))
}

// Caches of a runner's span lineage: bounded, emptied when full. A
// 20,000-task fan-out has one parent, so its executions read once.
const (
	maxTracedJobs    = 1024
	maxTracedParents = 16384
)

// taskTracing makes the spans of one runner's executions.
type taskTracing struct {
	tracer   trace.Tracer
	q        *queue.Queue
	logger   *slog.Logger
	cluster  string
	common   []attribute.KeyValue // runner id, cluster, release, messaging system
	readFail sync.Once            // a lineage read failed: said once

	// records, when set, takes the spans of computed executions as
	// compact records (telemetry.ExecSpans); exported with recordAttrs.
	records     *telemetry.ExecSpans
	recordAttrs *telemetry.ExecAttrs

	jobs    boundedCache[string, tracedJob]       // job id -> its trace
	parents boundedCache[parentKey, tracedParent] // parent task -> its committed attempt's span
}

// boundedCache is a cache of a runner's span lineage, read by every
// execution: a sync.Map, so that concurrent executors read it without
// taking a lock, emptied when a store finds it full.
type boundedCache[K comparable, V any] struct {
	m     sync.Map // K -> *V
	limit int      // entries it holds at most
	mu    sync.Mutex
	n     int // entries stored since it was last emptied; under mu
}

// load is the value cached under k, if any.
func (c *boundedCache[K, V]) load(k K) (*V, bool) {
	v, ok := c.m.Load(k)
	if !ok {
		return nil, false
	}
	return v.(*V), true
}

// store caches v under k, emptying the cache first when it is full and k
// is not in it.
func (c *boundedCache[K, V]) store(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, had := c.m.Load(k); had {
		return // another executor that missed at the same time stored it
	}
	if c.n >= c.limit {
		c.m.Clear()
		c.n = 0
	}
	c.m.Store(k, &v)
	c.n++
}

// execSpan is the span of one execution: an SDK span, or with
// taskTracing.records what the span's record or late SDK span needs.
type execSpan struct {
	sdk    trace.Span
	sc     trace.SpanContext
	parent trace.SpanContext
	root   bool
	start  time.Time
	stream string
}

type parentKey struct {
	job string
	seq int64
}

// newTaskTracing is r's tracing, nil when its client does not trace.
func newTaskTracing(c *Client, r *Runner) *taskTracing {
	if c.tracer == nil {
		return nil
	}
	// Kept to what the issue names and what finds a span again: every
	// attribute costs each of thousands of spans a second.
	common := []attribute.KeyValue{attrRunnerID.String(r.id), attrCluster.String(r.cluster), messagingSystem}
	if r.release != "" {
		common = append(common, attrRelease.String(r.release))
	}
	t := &taskTracing{tracer: c.tracer, q: c.q, logger: r.logger, cluster: r.cluster, common: common}
	t.jobs.limit, t.parents.limit = maxTracedJobs, maxTracedParents
	if rec := c.tel.ExecSpans(); rec != nil {
		t.records, t.recordAttrs = rec, telemetry.NewExecAttrs(common...)
	}
	return t
}

// start begins the span of execution c, which began at began, in x; end
// then ends it. Without records, the returned context carries the SDK
// span. With records, no SDK span is made: x.sc is the span's context,
// which the task's context gets (what task code's spans and log records
// need), and end writes the record, or for an execution that did not
// compute, the SDK span.
func (t *taskTracing) start(ctx context.Context, c *queue.Claimed, x *execSpan, began time.Time) context.Context {
	parent, root, ids := t.parentOf(ctx, c)
	tid := parent.TraceID()
	sid := ids.Execution(c.Seq, c.Attempt)
	stream := c.Hint.Stream
	if stream == "" {
		stream = queue.StreamKey(t.cluster, c.Task)
	}
	if t.records == nil {
		x.sdk = t.startSDK(ctx, c, parent, root, sid, stream, trace.WithTimestamp(began))
		return trace.ContextWithSpan(ctx, x.sdk)
	}
	var flags trace.TraceFlags
	if t.records.SampledUnder(parent, root, tid, c.Task.Name) {
		flags = trace.FlagsSampled
	}
	*x = execSpan{sc: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags,
		TraceState: parent.TraceState()}), parent: parent, root: root, start: began, stream: stream}
	// The task's context gets x.sc from newExecContext, with no
	// allocation of its own.
	return ctx
}

// inContext is ctx carrying x's span context, for an execution that reads
// it from a context (a release worker's, through its traceparent) rather
// than from newExecContext. x is nil when not traced; an SDK span is in
// ctx already.
func (x *execSpan) inContext(ctx context.Context) context.Context {
	if x == nil || !x.sc.IsValid() {
		return ctx
	}
	return trace.ContextWithSpanContext(ctx, x.sc)
}

// startSDK starts execution c's SDK span, with the options given.
func (t *taskTracing) startSDK(ctx context.Context, c *queue.Claimed, parent trace.SpanContext, root bool,
	sid trace.SpanID, stream string, opts ...trace.SpanStartOption) trace.Span {
	attrs := make([]attribute.KeyValue, 0, len(t.common)+5)
	attrs = append(attrs, t.common...)
	attrs = append(attrs, attrJobID.String(c.JobID), attrTaskID.Int64(c.Seq), attrAttempt.Int(c.Attempt),
		semconv.MessagingDestinationNameKey.String(stream))
	if c.Hint.ID != "" {
		attrs = append(attrs, semconv.MessagingMessageIDKey.String(c.Hint.ID))
	}
	opts = append(opts, trace.WithSpanKind(trace.SpanKindConsumer))
	startCtx := ctx
	var span trace.Span
	// Only this span may take the wanted ids: the task's context is made
	// from ctx, not startCtx.
	if root {
		opts = append(opts, trace.WithNewRoot())
	} else {
		startCtx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	_, span = t.tracer.Start(telemetry.WithIDs(startCtx, parent.TraceID(), sid), "task/"+c.Task.Name, opts...)
	// Set after the start rather than as a start option, which the SDK
	// would copy once more.
	span.SetAttributes(attrs...)
	return span
}

// parentOf is the span context execution c's span is a child of, or, with
// root set, the trace it starts (only its trace id and flags count), and
// the span ids of c's job in that trace.
func (t *taskTracing) parentOf(ctx context.Context, c *queue.Claimed) (parent trace.SpanContext, root bool, ids telemetry.JobSpanIDs) {
	var job tracedJob
	var parentSpan trace.SpanID
	haveJob, haveParent := false, c.Parent < 0
	if !haveParent {
		if p, ok := t.parents.load(parentKey{c.JobID, c.Parent}); ok {
			job, haveJob, haveParent, parentSpan = p.job, true, true, p.span
		}
	}
	if !haveJob {
		if j, ok := t.jobs.load(c.JobID); ok {
			job, haveJob = *j, true
		}
	}
	if !haveJob || !haveParent {
		seq := c.Parent
		if haveParent {
			seq = -1
		}
		l, err := t.q.SpanLineage(ctx, c.JobID, seq, !haveJob)
		if err != nil {
			t.readFail.Do(func() {
				t.logger.Warn("cannot read where an execution's span belongs in its job's trace; such spans start traces of their own",
					slog.String("job_id", c.JobID), slog.Any("error", err))
			})
			tid := telemetry.JobTraceID(c.JobID)
			return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, TraceFlags: trace.FlagsSampled}),
				true, telemetry.NewJobSpanIDs(tid, c.JobID)
		}
		if !haveJob {
			job = newTracedJob(c.JobID, l.TraceParent)
			t.jobs.store(c.JobID, job)
		}
		if !haveParent && l.ParentAttempt > 0 {
			// Kept as the span id, not the attempt: the job's
			// traceparent does not change, so neither does the id.
			parentSpan = job.ids.Execution(c.Parent, l.ParentAttempt)
			t.parents.store(parentKey{c.JobID, c.Parent}, tracedParent{job: job, span: parentSpan})
		}
	}
	if c.Parent >= 0 && parentSpan.IsValid() {
		return trace.NewSpanContext(trace.SpanContextConfig{TraceID: job.sc.TraceID(), SpanID: parentSpan,
			TraceFlags: job.sc.TraceFlags(), Remote: true}), false, job.ids
	}
	// The root task, or a task whose parent is gone: under the submit, or
	// starting the trace when the submit made no span.
	return job.sc, job.placeholder, job.ids
}

// tracedJob is what a runner keeps of a job's trace.
type tracedJob struct {
	sc          trace.SpanContext    // what the job's traceparent names
	placeholder bool                 // sc's span is the placeholder: no span has it
	ids         telemetry.JobSpanIDs // the span ids of the job's executions
}

// tracedParent is a parent task's committed attempt's span, kept with its
// job's trace so that an execution of one of its subtasks takes one map
// lookup.
type tracedParent struct {
	job  tracedJob
	span trace.SpanID
}

// newTracedJob is the trace of job jobID stored with traceParent.
func newTracedJob(jobID, traceParent string) tracedJob {
	sc := jobSpanContext(jobID, traceParent)
	ids := telemetry.NewJobSpanIDs(sc.TraceID(), jobID)
	return tracedJob{sc: sc, placeholder: sc.SpanID() == ids.Placeholder(), ids: ids}
}

// jobSpanContext is the span context a job's traceparent names; a job
// stored without one (or with a broken one) gets its own trace id and the
// placeholder parent, as untracedParent gives.
func jobSpanContext(jobID, traceParent string) trace.SpanContext {
	if sc, ok := telemetry.ParseTraceParent(traceParent); ok {
		return sc
	}
	tid := telemetry.JobTraceID(jobID)
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid,
		SpanID: telemetry.PlaceholderSpanID(tid, jobID), TraceFlags: trace.FlagsSampled, Remote: true})
}

// maxStatusBytes bounds an error message in a span's status.
const maxStatusBytes = 4096

// end records how execution c went (out) and ends its span x: failed and lost
// executions have status Error with the message, a panic an exception
// event with its stack, a hand-back an event saying why. A computed
// execution's span gets nothing more (its status stays unset): an
// attribute added now would copy the span's attributes, and most
// executions compute. Writing a computed execution's span record, it also
// sets out.took, from the same clock read as the record's end.
func (t *taskTracing) end(x *execSpan, c *queue.Claimed, out *outcome) {
	span := x.sdk
	if out.claim.JobID == "" {
		// Every outcome names its claim: this one was never set, as when a
		// panic of the runner's own code (not the task's, which is
		// recovered) unwinds through execute and the process goes down.
		// Nothing to record; an SDK span is ended as it is.
		if span != nil {
			span.End()
		}
		return
	}
	if span == nil {
		if !x.sc.IsSampled() {
			return
		}
		if out.err == nil {
			// x.start is the executor's start of the execution, so this
			// end gives its execution time too: one clock read fewer.
			ended := time.Now()
			out.took = ended.Sub(x.start)
			rec := telemetry.ExecRecord{TraceID: x.sc.TraceID(), SpanID: x.sc.SpanID(), Flags: x.sc.TraceFlags(),
				TaskName: c.Task.Name, Start: x.start, End: ended, JobID: c.JobID, TaskID: c.Seq,
				Attempt: c.Attempt, Destination: x.stream, MessageID: c.Hint.ID, Common: t.recordAttrs}
			if !x.root {
				rec.Parent, rec.ParentRemote = x.parent.SpanID(), true
			}
			t.records.Add(rec)
			return
		}
		// Rare: made as an SDK span now, for its status and events.
		span = t.startSDK(context.Background(), c, x.parent, x.root, x.sc.SpanID(), x.stream, trace.WithTimestamp(x.start))
	}
	switch {
	case out.err == nil:
	case out.handBack:
		span.SetAttributes(attrOutcome.String("handed_back"))
		span.AddEvent("handed back", trace.WithAttributes(semconv.ExceptionMessageKey.String(clip(out.err.Error()))))
	default:
		outcome := "failed"
		if out.lost {
			outcome = "lost"
		}
		span.SetAttributes(attrOutcome.String(outcome))
		msg := clip(out.err.Error())
		if pe, ok := errors.AsType[*PanicError](out.err); ok {
			span.AddEvent(semconv.ExceptionEventName, trace.WithAttributes(semconv.ExceptionType("panic"),
				semconv.ExceptionMessageKey.String(clip(pe.Value)), semconv.ExceptionStacktraceKey.String(pe.Stack)))
		}
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}

// clip caps an error message for a span, on a character boundary.
func clip(s string) string { return queue.CapText(s, maxStatusBytes) }

// traceParent is the traceparent of the span ctx carries, for a release
// worker to continue; "" when the runner does not trace.
func (t *taskTracing) traceParent(ctx context.Context) string {
	if t == nil {
		return ""
	}
	return telemetry.FormatTraceParent(trace.SpanContextFromContext(ctx))
}

// workerTraceContext gives a release worker's execution the span of the
// runner's execution (protocol.Execute's traceparent), so spans that task
// code starts from its context, and its log records, join the job's trace.
func workerTraceContext(ctx context.Context, x protocol.Execute) context.Context {
	if sc, ok := telemetry.ParseTraceParent(x.TraceParent); ok {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return ctx
}

// startWorkerTelemetry sets a release worker's OpenTelemetry up from the
// environment it inherits from its release runner: its spans, and records
// logged to slog.Default, are exported as the runner's are. stop flushes.
func startWorkerTelemetry(stderr io.Writer) (stop func()) {
	tel, err := telemetry.FromEnv(context.Background(), telemetry.Config{ServiceName: "runfleet-worker", InstanceID: newRunnerID()})
	if err != nil {
		slog.Warn("OpenTelemetry is not exported", slog.Any("error", err))
		return func() {}
	}
	if tel == nil {
		return func() {}
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	tel.SetGlobal(logger)
	if tel.LoggerProvider() != nil {
		slog.SetDefault(slog.New(tel.LogHandler(logger.Handler())))
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			logger.Warn("OpenTelemetry flush failed", slog.Any("error", err))
		}
	}
}

// withSpanContext is ctx carrying sc when ctx has no span of its own, so
// that log handlers (the OTLP bridge) see the span a record belongs to.
func withSpanContext(ctx context.Context, sc trace.SpanContext) context.Context {
	if !sc.IsValid() || trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	return trace.ContextWithSpanContext(ctx, sc)
}

// recordSpanContext is the span context a release worker's log record
// names (protocol.LogRecord's trace_id and span_id), on ctx.
func recordSpanContext(ctx context.Context, traceID, spanID string) context.Context {
	if traceID == "" {
		return ctx
	}
	tid, err := trace.TraceIDFromHex(traceID)
	if err != nil {
		return ctx
	}
	sid, err := trace.SpanIDFromHex(spanID)
	if err != nil {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}))
}
