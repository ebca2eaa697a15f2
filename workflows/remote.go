package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/rftype"
)

// RemoteExecutor runs task executions in another process. The release
// runner (runnerd) implements it over the worker protocol; most programs
// want NewRunner instead.
type RemoteExecutor interface {
	// Execute runs one execution and returns the worker's result. It
	// returns an error only when the worker could not run the task or
	// answer: it crashed, exited or its pipe broke. The runner then queues
	// the task again, counting a lost runner, so a task that kills its
	// worker every time fails after its 11th loss; an error wrapping
	// protocol.ErrNotDelivered (the task never reached a worker) hands it
	// back without counting anything. When ctx ends (the runner
	// is stopping and the grace period is over) Execute should ask the
	// worker to cancel the task and return its result. An error of an
	// execution given up on while the worker may still run it should have
	// a Gone() <-chan struct{} method (as protocol.AbandonedError does),
	// closed once that worker is gone: the execution's device stays out of
	// the pool until then.
	Execute(ctx context.Context, x protocol.Execute) (protocol.Result, error)
}

// ReadyGate may be implemented by a RemoteExecutor that is sometimes unable
// to start executions, such as a worker process being restarted: while the
// channel Ready returns is open, the runner claims no tasks (they stay
// queued for other runners). Ready is called before every claim.
type ReadyGate interface {
	Ready() <-chan struct{}
}

// NewRemoteRunner returns a runner for cluster that claims tasks with the
// given identifiers and runs them with exec instead of in this process.
// release names what exec runs (a release id) in the runner's logs. The
// runner behaves like one from NewRunner in every other way: heartbeats,
// grace period, hand-back on stop.
func (c *Client) NewRemoteRunner(ctx context.Context, cluster string, tasks []TaskIdentifier, exec RemoteExecutor, release string) (*Runner, error) {
	if exec == nil {
		return nil, errors.New("new remote runner: executor is nil")
	}
	if len(tasks) == 0 {
		return nil, errors.New("new remote runner: no tasks to register")
	}
	reg := newEmptyRegistry()
	for _, t := range tasks {
		id, err := t.Parse()
		if err != nil {
			return nil, fmt.Errorf("new remote runner: %w", err)
		}
		if err := reg.add(id, nil); err != nil {
			return nil, fmt.Errorf("new remote runner: %w", err)
		}
	}
	return c.newRunner(ctx, cluster, reg, exec, release)
}

// executeRemote runs a claimed task with the runner's RemoteExecutor; the
// worker is told the execution's devices.
func (r *Runner) executeRemote(workCtx context.Context, c queue.Claimed, devs []Device) outcome {
	x := protocol.Execute{Type: protocol.TypeExecute, JobID: c.JobID, TaskID: c.Seq, Attempt: c.Attempt,
		Cluster: r.cluster, RunnerID: r.id, Release: r.release,
		Task: c.Task.TaskIdentifier(), Input: c.Input, Devices: devs, TraceParent: r.tracing.traceParent(workCtx)}
	e := &execution{maxInput: r.client.maxInput, cluster: r.cluster, info: CurrentTaskInfo{
		JobID: c.JobID, TaskID: c.Seq, Attempt: c.Attempt, Cluster: r.cluster, RunnerID: r.id, Release: r.release,
		Identifier: x.Task}}
	if tl := r.taskLogs.Load(); tl != nil && tl.wire != "" {
		// The worker's records go where a local execution's go.
		x.Logs, x.OnLog = tl.wire, tl.remoteLogs(e)
	}
	cache, err := r.cacheForExecute(workCtx, c.JobID)
	if err != nil {
		r.taskLog(c).Warn("job cache unavailable; handing the task back", slog.Any("error", err))
		return outcome{claim: c, err: err, handBack: true}
	}
	x.Cache = cache
	if cache == protocol.CacheViaRunner {
		x.OnCache = r.serveCache(workCtx, c.JobID)
	}
	res, err := r.remote.Execute(workCtx, x)
	if err != nil {
		out := outcome{claim: c, err: fmt.Errorf("worker process lost: %w", err)}
		var abandoned interface{ Gone() <-chan struct{} }
		if errors.As(err, &abandoned) {
			// The worker may still run the task on its device.
			out.devGone = abandoned.Gone()
		}
		if errors.Is(err, protocol.ErrNotDelivered) {
			// It never reached a worker, so it cannot have crashed one.
			out.handBack = true
			r.taskLog(c).Warn("no worker to run the task; handing it back", slog.Any("error", err))
			return out
		}
		if workCtx.Err() != nil {
			// Stopping: the worker went away with the runner. Nothing the
			// task did; hand it back like any interrupted task.
			out.handBack = true
			r.taskLog(c).Warn("worker went away during shutdown; handing the task back", slog.Any("error", err))
		} else {
			out.lost = true
			r.taskLog(c).Error("worker process lost while running the task; queueing it again", slog.Any("error", err))
		}
		return out
	}
	e.display = res.Display
	for _, p := range res.Progress {
		pi := ProgressIndicator{e: e, label: p.Label}
		pi.Add(p.Add)
		pi.Done(p.Done)
	}
	if res.Stack != "" {
		return r.outcomeOf(workCtx, c, e, &PanicError{Value: strings.TrimPrefix(res.Error, "task panicked: "), Stack: res.Stack})
	}
	if res.Error != "" {
		return r.outcomeOf(workCtx, c, e, errors.New(res.Error))
	}
	subs, err := r.remoteSubtasks(res.Subtasks)
	if err != nil {
		return r.outcomeOf(workCtx, c, e, fmt.Errorf("worker returned an invalid subtask: %w", err))
	}
	e.subtasks = subs
	return r.outcomeOf(workCtx, c, e, nil)
}

// remoteSubtasks checks what a worker submitted as strictly as
// SubmitSubtasks checks a local task: a worker may be written in any
// language.
func (r *Runner) remoteSubtasks(in []protocol.Subtask) ([]queue.SubtaskSpec, error) {
	out := make([]queue.SubtaskSpec, len(in))
	for i, s := range in {
		id, err := s.Task.Parse()
		if err != nil {
			return nil, fmt.Errorf("subtask %d: %w", i, err)
		}
		cluster := s.Cluster
		if cluster == "" {
			cluster = r.cluster
		}
		if err := rftype.ValidateSlug("cluster", cluster); err != nil {
			return nil, fmt.Errorf("subtask %d: %w", i, err)
		}
		if s.MaxRetries < 0 {
			return nil, fmt.Errorf("subtask %d: max retries %d is negative", i, s.MaxRetries)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(s.Input, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("subtask %d (%s): input is not a JSON object", i, id)
		}
		if lim := r.client.maxInput; lim > 0 && len(s.Input) > lim {
			return nil, fmt.Errorf("subtask %d: input of task %s is %d bytes, over the %d byte limit", i, id, len(s.Input), lim)
		}
		deps := slices.Clone(s.Deps)
		for _, d := range deps {
			if d < 0 || d >= i {
				return nil, fmt.Errorf("subtask %d: dependency on subtask %d; only earlier subtasks of the same result can be dependencies", i, d)
			}
		}
		slices.Sort(deps)
		out[i] = queue.SubtaskSpec{Task: id, Cluster: cluster, Input: s.Input, MaxRetries: s.MaxRetries,
			Optional: s.Optional, Deps: slices.Compact(deps)}
	}
	return out, nil
}
