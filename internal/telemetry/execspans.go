package telemetry

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Execution spans are most of what a busy runner exports, thousands a
// second, and almost all of them end the same way: computed, status unset,
// the same few attributes. An SDK span costs each of them a span object,
// a copy of its attributes at End, a queue hand-off and a conversion to
// OTLP; ExecSpans skips all of that: a runner appends a small record when
// the execution ends and a background goroutine writes batches of them as
// OTLP protobuf into reused buffers (spanEncoder) and posts them
// (traceSender, configured from the same environment as the SDK's
// exporter). Everything else (submits, spans of task code, failed
// executions with their events) stays with the SDK.

// ExecRecord is a finished execution span: kind CONSUMER, status unset,
// named "task/" + TaskName.
type ExecRecord struct {
	TraceID      trace.TraceID
	SpanID       trace.SpanID
	Parent       trace.SpanID // zero for a root
	Flags        trace.TraceFlags
	TaskName     string
	Start, End   time.Time
	JobID        string
	TaskID       int64
	Attempt      int
	Destination  string // messaging.destination.name
	MessageID    string // messaging.message.id, "" for none
	Common       *ExecAttrs
	ParentRemote bool
}

// ExecAttrs are the attributes every execution span of one runner has,
// encoded once.
type ExecAttrs struct {
	encoded []byte
}

// NewExecAttrs encodes attrs for ExecRecord.Common.
func NewExecAttrs(attrs ...attribute.KeyValue) *ExecAttrs {
	return &ExecAttrs{encoded: encodeExecAttrs(attrs)}
}

// ExecSpans queues execution spans for export: bounded like the SDK's
// batch span processor (OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_SCHEDULE_DELAY,
// OTEL_BSP_MAX_EXPORT_BATCH_SIZE), dropping and counting what does not fit
// when the collector falls behind. Its defaults are larger than the SDK's
// (execSpanQueue, execSpanBatch), and a request holds at most
// maxExportBytes of spans.
type ExecSpans struct {
	sender  *traceSender
	encoder *spanEncoder // owned by run's goroutine
	sampler sdktrace.Sampler
	// parentDecides is set for the default sampler, parentbased_always_on:
	// a root is sampled and a child follows its parent's flag, which
	// SampledUnder then reads without building a context for the sampler.
	parentDecides bool

	maxQueue, maxBatch int
	delay              time.Duration

	mu      sync.Mutex
	queue   []ExecRecord
	stopped bool
	dropped atomic.Int64

	kick    chan struct{}
	flushes chan chan error
	done    chan struct{}
	stop    sync.Once
}

// newExecSpans starts the queue of execution spans, exported by sender.
func newExecSpans(sender *traceSender, res *resource.Resource, sampler sdktrace.Sampler) *ExecSpans {
	e := &ExecSpans{sender: sender, sampler: sampler, encoder: newSpanEncoder(res.Attributes(), Scope),
		maxQueue: envInt("OTEL_BSP_MAX_QUEUE_SIZE", execSpanQueue), maxBatch: envInt("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", execSpanBatch),
		delay: time.Duration(envInt("OTEL_BSP_SCHEDULE_DELAY", 5000)) * time.Millisecond,
		kick:  make(chan struct{}, 1), flushes: make(chan chan error), done: make(chan struct{})}
	e.maxBatch = min(e.maxBatch, e.maxQueue)
	e.parentDecides = sampler.Description() == defaultSampler.Description()
	e.queue = make([]ExecRecord, 0, e.maxBatch)
	go e.run()
	return e
}

// Defaults of the execution span queue. A request costs the runner and
// the collector a fixed part besides its spans: at no-op task rates, 512
// spans a request (the SDK's default) left the collector about 4.3 µs a
// span and 4,096 about 2.6 µs (BenchmarkObservabilityOverhead). A record
// is about 150 bytes queued and 330 bytes encoded.
const (
	execSpanBatch = 4096
	execSpanQueue = 4 * execSpanBatch
	// maxExportBytes bounds a request's spans, for collectors and proxies
	// that refuse big bodies: about 3,000 execution spans.
	maxExportBytes = 1 << 20
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(os.Getenv(name))); err == nil && n > 0 {
		return n
	}
	return def
}

