package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/rftype"
)

// execution is what a running task's context carries: who it is and what it
// has buffered (subtasks, progress, display) to commit with its result.
type execution struct {
	info    CurrentTaskInfo
	cluster string
	inputs  inputPolicy // bounds subtask inputs and stores large ones (payload.go)

	mu       sync.Mutex
	subtasks []queue.SubtaskSpec
	display  string
	progress map[string]*[2]int64
	err      error        // first invalid subtask submission; fails the execution
	cache    cacheBackend // the job cache (jobcache.go); nil when the runner has none

	// Task logs (logs.go). logOut is where records go (nil in a release
	// worker whose runner takes none); the rest is made or counted only
	// once the task logs, under mu.
	logOut    logOutput
	wireID    uint64            // the execution's id in the worker protocol, in a release worker
	logLevel  slog.Level        // the least level its release runner takes, in a release worker
	logger    *slog.Logger      // made by the first Logger call
	logSpan   trace.SpanContext // the span logger was made in
	logEcho   slog.Handler      // the runner's handler with the execution's attributes
	logBytes  int               // stored so far, against the per-task cap
	logCapped bool              // the per-task cap was reached

	// span is the execution's span as its context hands it out, when
	// traced by a runner that writes span records (newExecContext).
	span taskSpan
}

type execKey struct{}

// execContext is a local execution's context. It answers for the execution
// (execKey) and, when traced, for its span, as trace.ContextWithSpanContext
// would: one allocation for what context.WithValue and
// ContextWithSpanContext take three for, on every execution.
type execContext struct {
	context.Context
	e *execution
}

// newExecContext is the context e runs in, under parent. span is the
// execution's span when traced (nil otherwise); with an SDK span (no span
// records) its context is empty and parent carries the span instead.
func newExecContext(parent context.Context, e *execution, span *execSpan) context.Context {
	if span != nil && span.sc.IsValid() {
		if spanKey == nil {
			parent = trace.ContextWithSpanContext(parent, span.sc)
		} else {
			e.span.sc = span.sc
		}
	}
	return &execContext{Context: parent, e: e}
}

func (c *execContext) Value(key any) any {
	switch key {
	case execKey{}:
		return c.e
	case spanKey:
		if c.e.span.sc.IsValid() {
			return &c.e.span
		}
	}
	return c.Context.Value(key)
}

// taskSpan is a traced execution's span as task code sees it through its
// context: the span context, not recording, as with the span
// trace.ContextWithSpanContext makes (its TracerProvider is a no-op one).
// The runner writes the span itself when the execution ends (tracing.go).
// Written out rather than embedding noop.Span, which would carry a second,
// unused span context in every execution.
type taskSpan struct {
	embedded.Span
	sc trace.SpanContext
}

func (s *taskSpan) SpanContext() trace.SpanContext        { return s.sc }
func (*taskSpan) IsRecording() bool                       { return false }
func (*taskSpan) SetStatus(codes.Code, string)            {}
func (*taskSpan) SetAttributes(...attribute.KeyValue)     {}
func (*taskSpan) End(...trace.SpanEndOption)              {}
func (*taskSpan) RecordError(error, ...trace.EventOption) {}
func (*taskSpan) AddEvent(string, ...trace.EventOption)   {}
func (*taskSpan) AddLink(trace.Link)                      {}
func (*taskSpan) SetName(string)                          {}
func (*taskSpan) TracerProvider() trace.TracerProvider    { return noop.TracerProvider{} }

// spanKey is the context key OpenTelemetry keeps a context's span under,
// or nil if it could not be learnt. OpenTelemetry does not export it, but
// trace.SpanFromContext asks a context for it, and a context can note what
// it is asked. learnSpanKey checks that answering that key is what
// SpanFromContext reads; if OpenTelemetry ever reads spans otherwise,
// newExecContext falls back to ContextWithSpanContext.
var spanKey = learnSpanKey()

func learnSpanKey() any {
	probe := &keyProbe{Context: context.Background()}
	trace.SpanFromContext(probe)
	key := probe.asked
	want := &taskSpan{}
	probe.answer = want
	if key == nil || trace.SpanFromContext(probe) != trace.Span(want) || probe.asked != key {
		return nil
	}
	return key
}

