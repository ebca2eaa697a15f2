package workflows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// testBundle is what most tests need: a real redis-server of their own, a
// client and a cluster.
type testBundle struct {
	redis   *testenv.Redis
	client  *workflows.Client
	cluster string
	ctx     context.Context
	rec     *recorder
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()), workflows.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Clusters().Create(ctx, "main", "")
	require.NoError(t, err)
	return &testBundle{redis: r, client: c, cluster: "main", ctx: ctx, rec: newRecorder(t)}
}

// runner registers the test tasks plus the bench tasks on cluster.
func (b *testBundle) runner(t *testing.T, cluster string) *workflows.Runner {
	t.Helper()
	r, err := b.client.NewRunner(b.ctx, cluster, append(testTasks(), benchtask.All()...)...)
	require.NoError(t, err)
	return r
}

func (b *testBundle) submit(t *testing.T, task workflows.Task, opts ...workflows.JobOption) workflows.Job {
	t.Helper()
	j, err := b.client.Jobs().Submit(b.ctx, t.Name(), b.cluster, task, opts...)
	require.NoError(t, err)
	return j
}

func (b *testBundle) job(t *testing.T, id string) workflows.Job {
	t.Helper()
	j, err := b.client.Jobs().Get(b.ctx, id)
	require.NoError(t, err)
	return j
}

// tasksByDisplay maps each task's display name (or name) to its record.
func (b *testBundle) tasksByDisplay(t *testing.T, id string) map[string]workflows.TaskInfo {
	t.Helper()
	ts, err := b.client.Jobs().Tasks(b.ctx, id)
	require.NoError(t, err)
	out := map[string]workflows.TaskInfo{}
	for _, x := range ts {
		key := x.Display
		if key == "" {
			// Tasks that never ran have no display; use a Step's label.
			var in struct{ Label string }
			_ = json.Unmarshal([]byte(x.Input), &in)
			key = in.Label
		}
		if key == "" {
			key = fmt.Sprintf("%s-under-%d", x.Name, x.Parent)
		}
		out[key] = x
	}
	return out
}

// recorder collects what test tasks did, keyed per test so parallel tests
// never see each other's events.
type recorder struct {
	mu      sync.Mutex
	events  []string
	running map[string]bool
	counts  map[string]int
	overlap atomic.Int64
	flags   map[string]bool
}

var (
	recordersMu sync.Mutex
	recorders   = map[string]*recorder{}
)

func newRecorder(t *testing.T) *recorder {
	r := &recorder{running: map[string]bool{}, counts: map[string]int{}, flags: map[string]bool{}}
	recordersMu.Lock()
	recorders[t.Name()] = r
	recordersMu.Unlock()
	t.Cleanup(func() {
		recordersMu.Lock()
		delete(recorders, t.Name())
		recordersMu.Unlock()
	})
	return r
}

func recorderFor(key string) *recorder {
	recordersMu.Lock()
	defer recordersMu.Unlock()
	r := recorders[key]
	if r == nil {
		panic("no recorder for " + key)
	}
	return r
}

func (r *recorder) start(label string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running[label] {
		r.overlap.Add(1)
	}
	r.running[label] = true
	r.counts[label]++
	r.events = append(r.events, "start "+label)
}

func (r *recorder) end(label string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, label)
	r.events = append(r.events, "end "+label)
}

func (r *recorder) note(event string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event)
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) count(label string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[label]
}

func (r *recorder) setFlag(name string, v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flags[name] = v
}

func (r *recorder) flag(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flags[name]
}

// index returns the position of an event, or -1.
func (r *recorder) index(event string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Index(r.events, event)
}

// requireBefore asserts event a happened before event b.
func (r *recorder) requireBefore(t *testing.T, a, b string) {
	t.Helper()
	ia, ib := r.index(a), r.index(b)
	require.NotEqual(t, -1, ia, "event %q missing; events: %v", a, r.events)
	require.NotEqual(t, -1, ib, "event %q missing; events: %v", b, r.events)
	require.Less(t, ia, ib, "want %q before %q; events: %v", a, b, r.events)
}

// Step is the workhorse test task: it records its start and end under Label,
// optionally sleeps, fails while the recorder flag FailFlag is set, and
// submits Children with dependencies given by index.
type Step struct {
	Key      string `json:"key"`
	Label    string `json:"label"`
	SleepMS  int    `json:"sleep_ms,omitempty"`
	FailFlag string `json:"fail_flag,omitempty"`
	WaitFor  string `json:"wait_for,omitempty"` // an event to wait for first
	// FailAttempts fails executions whose attempt number is at most this.
	FailAttempts int         `json:"fail_attempts,omitempty"`
	Children     []StepChild `json:"children,omitempty"`
}

