package workflows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/rftype"
	"github.com/runfleet/runfleet/workflows"
)

func TestDescribeMode(t *testing.T) {
	var out, errOut bytes.Buffer
	code := workflows.ServeMode(protocol.ModeDescribe, []workflows.Task{&Step{}, &WhoAmI{}}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	var d protocol.Describe
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&d))
	require.Equal(t, protocol.Describe{Protocol: 1, Tasks: []rftype.TaskIdentifier{{Name: "Step", Version: "v1.0"}, {Name: "WhoAmI", Version: "v1.2"}}}, d)

	errOut.Reset()
	require.Equal(t, 2, workflows.ServeMode("serve", []workflows.Task{&Step{}}, &out, &errOut))
	require.Contains(t, errOut.String(), `unknown RUNFLEET_MODE="serve"`)

	errOut.Reset()
	require.Equal(t, 1, workflows.ServeMode(protocol.ModeDescribe, []workflows.Task{&Step{}, &Step{}}, &out, &errOut))
	require.Contains(t, errOut.String(), "registered twice")
}

// pipeWorker starts the SDK's worker side in this process, connected to a
// protocol.Host over pipes: the same conversation runnerd has with a worker
// process.
func pipeWorker(t *testing.T, tasks ...workflows.Task) *protocol.Host {
	t.Helper()
	toWorker, fromHost := io.Pipe()
	toHost, fromWorker := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := workflows.ServeWorker(context.Background(), tasks, toWorker, fromWorker)
		_ = fromWorker.CloseWithError(io.EOF)
		done <- err
	}()
	h, hello, err := protocol.NewHost(toHost, fromHost, 5*time.Second)
	require.NoError(t, err)
	require.Len(t, hello.Tasks, len(tasks))
	t.Cleanup(func() {
		_ = h.Close()
		select {
		case err := <-done:
			require.NoError(t, err, "worker ends cleanly when its input closes")
		case <-time.After(10 * time.Second):
			t.Error("worker did not stop after its input closed")
		}
	})
	return h
}

// hostExec adapts a protocol.Host to workflows.RemoteExecutor, optionally
// pretending the worker crashed for the first crashes calls.
type hostExec struct {
	h       *protocol.Host
	crashes atomic.Int32
	calls   atomic.Int32
}

func (e *hostExec) Execute(ctx context.Context, x protocol.Execute) (protocol.Result, error) {
	e.calls.Add(1)
	if e.crashes.Add(-1) >= 0 {
		return protocol.Result{}, fmt.Errorf("%w: exit status 2 (simulated crash)", protocol.ErrWorkerGone)
	}
	return e.h.Execute(ctx, x)
}

// remoteRunner is a runner of the bundle's cluster serving tasks through
// exec.
func remoteRunner(t *testing.T, b *testBundle, tasks []workflows.Task, exec workflows.RemoteExecutor) *workflows.Runner {
	t.Helper()
	ids := make([]workflows.TaskIdentifier, len(tasks))
	for i, task := range tasks {
		ids[i] = workflows.IdentifierOf(task)
	}
	r, err := b.client.NewRemoteRunner(b.ctx, b.cluster, ids, exec, "rel-test")
	require.NoError(t, err)
	return r
}

// A remote runner runs a whole job through the worker protocol: subtasks
// with dependencies, progress, display, CurrentTask and a failing optional
// subtask all arrive as they do for a direct runner.
func TestRemoteRunnerRunsJob(t *testing.T) {
	b := setup(t)
	tasks := append(testTasks(), benchtask.All()...)
	exec := &hostExec{h: pipeWorker(t, tasks...)}
	r := remoteRunner(t, b, tasks, exec)

	key := t.Name()
	root := &Step{Key: key, Label: "root", Children: []StepChild{
		{Step: Step{Key: key, Label: "a"}},
		{Step: Step{Key: key, Label: "b", Children: []StepChild{{Step: Step{Key: key, Label: "b1"}}}}},
		{Step: Step{Key: key, Label: "c"}, Deps: []int{0, 1}},
		{Step: Step{Key: key, Label: "opt"}, Optional: true, Fail: true},
	}}
	j := b.submit(t, root)
	p := b.submit(t, &Progressing{})
	require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(4)))

	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	ts := b.tasksByDisplay(t, j.ID)
	for _, l := range []string{"root", "a", "b", "b1", "c"} {
		require.Equal(t, workflows.TaskComputed, ts[l].State, l)
		require.Equal(t, 1, b.rec.count(l), "%s ran once", l)
	}
	b.rec.requireBefore(t, "end b1", "start c")
	pj := b.job(t, p.ID)
	require.Equal(t, workflows.JobCompleted, pj.State)
	require.Equal(t, []workflows.ProgressInfo{{Label: "items", Total: 10, Done: 10}}, pj.Progress)
}

// A worker that dies under a task re-queues it as a lost runner, not as a
// failure; the 11th loss fails the task with a message that says so.
func TestRemoteRunnerWorkerCrash(t *testing.T) {
	b := setup(t)
	tasks := append(testTasks(), benchtask.All()...)
	exec := &hostExec{h: pipeWorker(t, tasks...)}
	exec.crashes.Store(2)
	r := remoteRunner(t, b, tasks, exec)
	j := b.submit(t, &benchtask.Noop{})
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, 2, ts[0].Losses)
	require.Equal(t, 0, ts[0].Failures, "a crash is not the task's failure")
	require.Equal(t, int32(3), exec.calls.Load())

	exec.crashes.Store(100)
	j = b.submit(t, &benchtask.Noop{})
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, workflows.JobFailed, b.job(t, j.ID).State)
	ts, err = b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.TaskFailed, ts[0].State)
	require.Contains(t, ts[0].Error, "simulated crash")
	require.Contains(t, ts[0].Error, "lost 11 times")
}