// keyProbe is a context that notes the last key it was asked for and
// answers it with answer.
type keyProbe struct {
	context.Context
	asked, answer any
}

func (p *keyProbe) Value(key any) any {
	p.asked = key
	return p.answer
}

func executionFrom(ctx context.Context) *execution {
	e, _ := ctx.Value(execKey{}).(*execution)
	return e
}

// CurrentTaskInfo describes the execution a context belongs to.
type CurrentTaskInfo struct {
	JobID      string
	TaskID     int64
	Attempt    int // 1 for the first execution
	Identifier TaskIdentifier
	Cluster    string
	RunnerID   string
	// Release is the release id the task runs from when a release runner
	// (runnerd) runs it; empty in a direct runner.
	Release string
	// Devices are the GPUs this execution may use, exactly one when the
	// runner has a device pool (runner start --gpus, WithGPUs, WithDevices),
	// else none. No other execution of the runner's process uses them
	// meanwhile. Give what the task starts CUDA_VISIBLE_DEVICES set to
	// CUDAVisibleDevices(Devices), so it sees only its own device. Do not
	// modify the slice.
	Devices []Device
}

// CurrentTask returns the running task's identity; ok is false outside Execute.
func CurrentTask(ctx context.Context) (CurrentTaskInfo, bool) {
	e := executionFrom(ctx)
	if e == nil {
		return CurrentTaskInfo{}, false
	}
	return e.info, true
}

// ErrNotInTask is returned by the in-task helpers when ctx is not a task's.
var ErrNotInTask = errors.New("not called from a running task's Execute context")

// FutureTask refers to a subtask submitted during the current execution, for
// use in WithDependencies.
type FutureTask struct {
	exec  *execution
	index int
}

// SubtaskOption configures SubmitSubtask.
type SubtaskOption func(*subtaskConfig)

type subtaskConfig struct {
	deps       []FutureTask
	cluster    string
	maxRetries int
	optional   bool
}

// WithDependencies makes the subtask wait until every given subtask is
// complete: computed, with its whole subtree complete. Only futures returned
// earlier in the same execution are allowed.
func WithDependencies(fs ...FutureTask) SubtaskOption {
	return func(c *subtaskConfig) { c.deps = append(c.deps, fs...) }
}

// WithCluster runs the subtask in another cluster. Default: the parent's.
func WithCluster(slug string) SubtaskOption { return func(c *subtaskConfig) { c.cluster = slug } }

// WithMaxRetries sets how often the subtask is retried after failing. Default 0.
func WithMaxRetries(n int) SubtaskOption { return func(c *subtaskConfig) { c.maxRetries = n } }

// Optional lets the subtask fail without failing the job: it becomes
// failed_optional, its not-yet-run subtree is skipped, and the job goes on.
func Optional() SubtaskOption { return func(c *subtaskConfig) { c.optional = true } }

// SubmitSubtask buffers a subtask of the running task. Subtasks are committed
// atomically when Execute returns nil; a failing execution commits none.
func SubmitSubtask(ctx context.Context, task Task, opts ...SubtaskOption) (FutureTask, error) {
	fs, err := SubmitSubtasks(ctx, []Task{task}, opts...)
	if err != nil {
		return FutureTask{}, err
	}
	return fs[0], nil
}

// SubmitSubtasks buffers several subtasks sharing the same options.
func SubmitSubtasks(ctx context.Context, tasks []Task, opts ...SubtaskOption) ([]FutureTask, error) {
	e := executionFrom(ctx)
	if e == nil {
		return nil, fmt.Errorf("submit subtask: %w", ErrNotInTask)
	}
	cfg := subtaskConfig{cluster: e.cluster}
	for _, o := range opts {
		o(&cfg)
	}
	err := e.addSubtasks(ctx, tasks, cfg)
	if err != nil {
		// Remember it: a task that ignores the error must not commit a
		// partial set as if it had succeeded.
		e.mu.Lock()
		if e.err == nil {
			e.err = err
		}
		e.mu.Unlock()
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]FutureTask, len(tasks))
	first := len(e.subtasks) - len(tasks)
	for i := range tasks {
		out[i] = FutureTask{exec: e, index: first + i}
	}
	return out, nil
}

