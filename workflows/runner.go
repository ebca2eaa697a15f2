package workflows

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runfleet/runfleet/queue"
)

// Runner claims tasks of one cluster that it has registered and executes them.
type Runner struct {
	client  *Client
	cluster string
	id      string
	logger  *slog.Logger

	byName  map[string][]registration // sorted by major, then minor
	streams []string

	knownClusters sync.Map // slug -> struct{}: clusters seen to exist
}

type registration struct {
	id  queue.Identifier
	typ reflect.Type // the struct type; executions use a *typ
}

// NewRunner registers tasks for cluster. Each task is a value or pointer of a
// struct type implementing Task; its identifier comes from Identifier() or,
// without it, from the type name at v0.0. Registering the same name and
// version twice is an error.
func (c *Client) NewRunner(ctx context.Context, cluster string, tasks ...Task) (*Runner, error) {
	if _, err := c.q.GetCluster(ctx, cluster); err != nil {
		return nil, fmt.Errorf("new runner: %w", err)
	}
	if len(tasks) == 0 {
		return nil, errors.New("new runner: no tasks to register")
	}
	r := &Runner{client: c, cluster: cluster, id: newRunnerID(), byName: map[string][]registration{}}
	r.logger = c.logger.With(slog.String("runner_id", r.id), slog.String("cluster", cluster))
	r.knownClusters.Store(cluster, struct{}{})
	var ids []queue.Identifier
	seen := map[string]bool{}
	streamSeen := map[string]bool{}
	for _, t := range tasks {
		if t == nil {
			return nil, errors.New("new runner: task is nil")
		}
		typ := reflect.TypeOf(t)
		if typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return nil, fmt.Errorf("new runner: task type %s is not a struct or a pointer to one", reflect.TypeOf(t))
		}
		if _, ok := reflect.New(typ).Interface().(Task); !ok {
			return nil, fmt.Errorf("new runner: *%s does not implement Task", typ)
		}
		id, err := IdentifierOf(t).parse()
		if err != nil {
			return nil, fmt.Errorf("new runner: task type %s: %w", typ, err)
		}
		if seen[id.String()] {
			return nil, fmt.Errorf("new runner: task %s registered twice", id)
		}
		seen[id.String()] = true
		ids = append(ids, id)
		r.byName[id.Name] = append(r.byName[id.Name], registration{id: id, typ: typ})
		// A runner at vM.n serves tasks at vM.0 .. vM.n, one stream each.
		for m := 0; m <= id.Minor; m++ {
			s := queue.StreamKey(cluster, queue.Identifier{Name: id.Name, Major: id.Major, Minor: m})
			if !streamSeen[s] {
				streamSeen[s] = true
				r.streams = append(r.streams, s)
			}
		}
	}
	if len(r.streams) > 4096 {
		return nil, fmt.Errorf("new runner: registered minor versions span %d streams; keep minors below a few thousand", len(r.streams))
	}
	for _, regs := range r.byName {
		slices.SortFunc(regs, func(a, b registration) int {
			if a.id.Major != b.id.Major {
				return a.id.Major - b.id.Major
			}
			return a.id.Minor - b.id.Minor
		})
	}
	if err := c.q.EnsureGroups(ctx, r.streams); err != nil {
		return nil, fmt.Errorf("new runner: %w", err)
	}
	if err := c.q.RegisterIdentifiers(ctx, cluster, ids); err != nil {
		return nil, fmt.Errorf("new runner: %w", err)
	}
	return r, nil
}

func newRunnerID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// ID is the runner's unique id, as shown on the tasks it holds.
func (r *Runner) ID() string { return r.id }

// Cluster is the cluster the runner serves.
func (r *Runner) Cluster() string { return r.cluster }

// lookup picks the registration that serves a task: same name and major, the
// lowest minor at or above the task's.
func (r *Runner) lookup(id queue.Identifier) (registration, bool) {
	for _, reg := range r.byName[id.Name] {
		if reg.id.CanRun(id) {
			return reg, true
		}
	}
	return registration{}, false
}

// maxClaim bounds the tasks one read hands to rf_claim.
const maxClaim = 256