// StepChild is one subtask Step submits.
type StepChild struct {
	Step     Step   `json:"step"`
	Deps     []int  `json:"deps,omitempty"`
	Cluster  string `json:"cluster,omitempty"`
	Optional bool   `json:"optional,omitempty"`
	Fail     bool   `json:"fail,omitempty"` // submit a benchtask.Fail instead
}

func (*Step) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Step", "v1.0")
}

func (s *Step) Execute(ctx context.Context) error {
	rec := recorderFor(s.Key)
	rec.start(s.Label)
	defer rec.end(s.Label)
	workflows.SetDisplay(ctx, s.Label)
	for s.WaitFor != "" && rec.index(s.WaitFor) < 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	if s.SleepMS > 0 {
		time.Sleep(time.Duration(s.SleepMS) * time.Millisecond)
	}
	futures := make([]workflows.FutureTask, 0, len(s.Children))
	for _, c := range s.Children {
		var opts []workflows.SubtaskOption
		for _, d := range c.Deps {
			opts = append(opts, workflows.WithDependencies(futures[d]))
		}
		if c.Cluster != "" {
			opts = append(opts, workflows.WithCluster(c.Cluster))
		}
		if c.Optional {
			opts = append(opts, workflows.Optional())
		}
		var task workflows.Task = &c.Step
		if c.Fail {
			task = &benchtask.Fail{}
		}
		f, err := workflows.SubmitSubtask(ctx, task, opts...)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	if cur, _ := workflows.CurrentTask(ctx); cur.Attempt <= s.FailAttempts {
		return fmt.Errorf("step %s: attempt %d fails on purpose", s.Label, cur.Attempt)
	}
	if s.FailFlag != "" && rec.flag(s.FailFlag) {
		return fmt.Errorf("step %s: flag %s is set", s.Label, s.FailFlag)
	}
	return nil
}

func testTasks() []workflows.Task {
	return []workflows.Task{&Step{}, &Gate{}, &Canceler{}, &Progressing{}, &WhoAmI{}}
}

// Gate waits until its job reaches State (polling), then returns nil.
type Gate struct {
	Key   string `json:"key"`
	Label string `json:"label"`
	State string `json:"state"`
}

func (*Gate) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Gate", "v1.0")
}
func (g *Gate) Execute(ctx context.Context) error {
	rec := recorderFor(g.Key)
	rec.start(g.Label)
	defer rec.end(g.Label)
	workflows.SetDisplay(ctx, g.Label)
	cur, _ := workflows.CurrentTask(ctx)
	for {
		j, err := clientFor(g.Key).Jobs().Get(ctx, cur.JobID)
		if err != nil {
			return err
		}
		if j.State == g.State {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

var (
	clientsMu sync.Mutex
	clients   = map[string]*workflows.Client{}
)

func shareClient(t *testing.T, c *workflows.Client) {
	clientsMu.Lock()
	clients[t.Name()] = c
	clientsMu.Unlock()
	t.Cleanup(func() {
		clientsMu.Lock()
		delete(clients, t.Name())
		clientsMu.Unlock()
	})
}

func clientFor(key string) *workflows.Client {
	clientsMu.Lock()
	defer clientsMu.Unlock()
	return clients[key]
}

// Canceler cancels its own job, then submits Then as a subtask.
type Canceler struct {
	Key  string `json:"key"`
	Then Step   `json:"then"`
}

func (*Canceler) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Canceler", "v1.0")
}
func (c *Canceler) Execute(ctx context.Context) error {
	rec := recorderFor(c.Key)
	rec.start("canceler")
	defer rec.end("canceler")
	cur, _ := workflows.CurrentTask(ctx)
	if err := clientFor(c.Key).Jobs().Cancel(ctx, cur.JobID); err != nil {
		return err
	}
	_, err := workflows.SubmitSubtask(ctx, &c.Then)
	return err
}

// Progressing reports progress, then fails while attempt <= FailAttempts.
type Progressing struct {
	FailAttempts int `json:"fail_attempts"`
}

func (*Progressing) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Progressing", "v1.0")
}
func (p *Progressing) Execute(ctx context.Context) error {
	cur, _ := workflows.CurrentTask(ctx)
	pr := workflows.Progress(ctx, "items")
	pr.Add(10)
	if cur.Attempt <= p.FailAttempts {
		pr.Done(3)
		return fmt.Errorf("attempt %d fails on purpose", cur.Attempt)
	}
	pr.Done(10)
	return nil
}

// WhoAmI records CurrentTask into its recorder's events.
type WhoAmI struct {
	Key string `json:"key"`
}

func (*WhoAmI) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("WhoAmI", "v1.2")
}
func (w *WhoAmI) Execute(ctx context.Context) error {
	cur, ok := workflows.CurrentTask(ctx)
	recorderFor(w.Key).note(fmt.Sprintf("%v %s %d %d %s %s", ok, cur.JobID, cur.TaskID, cur.Attempt, cur.Identifier, cur.Cluster))
	return nil
}
