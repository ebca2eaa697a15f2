package workflows

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"slices"
	"time"

	"github.com/runfleet/runfleet/queue"
)

// outcome is what an executor hands the completer.
type outcome struct {
	claim    queue.Claimed
	exec     *execution
	err      error
	handBack bool
	lost     bool // the process running it died: re-queue, counting a loss
	done     *queue.Completion
	// dev is the execution's device (nil without a pool), kept by the runner
	// until the result is committed; devGone, when set, is closed once the
	// worker an abandoned execution may still run on is gone: the device
	// goes back to the pool only then.
	dev     []Device
	devGone <-chan struct{}
	// m is the task's metrics (nil without); took its execution time,
	// from start: set by the executor, or already by the span record that
	// dated the execution's end (taskTracing.end), one clock read fewer.
	m     *taskMetrics
	took  time.Duration
	start time.Time
}

// execute runs one claimed task on devs (nil without a device pool), started
// at start, and returns what to commit; in its span when the runner traces
// (tracing.go). The span is begun and ended here, not in a wrapper: every
// frame counts on an executor's stack, which is copied to grow again after
// each collection that shrank it, and a wrapper holding a claim, a span
// and an outcome pushed traced executions over that edge.
func (r *Runner) execute(workCtx context.Context, c queue.Claimed, devs []Device, start time.Time) (out outcome) {
	var traced *execSpan
	if r.tracing != nil {
		var span execSpan
		workCtx = r.tracing.start(workCtx, &c, &span, start)
		defer r.tracing.end(&span, &c, &out)
		traced = &span
	}
	r.noteJob(c.JobID)
	reg, ok := r.reg.lookup(c.Task)
	if !ok {
		return outcome{claim: c, err: fmt.Errorf("runner %s has no task registered that can run %s", r.id, c.Task)}
	}
	if reg.m == nil {
		return r.executeAs(workCtx, reg, c, devs, traced)
	}
	reg.m.started(c, start)
	out = r.executeAs(workCtx, reg, c, devs, traced)
	out.m = reg.m
	return out
}

// executeAs runs c as reg. span is its span when traced (nil otherwise);
// with an SDK span (no span records) workCtx carries the span instead.
func (r *Runner) executeAs(workCtx context.Context, reg registration, c queue.Claimed, devs []Device, span *execSpan) outcome {
	out := outcome{claim: c}
	if r.remote != nil {
		return r.executeRemote(span.inContext(workCtx), c, devs)
	}
	release, err := r.holdStoredInput(workCtx, c.Input)
	if err != nil {
		out.err, out.handBack = fmt.Errorf("interrupted: the runner stopped while the task waited for room for its stored input (%w)", err), true
		return out
	}
	defer release()
	input, err := r.client.inputs.resolve(workCtx, c.JobID, c.Input)
	if err != nil {
		var infra *runnerError
		out.err = fmt.Errorf("input of task %s: %w", c.Task, err)
		out.handBack = workCtx.Err() != nil || errors.As(err, &infra)
		r.taskLog(c).Error("task input unavailable", slog.Any("error", out.err), slog.Bool("handed_back", out.handBack))
		return out
	}
	ptr := reflect.New(reg.typ)
	if err := decodeInput(input, ptr.Interface()); err != nil {
		out.err = fmt.Errorf("decode input of task %s: %w", c.Task, err)
		r.taskLog(c).Error("task input does not decode", slog.Any("error", out.err))
		return out
	}
	e := &execution{inputs: r.client.inputs, cluster: r.cluster, info: CurrentTaskInfo{
		JobID: c.JobID, TaskID: c.Seq, Attempt: c.Attempt, Cluster: r.cluster, RunnerID: r.id,
		Identifier: c.Task.TaskIdentifier(), Devices: devs}, cache: r.client.cache}
	if tl := r.taskLogs.Load(); tl != nil {
		e.logOut = tl
	}
	err = runTask(newExecContext(workCtx, e, span), ptr.Interface().(Task))
	if err == nil {
		err = e.err
	}
	return r.outcomeOf(workCtx, c, e, err)
}

// taskLog is the logger for one execution. Built only when something is
// logged: most executions log nothing.
func (r *Runner) taskLog(c queue.Claimed) *slog.Logger {
	return r.logger.With(slog.String("job_id", c.JobID), slog.Int64("task_id", c.Seq),
		slog.Int("attempt", c.Attempt), slog.String("task", c.Task.String()))
}

