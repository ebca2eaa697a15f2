package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/workflows"
)

func step(t *testing.T, label string, children ...StepChild) Step {
	return Step{Key: t.Name(), Label: label, Children: children}
}

func child(s Step, deps ...int) StepChild { return StepChild{Step: s, Deps: deps} }

func TestSingleTaskJobCompletes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	s := step(t, "root")
	j := b.submit(t, &s)
	require.Equal(t, workflows.JobSubmitted, j.State)
	require.Equal(t, int64(1), j.TaskCounts[workflows.TaskQueued])

	require.NoError(t, r.RunAll(b.ctx))

	j = b.job(t, j.ID)
	require.Equal(t, workflows.JobCompleted, j.State)
	require.Equal(t, int64(1), j.TaskCounts[workflows.TaskComputed])
	require.Equal(t, 1, b.rec.count("root"))
	require.False(t, j.FinishedAt.IsZero())
}

func TestChainDependenciesRunInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	s := step(t, "root", child(step(t, "a")), child(step(t, "b"), 0), child(step(t, "c"), 1))
	j := b.submit(t, &s)
	require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(4)))

	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	b.rec.requireBefore(t, "end a", "start b")
	b.rec.requireBefore(t, "end b", "start c")
}

func TestDiamondDependencies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	s := step(t, "root",
		child(step(t, "top")),
		child(Step{Key: t.Name(), Label: "left", SleepMS: 30}, 0),
		child(step(t, "right"), 0),
		child(step(t, "bottom"), 1, 2))
	j := b.submit(t, &s)
	require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(4)))

	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	b.rec.requireBefore(t, "end top", "start left")
	b.rec.requireBefore(t, "end top", "start right")
	b.rec.requireBefore(t, "end left", "start bottom")
	b.rec.requireBefore(t, "end right", "start bottom")
}

func TestCrossClusterDependency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.Clusters().Create(b.ctx, "gpu", "GPU hosts")
	require.NoError(t, err)
	cpu := b.runner(t, b.cluster)
	gpu := b.runner(t, "gpu")
	onGPU := StepChild{Step: Step{Key: t.Name(), Label: "train", SleepMS: 20}, Cluster: "gpu"}
	s := step(t, "root", onGPU, child(step(t, "report"), 0))
	j := b.submit(t, &s)

	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- gpu.RunForever(ctx) }()
	require.NoError(t, cpu.RunAll(b.ctx))
	// The CPU runner went idle while "train" ran on the GPU cluster: run it
	// again until the job is through.
	require.Eventually(t, func() bool {
		require.NoError(t, cpu.RunAll(b.ctx))
		return b.job(t, j.ID).State == workflows.JobCompleted
	}, 20*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	b.rec.requireBefore(t, "end train", "start report")
	tasks := b.tasksByDisplay(t, j.ID)
	require.Equal(t, "gpu", tasks["train"].Cluster)
	require.Equal(t, "main", tasks["report"].Cluster)
}

func TestDependentWaitsForWholeSubtree(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	// "parent" is computed at once but its slow child is not; "after"
	// depends on parent and must wait for the child too.
	parent := step(t, "parent", child(Step{Key: t.Name(), Label: "slow-child", SleepMS: 50}))
	s := step(t, "root", child(parent), child(step(t, "after"), 0))
	j := b.submit(t, &s)
	require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(4)))

	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	b.rec.requireBefore(t, "end slow-child", "start after")
}

func TestFailedExecutionCommitsNoSubtasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	// Attempts 1 and 2 buffer two subtasks each and fail: none may appear.
	s := Step{Key: t.Name(), Label: "root", FailAttempts: 2,
		Children: []StepChild{child(step(t, "kid-a")), child(step(t, "kid-b"))}}
	j := b.submit(t, &s, workflows.WithJobMaxRetries(3))
	require.NoError(t, r.RunAll(b.ctx))

	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, ts, 3, "root plus one set of two subtasks")
	require.Equal(t, 3, ts[0].Attempts)
	require.Equal(t, 3, b.rec.count("root"))
	require.Equal(t, 1, b.rec.count("kid-a"))
	require.Equal(t, 1, b.rec.count("kid-b"))
	j = b.job(t, j.ID)
	require.Equal(t, int64(3), j.TaskCounts[workflows.TaskComputed])
	require.Equal(t, int64(0), j.TaskCounts[workflows.TaskQueued])
}

func TestMaxRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)

	ok := b.submit(t, &benchtask.Flaky{FailTimes: 2}, workflows.WithJobMaxRetries(2))
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, workflows.JobCompleted, b.job(t, ok.ID).State)
	ts, err := b.client.Jobs().Tasks(b.ctx, ok.ID)
	require.NoError(t, err)
	require.Equal(t, 3, ts[0].Attempts)

	bad := b.submit(t, &benchtask.Flaky{FailTimes: 2}, workflows.WithJobMaxRetries(1))
	require.NoError(t, r.RunAll(b.ctx))
	j := b.job(t, bad.ID)
	require.Equal(t, workflows.JobFailed, j.State)
	ts, err = b.client.Jobs().Tasks(b.ctx, bad.ID)
	require.NoError(t, err)
	require.Equal(t, 2, ts[0].Attempts)
	require.Equal(t, workflows.TaskFailed, ts[0].State)
	require.Contains(t, ts[0].Error, "attempt 2 of 2 planned failures")
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// FailBeside is a root task for the job-failure test: it submits a failing
// task, a gate that waits for the job to fail, and dependents of the gate.
type FailBeside struct {
	Key string `json:"key"`
}

func (*FailBeside) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("FailBeside", "v1.0")
}
func (f *FailBeside) Execute(ctx context.Context) error {
	// failer fails only once gate is running, so gate is surely held.
	failer := Step{Key: f.Key, Label: "failer", WaitFor: "start gate", FailFlag: "always"}
	recorderFor(f.Key).setFlag("always", true)
	if _, err := workflows.SubmitSubtask(ctx, &failer); err != nil {
		return err
	}
	gate, err := workflows.SubmitSubtask(ctx, &Gate{Key: f.Key, Label: "gate", State: workflows.JobFailed})
	if err != nil {
		return err
	}
	for i := range 3 {
		s := Step{Key: f.Key, Label: fmt.Sprintf("after-%d", i)}
		if _, err := workflows.SubmitSubtask(ctx, &s, workflows.WithDependencies(gate)); err != nil {
			return err
		}
	}
	return nil
}

func TestJobFailureHoldsRemainingTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	shareClient(t, b.client)
	r, err := b.client.NewRunner(b.ctx, b.cluster, append(testTasks(), append(benchtask.All(), &FailBeside{})...)...)
	require.NoError(t, err)
	j := b.submit(t, &FailBeside{Key: t.Name()})
	require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(2)))

	j = b.job(t, j.ID)
	require.Equal(t, workflows.JobFailed, j.State)
	require.Equal(t, 1, b.rec.count("gate"), "a task running when the job failed finishes")
	for i := range 3 {
		require.Equal(t, 0, b.rec.count(fmt.Sprintf("after-%d", i)), "no task of a failed job is handed out")
	}
	tasks := b.tasksByDisplay(t, j.ID)
	require.Equal(t, workflows.TaskComputed, tasks["gate"].State, "its result is kept")
	require.Equal(t, workflows.TaskQueued, tasks["after-0"].State)
	require.Equal(t, workflows.TaskFailed, tasks["failer"].State)
	require.Equal(t, int64(3), j.TaskCounts[workflows.TaskQueued])
	require.Equal(t, int64(1), j.TaskCounts[workflows.TaskFailed])
}