// Stopping a remote runner cancels the worker's execution and hands the task
// back without counting a failure.
func TestRemoteRunnerStopHandsBack(t *testing.T) {
	b := setup(t)
	tasks := append(testTasks(), benchtask.All()...)
	exec := &hostExec{h: pipeWorker(t, tasks...)}
	r := remoteRunner(t, b, tasks, exec)
	key := t.Name()
	j := b.submit(t, &Step{Key: key, Label: "waits", WaitFor: "never"})
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r.RunForever(ctx, workflows.WithGracePeriod(50*time.Millisecond)) }()
	require.Eventually(t, func() bool { return b.rec.count("waits") == 1 }, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.TaskQueued, ts[0].State)
	require.Equal(t, 0, ts[0].Failures)
	require.Equal(t, 0, ts[0].Losses)
}

// What a worker returns is checked like a local submission.
func TestRemoteRunnerRefusesBadSubtasks(t *testing.T) {
	b := setup(t)
	tasks := []workflows.Task{&benchtask.Noop{}}
	bad := protocol.Result{Subtasks: []protocol.Subtask{{Task: rftype.TaskIdentifier{Name: "Noop", Version: "v1.0"}, Input: json.RawMessage(`{}`), Deps: []int{0}}}}
	r := remoteRunner(t, b, tasks, fixedResult(bad))
	j := b.submit(t, &benchtask.Noop{})
	require.NoError(t, r.RunAll(b.ctx))
	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.TaskFailed, ts[0].State)
	require.Contains(t, ts[0].Error, "subtask 0: dependency on subtask 0")
	require.Len(t, ts, 1, "nothing of the failed execution was committed")
}

type fixedResult protocol.Result

func (f fixedResult) Execute(_ context.Context, x protocol.Execute) (protocol.Result, error) {
	r := protocol.Result(f)
	r.ID = x.ID
	return r, nil
}

// Blob carries a large input.
type Blob struct {
	Data string `json:"data"`
}

func (*Blob) Execute(context.Context) error { return nil }

// BigResult submits N Blobs of Size bytes each.
type BigResult struct {
	N    int `json:"n"`
	Size int `json:"size"`
}

func (b *BigResult) Execute(ctx context.Context) error {
	tasks := make([]workflows.Task, b.N)
	for i := range tasks {
		tasks[i] = &Blob{Data: strings.Repeat("x", b.Size)}
	}
	_, err := workflows.SubmitSubtasks(ctx, tasks)
	return err
}

// A result too big for one protocol frame fails that execution with a
// message saying why; the worker keeps serving.
func TestRemoteRunnerResultOverFrameLimit(t *testing.T) {
	b := setup(t)
	tasks := []workflows.Task{&BigResult{}, &Blob{}, &benchtask.Noop{}}
	exec := &hostExec{h: pipeWorker(t, tasks...)}
	r := remoteRunner(t, b, tasks, exec)
	big := b.submit(t, &BigResult{N: 1200, Size: 60_000}) // inline inputs, 72 MB in all
	small := b.submit(t, &BigResult{N: 3, Size: 10})
	require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(2)))
	ts, err := b.client.Jobs().Tasks(b.ctx, big.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.TaskFailed, ts[0].State)
	require.Contains(t, ts[0].Error, "over the worker protocol's 64 MiB frame limit")
	require.Len(t, ts, 1, "none of its subtasks were committed")
	require.Equal(t, workflows.JobCompleted, b.job(t, small.ID).State, "the worker still serves")
}

// notDelivered fails the first calls as if no worker was up.
type notDelivered struct {
	hostExec
	misses atomic.Int32
}

func (n *notDelivered) Execute(ctx context.Context, x protocol.Execute) (protocol.Result, error) {
	if n.misses.Add(-1) >= 0 {
		return protocol.Result{}, fmt.Errorf("%w: the worker is restarting", protocol.ErrNotDelivered)
	}
	return n.hostExec.Execute(ctx, x)
}

// An execution that never reached a worker is handed back: no retry and no
// loss counted.
func TestRemoteRunnerHandsBackUndelivered(t *testing.T) {
	b := setup(t)
	tasks := []workflows.Task{&benchtask.Noop{}}
	exec := &notDelivered{hostExec: hostExec{h: pipeWorker(t, tasks...)}}
	exec.misses.Store(3)
	r := remoteRunner(t, b, tasks, exec)
	j := b.submit(t, &benchtask.Noop{})
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, 0, ts[0].Losses)
	require.Equal(t, 0, ts[0].Failures)
	require.Equal(t, 4, ts[0].Attempts)
}

// gated is an executor whose Ready channel the test controls.
type gated struct {
	hostExec
	ready chan struct{}
}

func (g *gated) Ready() <-chan struct{} { return g.ready }

// A runner claims nothing while its executor says it is not ready: the
// tasks stay queued for other runners.
func TestRemoteRunnerWaitsForReadyExecutor(t *testing.T) {
	b := setup(t)
	tasks := []workflows.Task{&benchtask.Noop{}}
	exec := &gated{hostExec: hostExec{h: pipeWorker(t, tasks...)}, ready: make(chan struct{})}
	r := remoteRunner(t, b, tasks, exec)
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r.RunForever(ctx) }()
	j := b.submit(t, &benchtask.Noop{})
	time.Sleep(300 * time.Millisecond) // a window in which a claim would show
	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.TaskQueued, ts[0].State)
	require.Zero(t, exec.calls.Load())
	close(exec.ready)
	require.Eventually(t, func() bool { return b.job(t, j.ID).State == workflows.JobCompleted }, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}