// RunOption configures RunForever and RunAll.
type RunOption func(*runConfig)

type runConfig struct {
	concurrency int
	grace       time.Duration
	idleWait    time.Duration
}

// WithConcurrency sets how many tasks run at once. Default 1.
func WithConcurrency(n int) RunOption { return func(c *runConfig) { c.concurrency = n } }

// WithGracePeriod sets how long running tasks may take to finish once the run
// context is canceled; tasks still running then are handed back to the queue.
// Default 30s.
func WithGracePeriod(d time.Duration) RunOption { return func(c *runConfig) { c.grace = d } }

// WithIdleWait sets how long RunAll waits for new work before it decides the
// queue is empty. Default 100ms.
func WithIdleWait(d time.Duration) RunOption { return func(c *runConfig) { c.idleWait = d } }

func (r *Runner) config(opts []RunOption) (runConfig, error) {
	cfg := runConfig{concurrency: 1, grace: 30 * time.Second, idleWait: 100 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.concurrency < 1 || cfg.concurrency > 100_000 {
		return cfg, fmt.Errorf("concurrency %d out of range 1..100000", cfg.concurrency)
	}
	if cfg.idleWait < time.Millisecond {
		cfg.idleWait = time.Millisecond
	}
	return cfg, nil
}

// RunForever claims and executes tasks until ctx is canceled, then stops
// claiming, lets running tasks finish within the grace period and returns nil.
func (r *Runner) RunForever(ctx context.Context, opts ...RunOption) error {
	cfg, err := r.config(opts)
	if err != nil {
		return err
	}
	return r.run(ctx, cfg, false)
}

// RunAll claims and executes tasks until none that this runner can run is
// left, then returns nil. Tasks other runners are still working on do not
// keep it waiting.
func (r *Runner) RunAll(ctx context.Context, opts ...RunOption) error {
	cfg, err := r.config(opts)
	if err != nil {
		return err
	}
	return r.run(ctx, cfg, true)
}

type outcome struct {
	claim    queue.Claimed
	exec     *execution
	err      error
	handBack bool
	done     *queue.Completion
}

// run is the producer: it owns the count of tasks in flight, reads hints for
// free slots only, claims them and starts one executor goroutine per task. A
// single completer goroutine commits results in batches.
func (r *Runner) run(ctx context.Context, cfg runConfig, untilIdle bool) error {
	// Work outlives the fetch context by the grace period.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	commitCtx := context.WithoutCancel(ctx)

	var inflight atomic.Int64
	slotFreed := make(chan struct{}, 1)
	results := make(chan outcome, cfg.concurrency)
	completerDone := make(chan struct{})
	go func() {
		defer close(completerDone)
		r.complete(commitCtx, results, func(n int) {
			inflight.Add(-int64(n))
			select {
			case slotFreed <- struct{}{}:
			default:
			}
		})
	}()
	// A fixed pool of executors: goroutines that live across tasks keep the
	// stacks they have grown, where one goroutine per task grows a new one.
	work := make(chan queue.Claimed, cfg.concurrency)
	var execs sync.WaitGroup
	for range cfg.concurrency {
		execs.Add(1)
		go func() {
			defer execs.Done()
			for c := range work {
				results <- r.execute(workCtx, c)
			}
		}()
	}
	defer func() {
		r.drain(ctx, cfg, &inflight, slotFreed, cancelWork)
		close(work)
		execs.Wait()
		close(results)
		<-completerDone
	}()

	block := time.Second
	if untilIdle {
		block = cfg.idleWait
	}
	// Reads and claims use commitCtx: hints a read returns are this runner's
	// to claim even while it stops, or they would sit unacknowledged. The
	// waker ends a read blocked in Redis as soon as ctx is done.
	rd := &hintReader{r: r}
	defer rd.close()
	stopWaker := make(chan struct{})
	defer close(stopWaker)
	go rd.wakeOnCancel(ctx, commitCtx, stopWaker)

	backoff := 10 * time.Millisecond
	lastTrim := time.Now()
	for ctx.Err() == nil {
		if time.Since(lastTrim) > time.Second {
			lastTrim = time.Now()
			if err := r.client.q.TrimStreams(ctx, r.streams); err != nil && ctx.Err() == nil {
				r.logger.Warn("trim task streams failed", slog.Any("error", err))
			}
		}
		before := inflight.Load()
		free := int64(cfg.concurrency) - before
		if free <= 0 {
			select {
			case <-slotFreed:
			case <-ctx.Done():
			}
			continue
		}
		// At most maxClaim per read keeps each claim call short in Redis.
		hints, err := rd.read(commitCtx, int(min(free, maxClaim)), block)
		if err == nil {
			var claimed []queue.Claimed
			claimed, err = r.client.q.Claim(commitCtx, r.id, hints)
			inflight.Add(int64(len(claimed)))
			for _, c := range claimed {
				work <- c
			}
			if err == nil && len(hints) == 0 && before == 0 && untilIdle {
				return nil
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.logger.Warn("claim tasks failed; backing off", slog.Any("error", err), slog.Duration("backoff", backoff))
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
	}
	return nil
}

// hintReader reads on a dedicated connection (queue.Reader) so a blocked
// read can be woken when the runner stops; it reopens the connection after
// an error, and falls back to pooled reads where that is not possible.
type hintReader struct {
	r  *Runner
	mu sync.Mutex
	qr *queue.Reader
}

func (h *hintReader) read(ctx context.Context, count int, block time.Duration) ([]queue.Hint, error) {
	h.mu.Lock()
	qr := h.qr
	if qr == nil {
		var err error
		if qr, err = h.r.client.q.NewReader(ctx, h.r.id, h.r.streams); err == nil {
			h.qr = qr
		}
	}
	h.mu.Unlock()
	if qr == nil {
		return h.r.client.q.Read(ctx, h.r.id, h.r.streams, count, block)
	}
	hints, err := qr.Read(ctx, count, block)
	if err != nil {
		h.close()
	}
	return hints, err
}

// wakeOnCancel unblocks the reader once ctx is done, and keeps doing so
// until stop closes, in case a read started after the first wake-up.
func (h *hintReader) wakeOnCancel(ctx, bg context.Context, stop <-chan struct{}) {
	select {
	case <-ctx.Done():
	case <-stop:
		return
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		h.mu.Lock()
		if h.qr != nil {
			_ = h.qr.Unblock(bg)
		}
		h.mu.Unlock()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (h *hintReader) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.qr != nil {
		_ = h.qr.Close()
		h.qr = nil
	}
}

// drain waits for tasks in flight, up to the grace period once ctx is
// canceled; then it cancels their context so they are handed back.
func (r *Runner) drain(ctx context.Context, cfg runConfig, inflight *atomic.Int64, slotFreed chan struct{}, cancelWork context.CancelFunc) {
	var deadline <-chan time.Time
	if ctx.Err() != nil {
		t := time.NewTimer(cfg.grace)
		defer t.Stop()
		deadline = t.C
	}
	for inflight.Load() > 0 {
		select {
		case <-slotFreed:
		case <-deadline:
			r.logger.Warn("grace period over; handing back running tasks", slog.Int64("tasks", inflight.Load()))
			cancelWork()
			deadline = nil
		}
	}
}

// execute runs one claimed task and returns what to commit.
func (r *Runner) execute(workCtx context.Context, c queue.Claimed) outcome {
	out := outcome{claim: c}
	// Built only when something is logged: most executions log nothing.
	log := func() *slog.Logger {
		return r.logger.With(slog.String("job_id", c.JobID), slog.Int64("task_id", c.Seq),
			slog.Int("attempt", c.Attempt), slog.String("task", c.Task.String()))
	}
	reg, ok := r.lookup(c.Task)
	if !ok {
		out.err = fmt.Errorf("runner %s has no task registered that can run %s", r.id, c.Task)
		return out
	}
	ptr := reflect.New(reg.typ)
	if err := decodeInput(c.Input, ptr.Interface()); err != nil {
		out.err = fmt.Errorf("decode input of task %s: %w", c.Task, err)
		log().Error("task input does not decode", slog.Any("error", out.err))
		return out
	}
	e := &execution{runner: r, cluster: r.cluster, info: CurrentTaskInfo{
		JobID: c.JobID, TaskID: c.Seq, Attempt: c.Attempt, Cluster: r.cluster, RunnerID: r.id,
		Identifier: TaskIdentifier{Name: c.Task.Name, Version: c.Task.Version()}}}
	out.exec = e
	err := runTask(context.WithValue(workCtx, execKey{}, e), ptr.Interface().(Task))
	if err == nil {
		err = e.err
	}
	if err == nil {
		err = r.checkSubtaskClusters(workCtx, e.subtasks)
	}
	if err != nil {
		out.err = err
		out.handBack = workCtx.Err() != nil
		if out.handBack {
			log().Warn("task interrupted by shutdown; handing it back", slog.Any("error", err))
		} else {
			log().Warn("task failed", slog.Any("error", err))
		}
		return out
	}
	comp := &queue.Completion{JobID: c.JobID, Seq: c.Seq, Attempt: c.Attempt, Display: e.display,
		Progress: e.progressJSON(), Subtasks: e.subtasks}
	if err := r.client.q.Stage(workCtx, r.id, comp); err != nil {
		if errors.Is(err, queue.ErrLost) {
			log().Warn("task was taken from this runner before it finished; its result is dropped")
		}
		out.err, out.handBack = err, true
		return out
	}
	out.done = comp
	return out
}

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

// runTask calls Execute, turning a panic into an error.
func runTask(ctx context.Context, t Task) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("task panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return t.Execute(ctx)
}

func (r *Runner) checkSubtaskClusters(ctx context.Context, subs []queue.SubtaskSpec) error {
	var unknown []string
	for _, s := range subs {
		if _, ok := r.knownClusters.Load(s.Cluster); !ok && !slices.Contains(unknown, s.Cluster) {
			unknown = append(unknown, s.Cluster)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	missing, err := r.client.q.MissingClusters(ctx, unknown)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("subtask submitted to unknown cluster %q: %w", missing[0], ErrClusterNotFound)
	}
	for _, s := range unknown {
		r.knownClusters.Store(s, struct{}{})
	}
	return nil
}

// complete is the completer: it gathers whatever results are ready (at least
// one, at most 512), commits them in one call per job, and reports how many
// slots it freed. Commits are retried while Redis is unreachable.
func (r *Runner) complete(ctx context.Context, results <-chan outcome, freed func(int)) {
	for first := range results {
		batch := []outcome{first}
	gather:
		for len(batch) < 512 {
			select {
			case o, ok := <-results:
				if !ok {
					break gather
				}
				batch = append(batch, o)
			default:
				break gather
			}
		}
		r.commit(ctx, batch)
		freed(len(batch))
	}
}

func (r *Runner) commit(ctx context.Context, batch []outcome) {
	var comps []queue.Completion
	var fails []queue.Failure
	for _, o := range batch {
		switch {
		case o.done != nil:
			comps = append(comps, *o.done)
		case errors.Is(o.err, queue.ErrLost):
		default:
			f := queue.Failure{JobID: o.claim.JobID, Seq: o.claim.Seq, Attempt: o.claim.Attempt,
				Error: o.err.Error(), HandBack: o.handBack}
			if o.exec != nil {
				f.Display, f.Progress = o.exec.display, o.exec.progressJSON()
			}
			fails = append(fails, f)
		}
	}
	backoff := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var err error
		if len(comps) > 0 {
			var res []error
			res, err = r.client.q.Complete(ctx, r.id, comps)
			if err == nil {
				for i, e := range res {
					if e != nil {
						r.logger.Warn("completion refused: task no longer held by this runner",
							slog.String("job_id", comps[i].JobID), slog.Int64("task_id", comps[i].Seq))
					}
				}
				comps = nil
			}
		}
		if err == nil && len(fails) > 0 {
			_, err = r.client.q.Fail(ctx, r.id, fails)
			if err == nil {
				fails = nil
			}
		}
		if err == nil {
			return
		}
		if attempt >= 10 {
			r.logger.Error("giving up committing task results; they will be re-run after this runner's tasks are reclaimed",
				slog.Any("error", err))
			return
		}
		r.logger.Warn("commit task results failed; retrying", slog.Any("error", err))
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}