func TestOptionalFailureSkipsOnlyItsSubtree(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	// opt-parent is optional; inside it "doomed" fails and "never" depends
	// on it, so opt-parent becomes failed_optional and "never" is skipped.
	optParent := StepChild{Optional: true, Step: step(t, "opt-parent",
		StepChild{Fail: true}, child(step(t, "never"), 0))}
	// A directly optional failure: its dependent still runs.
	s := step(t, "root",
		optParent,
		child(step(t, "sibling")),
		StepChild{Fail: true, Optional: true},
		child(step(t, "after-optional"), 2))
	j := b.submit(t, &s)
	require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(2)))

	j = b.job(t, j.ID)
	require.Equal(t, workflows.JobCompleted, j.State)
	states := map[string]string{}
	for k, x := range b.tasksByDisplay(t, j.ID) {
		states[k] = x.State
	}
	require.Equal(t, workflows.TaskFailedOptional, states["opt-parent"])
	require.Equal(t, workflows.TaskSkipped, states["never"])
	require.Equal(t, 0, b.rec.count("never"))
	require.Equal(t, workflows.TaskComputed, states["sibling"])
	require.Equal(t, workflows.TaskComputed, states["after-optional"])
	require.Equal(t, workflows.TaskFailedOptional, states["Fail-under-0"])
	require.Equal(t, int64(2), j.TaskCounts[workflows.TaskFailedOptional])
	require.Equal(t, int64(1), j.TaskCounts[workflows.TaskSkipped])
	require.Equal(t, int64(1), j.TaskCounts[workflows.TaskFailed], "the failure inside the optional subtree")
}

func TestRetryDoesNotRerunComputedTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	b.rec.setFlag("broken", true)
	s := step(t, "root", child(step(t, "first")),
		child(Step{Key: t.Name(), Label: "second", FailFlag: "broken"}, 0),
		child(step(t, "third"), 1))
	j := b.submit(t, &s)
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, workflows.JobFailed, b.job(t, j.ID).State)
	require.Equal(t, 0, b.rec.count("third"))

	b.rec.setFlag("broken", false)
	require.NoError(t, b.client.Jobs().Retry(b.ctx, j.ID))
	require.Equal(t, workflows.JobRunning, b.job(t, j.ID).State)
	require.NoError(t, r.RunAll(b.ctx))

	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	require.Equal(t, 1, b.rec.count("root"))
	require.Equal(t, 1, b.rec.count("first"))
	require.Equal(t, 2, b.rec.count("second"))
	require.Equal(t, 1, b.rec.count("third"))
}

func TestCancelThenRetryResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	shareClient(t, b.client)
	r := b.runner(t, b.cluster)
	// The root cancels its own job while running: it finishes (its subtask
	// is committed) but the subtask is not handed out until a retry.
	j := b.submit(t, &Canceler{Key: t.Name(), Then: step(t, "later")})
	require.NoError(t, r.RunAll(b.ctx))
	j = b.job(t, j.ID)
	require.Equal(t, workflows.JobCanceled, j.State)
	require.Equal(t, 1, b.rec.count("canceler"))
	require.Equal(t, 0, b.rec.count("later"))
	require.Equal(t, int64(1), j.TaskCounts[workflows.TaskQueued])

	require.NoError(t, b.client.Jobs().Retry(b.ctx, j.ID))
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	require.Equal(t, 1, b.rec.count("canceler"))
	require.Equal(t, 1, b.rec.count("later"))

	// Canceling before anything ran, then retrying, also works.
	s := step(t, "cold")
	j2 := b.submit(t, &s)
	require.NoError(t, b.client.Jobs().Cancel(b.ctx, j2.ID))
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, 0, b.rec.count("cold"))
	require.Equal(t, workflows.JobCanceled, b.job(t, j2.ID).State)
	require.NoError(t, b.client.Jobs().Retry(b.ctx, j2.ID))
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, 1, b.rec.count("cold"))
	require.Equal(t, workflows.JobCompleted, b.job(t, j2.ID).State)

	require.ErrorIs(t, b.client.Jobs().Cancel(b.ctx, j2.ID), workflows.ErrJobCompleted)
	require.ErrorIs(t, b.client.Jobs().Retry(b.ctx, j2.ID), workflows.ErrJobCompleted)
}

func TestTwoRunnersNeverHoldTheSameTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 600
	children := make([]StepChild, n)
	for i := range children {
		children[i] = child(Step{Key: t.Name(), Label: fmt.Sprintf("t%d", i), SleepMS: i % 3})
	}
	s := step(t, "root", children...)
	runners := []*workflows.Runner{b.runner(t, b.cluster), b.runner(t, b.cluster), b.runner(t, b.cluster), b.runner(t, b.cluster)}
	j := b.submit(t, &s)

	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(8)))
		}()
	}
	wg.Wait()
	// Runners that went idle early may leave work to the others; finish it.
	require.NoError(t, b.runner(t, b.cluster).RunAll(b.ctx))
	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	require.Zero(t, b.rec.overlap.Load(), "a task ran twice at once")
	for i := range n {
		require.Equal(t, 1, b.rec.count(fmt.Sprintf("t%d", i)), "task t%d", i)
	}
}

func TestClusterIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.Clusters().Create(b.ctx, "other", "")
	require.NoError(t, err)
	other := b.runner(t, "other")
	mine := b.runner(t, b.cluster)
	s := step(t, "mine")
	j := b.submit(t, &s)

	require.NoError(t, other.RunAll(b.ctx))
	require.Equal(t, 0, b.rec.count("mine"))
	require.Equal(t, workflows.JobSubmitted, b.job(t, j.ID).State)
	require.NoError(t, mine.RunAll(b.ctx))
	require.Equal(t, 1, b.rec.count("mine"))
}

// Versioned is a task whose version the test chooses.
type Versioned struct {
	Key string `json:"key"`
	ver string
}

func (v *Versioned) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Versioned", v.ver)
}
func (v *Versioned) Execute(ctx context.Context) error {
	cur, _ := workflows.CurrentTask(ctx)
	recorderFor(v.Key).note("ran " + cur.Identifier.Version)
	return nil
}

func TestVersionCompatibility(t *testing.T) {
	t.Parallel()
	cases := []struct {
		task, runner string
		runs         bool
	}{
		{"v1.3", "v1.3", true},
		{"v1.3", "v1.5", true},
		{"v1.3", "v1.2", false},
		{"v1.3", "v2.3", false},
		{"v2.0", "v1.9", false},
		{"v0.0", "v0.7", true},
	}
	b := setup(t)
	for i, c := range cases {
		cluster := fmt.Sprintf("v%d", i)
		_, err := b.client.Clusters().Create(b.ctx, cluster, "")
		require.NoError(t, err)
		// The submitter needs the name registered in the cluster; a runner at
		// the task's own version registers it but never runs.
		_, err = b.client.NewRunner(b.ctx, cluster, &Versioned{ver: c.task})
		require.NoError(t, err)
		j, err := b.client.Jobs().Submit(b.ctx, "v", cluster, &Versioned{Key: t.Name(), ver: c.task})
		require.NoError(t, err)
		r, err := b.client.NewRunner(b.ctx, cluster, &Versioned{ver: c.runner})
		require.NoError(t, err)
		require.NoError(t, r.RunAll(b.ctx, workflows.WithIdleWait(20*time.Millisecond)))
		state := b.job(t, j.ID).State
		if c.runs {
			require.Equal(t, workflows.JobCompleted, state, "task %s on runner %s", c.task, c.runner)
		} else {
			require.Equal(t, workflows.JobSubmitted, state, "task %s on runner %s", c.task, c.runner)
		}
	}
}

func TestBadInputIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	jobs := b.client.Jobs()

	_, err := b.client.Clusters().Create(b.ctx, "Bad_Slug", "")
	require.ErrorIs(t, err, workflows.ErrInvalidSlug)
	require.ErrorContains(t, err, `"Bad_Slug"`)
	_, err = b.client.Clusters().Create(b.ctx, "main", "")
	require.ErrorIs(t, err, workflows.ErrClusterExists)

	_, err = b.client.NewRunner(b.ctx, b.cluster, &Versioned{ver: "1.0"})
	require.ErrorIs(t, err, workflows.ErrInvalidTask)
	require.ErrorContains(t, err, `"1.0"`)
	_, err = b.client.NewRunner(b.ctx, b.cluster, &Versioned{ver: "v1.0"}, &Versioned{ver: "v1.0"})
	require.ErrorContains(t, err, "registered twice")
	_, err = b.client.NewRunner(b.ctx, "nowhere", &Versioned{ver: "v1.0"})
	require.ErrorIs(t, err, workflows.ErrClusterNotFound)

	r := b.runner(t, b.cluster)
	_, err = jobs.Submit(b.ctx, "x", "nowhere", &benchtask.Noop{})
	require.ErrorIs(t, err, workflows.ErrClusterNotFound)
	require.ErrorContains(t, err, `"nowhere"`)
	_, err = jobs.SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "x", Cluster: b.cluster,
		Task: workflows.NewTaskIdentifier("Noop", "v1")})
	require.ErrorIs(t, err, workflows.ErrInvalidTask)
	_, err = jobs.SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "x", Cluster: b.cluster,
		Task: workflows.NewTaskIdentifier("", "v1.0")})
	require.ErrorIs(t, err, workflows.ErrInvalidTask)
	_, err = jobs.SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "x", Cluster: b.cluster,
		Task: workflows.NewTaskIdentifier(strings.Repeat("n", 257), "v1.0")})
	require.ErrorIs(t, err, workflows.ErrInvalidTask)
	_, err = jobs.SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "x", Cluster: b.cluster,
		Task: workflows.NewTaskIdentifier("Nope", "v1.0")})
	require.ErrorContains(t, err, `unknown task "Nope"`)
	_, err = jobs.SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "x", Cluster: b.cluster,
		Task: workflows.NewTaskIdentifier("Sleep", "v1.0"), Input: json.RawMessage(`[1,2]`)})
	require.ErrorContains(t, err, "input must be a JSON object")
	_, err = jobs.SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "x", Cluster: b.cluster,
		Task: workflows.NewTaskIdentifier("Sleep", "v1.0"), Input: json.RawMessage(`{"ms":`)})
	require.ErrorContains(t, err, "input must be a JSON object")

	// Nothing of the refused submissions was written.
	list, err := jobs.List(b.ctx, workflows.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, list)

	// Input that does not decode into the task fails that task, naming the
	// field; the runner keeps running and takes the next job.
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r.RunForever(ctx, workflows.WithConcurrency(2)) }()
	bad, err := jobs.SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "bad", Cluster: b.cluster,
		Task: workflows.NewTaskIdentifier("Sleep", "v1.0"), Input: json.RawMessage(`{"ms":"soon"}`)})
	require.NoError(t, err)
	unknown, err := jobs.SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "typo", Cluster: b.cluster,
		Task: workflows.NewTaskIdentifier("Sleep", "v1.0"), Input: json.RawMessage(`{"msec":5}`)})
	require.NoError(t, err)
	good, err := jobs.SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "good", Cluster: b.cluster,
		Task: workflows.NewTaskIdentifier("Sleep", "v1.0"), Input: json.RawMessage(`{"ms":1}`)})
	require.NoError(t, err)
	for _, id := range []string{bad.ID, unknown.ID, good.ID} {
		_, err := jobs.Wait(b.ctx, id, 5*time.Millisecond, nil)
		require.NoError(t, err)
	}
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, workflows.JobCompleted, b.job(t, good.ID).State)
	for id, field := range map[string]string{bad.ID: "ms", unknown.ID: "msec"} {
		require.Equal(t, workflows.JobFailed, b.job(t, id).State)
		ts, err := jobs.Tasks(b.ctx, id)
		require.NoError(t, err)
		require.Contains(t, ts[0].Error, field)
		require.Contains(t, ts[0].Error, "decode input of task Sleep@v1.0")
	}
}

// foreignFutures hands a future from one execution to another (test key ->
// workflows.FutureTask), which the SDK must refuse to use.
var foreignFutures sync.Map

// SubtaskAbuser submits subtasks in the ways the SDK must refuse.
type SubtaskAbuser struct {
	Key  string `json:"key"`
	Mode string `json:"mode"`
}