// SampledUnder reports whether the span of an execution whose parent is
// parent (root: it starts trace tid) is sampled, as the provider's sampler
// decides: with the default sampler it reads the parent's flag and
// allocates nothing; with any other it asks the sampler.
func (e *ExecSpans) SampledUnder(parent trace.SpanContext, root bool, tid trace.TraceID, name string) bool {
	if e.parentDecides {
		return root || parent.IsSampled()
	}
	ctx := context.Background()
	if !root {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	r := e.sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid, Name: name,
		Kind: trace.SpanKindConsumer})
	return r.Decision == sdktrace.RecordAndSample
}

// Add queues r for export, or drops it when the queue is full.
func (e *ExecSpans) Add(r ExecRecord) {
	e.mu.Lock()
	if e.stopped || len(e.queue) >= e.maxQueue {
		e.mu.Unlock()
		e.dropped.Add(1)
		return
	}
	e.queue = append(e.queue, r)
	full := len(e.queue) >= e.maxBatch
	e.mu.Unlock()
	if full {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

// Dropped is how many records did not fit the queue.
func (e *ExecSpans) Dropped() int64 { return e.dropped.Load() }

// Flush exports what is queued.
func (e *ExecSpans) Flush(ctx context.Context) error {
	ch := make(chan error, 1)
	select {
	case e.flushes <- ch:
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// shutdown exports what is queued and stops.
func (e *ExecSpans) shutdown(ctx context.Context) error {
	err := e.Flush(ctx)
	e.stop.Do(func() {
		e.mu.Lock()
		e.stopped = true
		e.mu.Unlock()
		close(e.done)
	})
	e.sender.http.HTTPClient.CloseIdleConnections()
	if n := e.dropped.Load(); n > 0 {
		otel.Handle(fmt.Errorf("%d execution spans dropped: the OTLP exporter fell behind (OTEL_BSP_MAX_QUEUE_SIZE)", n))
	}
	return err
}

func (e *ExecSpans) run() {
	timer := time.NewTimer(e.delay)
	defer timer.Stop()
	var spare []ExecRecord
	for {
		var reply chan error
		select {
		case <-e.done:
			return
		case <-timer.C:
		case <-e.kick:
		case reply = <-e.flushes:
		}
		e.mu.Lock()
		batch := e.queue
		e.queue = spare[:0]
		if cap(e.queue) == 0 {
			e.queue = make([]ExecRecord, 0, e.maxBatch)
		}
		e.mu.Unlock()
		var err error
		for rest := batch; len(rest) > 0; {
			body, n := e.encoder.encode(rest[:min(len(rest), e.maxBatch)], maxExportBytes)
			if xerr := e.sender.send(body); xerr != nil {
				otel.Handle(xerr)
				err = xerr
			}
			rest = rest[n:]
		}
		// Reused for the next batch, without the strings it holds.
		clear(batch)
		spare = batch[:0]
		if reply != nil {
			reply <- err
		}
		timer.Reset(e.delay)
	}
}

// Keys of the per-execution attributes ExecRecord carries.
const (
	attrJobID       = attribute.Key("runfleet.job.id")
	attrTaskID      = attribute.Key("runfleet.task.id")
	attrAttempt     = attribute.Key("runfleet.task.attempt")
	attrDestination = attribute.Key("messaging.destination.name")
	attrMessageID   = attribute.Key("messaging.message.id")
)

// samplerFromEnv is the sampler OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG name, as the SDK reads them; given to the
// provider too, so that both decide alike.
func samplerFromEnv() sdktrace.Sampler {
	ratio := 1.0
	if f, err := strconv.ParseFloat(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG")), 64); err == nil && f >= 0 && f <= 1 {
		ratio = f
	}
	switch strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER"))) {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio)
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
	}
	return defaultSampler
}

// defaultSampler is the SDK's default, which OTEL_TRACES_SAMPLER unset or
// "parentbased_always_on" gives.
var defaultSampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
