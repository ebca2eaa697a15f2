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
	e := &execution{inputs: r.client.inputs, cluster: r.cluster, info: CurrentTaskInfo{
		JobID: c.JobID, TaskID: c.Seq, Attempt: c.Attempt, Cluster: r.cluster, RunnerID: r.id, Release: r.release,
		Identifier: x.Task}}
	release, err := r.holdStoredInput(workCtx, c.Input)
	if err != nil {
		return outcome{claim: c, err: fmt.Errorf("interrupted: the runner stopped while the task waited for room for its stored input (%w)", err), handBack: true}
	}
	defer release()
	if err := r.remoteInput(workCtx, c, &x); err != nil {
		var infra *runnerError
		// Redis or the store, not the task: as for the job cache below.
		out := outcome{claim: c, err: err, handBack: workCtx.Err() != nil || errors.Is(err, errPayloadStoreUse) || errors.As(err, &infra)}
		r.taskLog(c).Warn("task input unavailable", slog.Any("error", err))
		return out
	}
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
	subs, err := r.remoteSubtasks(workCtx, c.JobID, res.Subtasks)
	if err != nil {
		return r.outcomeOf(workCtx, c, e, fmt.Errorf("worker returned an invalid subtask: %w", err))
	}
	e.subtasks = subs
	return r.outcomeOf(workCtx, c, e, nil)
}

// errPayloadStoreUse marks a failure to record a job's use of the payload
// store: a Redis failure, so the task is handed back, not failed.
var errPayloadStoreUse = errors.New("recording the job's payload store")

// remoteInput passes a stored input to the worker by reference, with the
// store it is in, and lets the worker upload large subtask inputs to the
// same store, recording the job's use of it first.
func (r *Runner) remoteInput(ctx context.Context, c queue.Claimed, x *protocol.Execute) error {
	ref, stored, err := queue.ParsePayloadRef(c.Input)
	if err != nil {
		return fmt.Errorf("input of task %s: %w", c.Task, err)
	}
	st := r.client.inputs.store
	if stored {
		if st == nil {
			_, err := r.client.inputs.resolve(ctx, c.JobID, c.Input) // the error that names the fix
			return fmt.Errorf("input of task %s: %w", c.Task, err)
		}
		// Checked here so that a store the runner cannot reach hands the
		// task back (the worker's failures fail it); the worker checks
		// the content.
		switch ok, err := st.store.Exists(ctx, payloadObject(c.JobID, ref.SHA256)); {
		case err != nil:
			return &runnerError{fmt.Errorf("input of task %s: check %s: %w", c.Task, describeRef(ref), err)}
		case !ok:
			return fmt.Errorf("input of task %s: %w: %s is not in the payload store %s; the task was not run",
				c.Task, ErrInputPayloadMissing, describeRef(ref), redactURL(st.url))
		}
		x.Input, x.InputPayload = oldWorkerInput(ref), wirePayloadRef(ref)
	}
	x.InlineInput, x.MaxInput = r.client.inputs.inline, r.client.inputs.max
	if st != nil {
		if err := st.recordUse(ctx, c.JobID); err != nil {
			return fmt.Errorf("%w: %w", errPayloadStoreUse, err)
		}
		x.Payloads = st.url
	}
	return nil
}

// remoteSubtasks checks what a worker submitted as strictly as
// SubmitSubtasks checks a local task: a worker may be written in any
// language.
func (r *Runner) remoteSubtasks(ctx context.Context, job string, in []protocol.Subtask) ([]queue.SubtaskSpec, error) {
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
		input, err := r.remoteSubtaskInput(ctx, job, s)
		if err != nil {
			return nil, fmt.Errorf("subtask %d (%s): %w", i, id, err)
		}
		deps := slices.Clone(s.Deps)
		for _, d := range deps {
			if d < 0 || d >= i {
				return nil, fmt.Errorf("subtask %d: dependency on subtask %d; only earlier subtasks of the same result can be dependencies", i, d)
			}
		}
		slices.Sort(deps)
		out[i] = queue.SubtaskSpec{Task: id, Cluster: cluster, Input: input, MaxRetries: s.MaxRetries,
			Optional: s.Optional, Deps: slices.Compact(deps)}
	}
	return out, nil
}

// remoteSubtaskInput is a worker's subtask input as stored: an inline JSON
// object within the inline limit, or a reference to an input the worker
// uploaded to this runner's payload store. The reference is not fetched:
// the runner that claims the subtask checks it.
func (r *Runner) remoteSubtaskInput(ctx context.Context, job string, s protocol.Subtask) ([]byte, error) {
	p := r.client.inputs
	if s.InputPayload != nil {
		ref := queue.PayloadRef{SHA256: s.InputPayload.SHA256, Bytes: s.InputPayload.Bytes}
		switch {
		case len(s.Input) > 0 && string(s.Input) != "null":
			return nil, errors.New("both input and input_payload are set")
		case p.store == nil:
			return nil, errors.New("input_payload is set but this runner has no payload store")
		case !queue.IsSHA256Hex(ref.SHA256) || ref.Bytes < 0:
			return nil, fmt.Errorf("input_payload %+v is not a lower-case hex SHA-256 and a size", *s.InputPayload)
		case ref.Bytes > int64(p.max):
			return nil, p.tooLarge("stored input", int(min(ref.Bytes, int64(p.max)+1)))
		}
		return []byte(ref.String()), nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(s.Input, &obj); err != nil || obj == nil {
		return nil, errors.New("input is not a JSON object")
	}
	// A worker that predates stored inputs sends large ones inline.
	return p.keepForJob(ctx, job, "input", s.Input)
}