func (*SubtaskAbuser) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("SubtaskAbuser", "v1.0")
}
func (s *SubtaskAbuser) Execute(ctx context.Context) error {
	switch s.Mode {
	case "root":
		for _, m := range []string{"first", "foreign", "cluster", "badcluster"} {
			if _, err := workflows.SubmitSubtask(ctx, &SubtaskAbuser{Key: s.Key, Mode: m}, workflows.Optional()); err != nil {
				return err
			}
		}
		return nil
	case "first":
		f, err := workflows.SubmitSubtask(ctx, &benchtask.Noop{})
		foreignFutures.Store(s.Key, f)
		return err
	case "foreign":
		// Wait for the sibling's future, then try to depend on it.
		for {
			if f, ok := foreignFutures.Load(s.Key); ok {
				_, err := workflows.SubmitSubtask(ctx, &benchtask.Noop{}, workflows.WithDependencies(f.(workflows.FutureTask)))
				return err
			}
			time.Sleep(time.Millisecond)
		}
	case "cluster":
		_, err := workflows.SubmitSubtask(ctx, &benchtask.Noop{}, workflows.WithCluster("does-not-exist"))
		return err
	case "badcluster":
		_, err := workflows.SubmitSubtask(ctx, &benchtask.Noop{}, workflows.WithCluster("Not A Slug"))
		return err
	}
	return fmt.Errorf("unknown mode %q", s.Mode)
}

func TestSubtaskMisuseFailsTheExecution(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, err := b.client.NewRunner(b.ctx, b.cluster, &SubtaskAbuser{}, &benchtask.Noop{})
	require.NoError(t, err)
	j := b.submit(t, &SubtaskAbuser{Key: t.Name(), Mode: "root"})
	require.NoError(t, r.RunAll(b.ctx))

	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	errs := map[string]string{}
	for _, x := range ts {
		if x.Name != "SubtaskAbuser" || x.Parent != 0 {
			continue
		}
		var in SubtaskAbuser
		require.NoError(t, json.Unmarshal([]byte(x.Input), &in))
		errs[in.Mode] = x.State + ": " + x.Error
	}
	require.Equal(t, "computed: ", errs["first"])
	require.Contains(t, errs["foreign"], "failed_optional: ")
	require.Contains(t, errs["foreign"], "future of another task's execution")
	require.Contains(t, errs["cluster"], `unknown cluster "does-not-exist"`)
	require.Contains(t, errs["badcluster"], `invalid cluster slug "Not A Slug"`)
	// The refused executions committed no subtasks: only "first" has one.
	require.Len(t, ts, 1+4+1)
}

func TestPanicFailsTheTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, err := b.client.NewRunner(b.ctx, b.cluster, &Panicker{})
	require.NoError(t, err)
	j := b.submit(t, &Panicker{})
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, workflows.JobFailed, b.job(t, j.ID).State)
	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Contains(t, ts[0].Error, "task panicked: kaboom")
}

// Panicker panics.
type Panicker struct{}

func (*Panicker) Execute(context.Context) error { panic("kaboom") }

func TestProgressCountsOnlyLastExecution(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	j := b.submit(t, &Progressing{FailAttempts: 2}, workflows.WithJobMaxRetries(5))
	require.NoError(t, r.RunAll(b.ctx))
	j = b.job(t, j.ID)
	require.Equal(t, workflows.JobCompleted, j.State)
	require.Equal(t, []workflows.ProgressInfo{{Label: "items", Total: 10, Done: 10}}, j.Progress)

	failing := b.submit(t, &Progressing{FailAttempts: 9}, workflows.WithJobMaxRetries(1))
	require.NoError(t, r.RunAll(b.ctx))
	failed := b.job(t, failing.ID)
	require.Equal(t, workflows.JobFailed, failed.State)
	require.Equal(t, []workflows.ProgressInfo{{Label: "items", Total: 10, Done: 3}}, failed.Progress)
}

func TestCurrentTaskAndDisplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	j := b.submit(t, &WhoAmI{Key: t.Name()})
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, []string{fmt.Sprintf("true %s 0 1 WhoAmI@v1.2 main", j.ID)}, b.rec.snapshot())

	_, ok := workflows.CurrentTask(context.Background())
	require.False(t, ok)
	_, err := workflows.SubmitSubtask(context.Background(), &benchtask.Noop{})
	require.ErrorIs(t, err, workflows.ErrNotInTask)

	s := step(t, "shown")
	j2 := b.submit(t, &s)
	require.NoError(t, r.RunAll(b.ctx))
	require.Contains(t, b.tasksByDisplay(t, j2.ID), "shown")
}