func (e *execution) addSubtasks(ctx context.Context, tasks []Task, cfg subtaskConfig) error {
	if err := rftype.ValidateSlug("cluster", cfg.cluster); err != nil {
		return fmt.Errorf("submit subtask: %w", err)
	}
	if cfg.maxRetries < 0 {
		return fmt.Errorf("submit subtask: max retries %d is negative", cfg.maxRetries)
	}
	e.mu.Lock()
	n := len(e.subtasks)
	e.mu.Unlock()
	deps := make([]int, 0, len(cfg.deps))
	for _, f := range cfg.deps {
		if f.exec != e {
			return errors.New("submit subtask: dependency is a future of another task's execution; only subtasks submitted earlier by the same parent execution can be dependencies")
		}
		if f.index >= n {
			return fmt.Errorf("submit subtask: dependency on subtask %d, which was not submitted yet", f.index)
		}
		deps = append(deps, f.index)
	}
	slices.Sort(deps)
	deps = slices.Compact(deps)
	specs := make([]queue.SubtaskSpec, len(tasks))
	for i, t := range tasks {
		if v := reflect.ValueOf(t); v.Kind() == reflect.Pointer && v.IsNil() {
			// Refused before encodeInput, which may call a value method
			// through the nil pointer.
			return markErr(ErrInvalidInput, "submit subtask %d: input must be a JSON object: got null (a nil %T)", i, t)
		}
		id, input, err := encodeInput(t)
		if err != nil {
			return fmt.Errorf("submit subtask: %w", err)
		}
		if input[0] != '{' { // json.Marshal output has no leading space
			return markErr(ErrInvalidInput, "submit subtask %d (%s): input must be a JSON object, not %s", i, id, input)
		}
		if err := e.inputs.check(fmt.Sprintf("submit subtask %d (%s)", i, id), len(input)); err != nil {
			return err
		}
		specs[i] = queue.SubtaskSpec{Task: id, Cluster: cfg.cluster, Input: input,
			MaxRetries: cfg.maxRetries, Optional: cfg.optional, Deps: deps}
	}
	// Every input is checked before the first large one is uploaded.
	for i := range specs {
		in, err := e.inputs.keepForJob(ctx, e.info.JobID, fmt.Sprintf("submit subtask %d (%s)", i, specs[i].Task), specs[i].Input)
		if err != nil {
			return err
		}
		specs[i].Input = in
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.subtasks) != n {
		return errors.New("submit subtask: concurrent submissions from one execution; submit from one goroutine or use SubmitSubtasks")
	}
	e.subtasks = append(e.subtasks, specs...)
	return nil
}

// SetDisplay names the running task in listings (`runfleet job tasks`).
func SetDisplay(ctx context.Context, text string) {
	if e := executionFrom(ctx); e != nil {
		e.mu.Lock()
		e.display = text
		e.mu.Unlock()
	}
}

// ProgressIndicator counts units of work under one label of the job.
type ProgressIndicator struct {
	e     *execution
	label string
}

// Progress returns the job-wide progress counter named label. Counts of an
// execution are committed with its result, and only the last execution of a
// task counts, so retries never double-count.
func Progress(ctx context.Context, label string) ProgressIndicator {
	return ProgressIndicator{e: executionFrom(ctx), label: label}
}

// Add adds n units of work to the total.
func (p ProgressIndicator) Add(n int64) { p.bump(0, n) }

// Done marks n units of work as done.
func (p ProgressIndicator) Done(n int64) { p.bump(1, n) }

func (p ProgressIndicator) bump(i int, n int64) {
	if p.e == nil {
		return
	}
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	if p.e.progress == nil {
		p.e.progress = map[string]*[2]int64{}
	}
	c := p.e.progress[p.label]
	if c == nil {
		c = &[2]int64{}
		p.e.progress[p.label] = c
	}
	c[i] += n
}

// progressJSON encodes buffered progress as rf_complete expects it.
func (e *execution) progressJSON() []byte {
	if len(e.progress) == 0 {
		return nil
	}
	labels := make([]string, 0, len(e.progress))
	for l := range e.progress {
		labels = append(labels, l)
	}
	slices.SortFunc(labels, strings.Compare)
	rows := make([][3]any, len(labels))
	for i, l := range labels {
		c := e.progress[l]
		rows[i] = [3]any{l, c[0], c[1]}
	}
	b, _ := json.Marshal(rows)
	return b
}