// outcomeOf turns a finished execution into what to commit: checks its
// subtasks and stages them, or records why it failed.
func (r *Runner) outcomeOf(workCtx context.Context, c queue.Claimed, e *execution, err error) outcome {
	out := outcome{claim: c, exec: e}
	if err == nil {
		err = r.checkSubtaskClusters(workCtx, e.subtasks)
	}
	var infra *runnerError
	if errors.As(err, &infra) {
		// The task did nothing wrong: the runner could not reach Redis to
		// check its subtasks. Hand it back rather than count a failure.
		out.err, out.handBack = err, true
		r.taskLog(c).Warn("could not check the task's subtasks; handing it back", slog.Any("error", err))
		return out
	}
	if err != nil {
		out.err = err
		out.handBack = workCtx.Err() != nil
		if out.handBack {
			out.err = fmt.Errorf("interrupted: the runner stopped before the task finished, so it was handed back (%w)", err)
			r.taskLog(c).Warn("task interrupted by shutdown; handing it back", slog.Any("error", err))
		} else {
			r.taskLog(c).Warn("task failed", slog.Any("error", err))
		}
		return out
	}
	comp := &queue.Completion{JobID: c.JobID, Seq: c.Seq, Attempt: c.Attempt, Display: e.display,
		Progress: e.progressJSON(), Subtasks: e.subtasks}
	if err := r.client.q.Stage(workCtx, r.id, comp); err != nil {
		if errors.Is(err, queue.ErrLost) {
			r.taskLog(c).Warn("task was taken from this runner before it finished; its result is dropped")
		}
		out.err, out.handBack = err, true
		return out
	}
	out.done = comp
	return out
}

// runnerError is a failure of the runner's own (Redis) work around an
// execution, not of the task: such executions are handed back, not failed.
type runnerError struct{ err error }

func (e *runnerError) Error() string { return "runner: " + e.err.Error() }
func (e *runnerError) Unwrap() error { return e.err }

// decodeInput decodes a task's JSON input strictly: unknown fields are an
// error, so a typo in a submitted input fails loudly instead of running the
// task with a zero value. An empty object needs no decoder.
func decodeInput(input []byte, into any) error {
	if string(input) == "{}" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("input has data after the JSON object")
	}
	return nil
}

// runTask calls Execute, turning a panic into a *PanicError.
func runTask(ctx context.Context, t Task) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: fmt.Sprint(p), Stack: string(debug.Stack())}
		}
	}()
	return t.Execute(ctx)
}

// PanicError is the failure of an execution that panicked. Its message is
// the panic's value; the stack is kept apart, with the attempt (runfleet
// task get), so task lists stay readable.
type PanicError struct {
	Value string
	Stack string
}

func (e *PanicError) Error() string { return "task panicked: " + e.Value }

// panicStack is the stack of a panic that err records, "" for other errors.
func panicStack(err error) string {
	if pe, ok := errors.AsType[*PanicError](err); ok {
		return pe.Stack
	}
	return ""
}

func (r *Runner) checkSubtaskClusters(ctx context.Context, subs []queue.SubtaskSpec) error {
	var unknown []string
	for _, s := range subs {
		if _, ok := r.knownClusters.Load(s.Cluster); !ok && !slices.Contains(unknown, s.Cluster) {
			unknown = append(unknown, s.Cluster)
		}
	}
	if len(unknown) > 0 {
		missing, err := r.client.q.MissingClusters(ctx, unknown)
		if err != nil {
			return &runnerError{err}
		}
		if len(missing) > 0 {
			return fmt.Errorf("subtask submitted to unknown cluster %q: %w", missing[0], ErrClusterNotFound)
		}
		for _, s := range unknown {
			r.knownClusters.Store(s, struct{}{})
		}
	}
	return r.checkSubtaskTasks(ctx, subs)
}

// checkSubtaskTasks refuses subtasks no runner of their cluster has
// registered a compatible version of: they would stay queued forever.
// Registrations are cached per cluster and read again on a miss.
func (r *Runner) checkSubtaskTasks(ctx context.Context, subs []queue.SubtaskSpec) error {
	type want struct {
		cluster string
		id      queue.Identifier
	}
	var checked []want
	for _, s := range subs {
		w := want{s.Cluster, s.Task}
		if slices.Contains(checked, w) {
			continue
		}
		checked = append(checked, w)
		if r.runnableCached(s.Cluster, s.Task) {
			continue
		}
		known, err := r.client.q.RegisteredIdentifiers(ctx, s.Cluster)
		if err != nil {
			return &runnerError{err}
		}
		r.registered.Store(s.Cluster, known)
		if err := runnable(known, s.Task, s.Cluster); err != nil {
			return fmt.Errorf("submit subtask: %w", err)
		}
	}
	return nil
}

func (r *Runner) runnableCached(cluster string, id queue.Identifier) bool {
	v, ok := r.registered.Load(cluster)
	if !ok {
		return false
	}
	for _, k := range v.([]queue.Identifier) {
		if k.CanRun(id) {
			return true
		}
	}
	return false
}