func TestLargeFanOutWithMerge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	const n = 3000 // larger than one inline commit: staged in chunks
	j := b.submit(t, &benchtask.FanOut{N: n, Child: "Noop", Merge: true})
	require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(64)))
	j = b.job(t, j.ID)
	require.Equal(t, workflows.JobCompleted, j.State)
	require.Equal(t, int64(n+2), j.TaskCounts[workflows.TaskComputed])
	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, ts, n+2)
	merge := ts[len(ts)-1]
	for _, x := range ts[1 : len(ts)-1] {
		require.False(t, x.EndedAt.After(merge.StartedAt), "merge started before child %d ended", x.Seq)
	}
}

func TestListJobsFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.runner(t, b.cluster)
	done := b.submit(t, &benchtask.Noop{})
	require.NoError(t, r.RunAll(b.ctx))
	waiting := b.submit(t, &benchtask.Noop{})

	all, err := b.client.Jobs().List(b.ctx, workflows.ListOptions{})
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, waiting.ID, all[0].ID, "newest first")
	got, err := b.client.Jobs().List(b.ctx, workflows.ListOptions{State: workflows.JobCompleted})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, done.ID, got[0].ID)
	got, err = b.client.Jobs().List(b.ctx, workflows.ListOptions{Cluster: "elsewhere"})
	require.NoError(t, err)
	require.Empty(t, got)
	_, err = b.client.Jobs().List(b.ctx, workflows.ListOptions{State: "done"})
	require.ErrorContains(t, err, `unknown job state "done"`)
	_, err = b.client.Jobs().Get(b.ctx, "missing")
	require.True(t, errors.Is(err, workflows.ErrJobNotFound))
}

// Busy records the most tasks of its job seen running at once.
type Busy struct {
	Key string `json:"key"`
}

// BusyAlt is Busy under another identifier, so it has its own stream.
type BusyAlt struct{ Busy }

func (*BusyAlt) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("BusyAlt", "v1.0")
}

func (b *Busy) Execute(ctx context.Context) error {
	cur, _ := workflows.CurrentTask(ctx)
	j, err := clientFor(b.Key).Jobs().Get(ctx, cur.JobID)
	if err != nil {
		return err
	}
	rec := recorderFor(b.Key)
	rec.mu.Lock()
	rec.counts["peak-running"] = max(rec.counts["peak-running"], int(j.TaskCounts[workflows.TaskRunning]))
	rec.mu.Unlock()
	time.Sleep(2 * time.Millisecond)
	return nil
}

// Spread submits N Busy and N BusyAlt subtasks.
type Spread struct {
	Key string `json:"key"`
	N   int    `json:"n"`
}

func (s *Spread) Execute(ctx context.Context) error {
	for range s.N {
		if _, err := workflows.SubmitSubtask(ctx, &Busy{Key: s.Key}); err != nil {
			return err
		}
		if _, err := workflows.SubmitSubtask(ctx, &BusyAlt{Busy{Key: s.Key}}); err != nil {
			return err
		}
	}
	return nil
}

// A runner reads every stream it serves in one call, and COUNT applies per
// stream; still, it must hold no more tasks than its concurrency.
func TestConcurrencyCapsTasksAcrossStreams(t *testing.T) {
	t.Parallel()
	b := setup(t)
	shareClient(t, b.client)
	var runners []*workflows.Runner
	for range 2 {
		r, err := b.client.NewRunner(b.ctx, b.cluster, &Busy{}, &BusyAlt{}, &Spread{})
		require.NoError(t, err)
		runners = append(runners, r)
	}
	j := b.submit(t, &Spread{Key: t.Name(), N: 40})
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(1)))
		}()
	}
	wg.Wait()
	require.NoError(t, runners[0].RunAll(b.ctx, workflows.WithConcurrency(1)))
	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	peak := b.rec.count("peak-running")
	require.GreaterOrEqual(t, peak, 1)
	require.LessOrEqual(t, peak, 2, "two runners at concurrency 1 held more than two tasks")
}
