package workflows

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
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

	reg      *registry // what the runner can run
	streams  []string
	remote   RemoteExecutor  // nil: tasks run in this process
	release  string          // the release a remote executor serves, for logs
	contexts contextRecorder // jobs this runner's context was recorded in

	stopNow chan struct{} // closed by StopNow; replaced per run
	stopMu  sync.Mutex
	active  atomic.Bool // a run is in progress: one at a time per runner

	knownClusters sync.Map // slug -> struct{}: clusters seen to exist
	registered    sync.Map // slug -> []queue.Identifier registered there, as last read

	ownMetrics  *Metrics               // made by the first run WithMetricsAddr without WithMetrics
	hadMetrics  bool                   // a run attached metrics to the registrations
	metricsAddr atomic.Pointer[string] // where a run serves its metrics

	taskLogs atomic.Pointer[taskLogs] // where the current run's executions log
	// inputBudget bounds the stored inputs the current run's executions
	// hold (WithStoredInputMemory); nil: no bound.
	inputBudget atomic.Pointer[inputBudget]
	tracing     *taskTracing // nil when the client does not trace
}

type registration struct {
	id  queue.Identifier
	typ reflect.Type // the struct type; executions use a *typ; nil when remote
	m   *taskMetrics // nil without metrics; set at the start of a run
}

// NewRunner registers tasks for cluster. Each task is a value or pointer of a
// struct type implementing Task; its identifier comes from Identifier() or,
// without it, from the type name at v0.0. Registering the same name and
// version twice is an error.
func (c *Client) NewRunner(ctx context.Context, cluster string, tasks ...Task) (*Runner, error) {
	if len(tasks) == 0 {
		return nil, errors.New("new runner: no tasks to register")
	}
	reg, err := newRegistry(tasks)
	if err != nil {
		return nil, fmt.Errorf("new runner: %w", err)
	}
	return c.newRunner(ctx, cluster, reg, nil, "")
}

func (c *Client) newRunner(ctx context.Context, cluster string, reg *registry, remote RemoteExecutor, release string) (*Runner, error) {
	if _, err := c.q.GetCluster(ctx, cluster); err != nil {
		return nil, fmt.Errorf("new runner: %w", err)
	}
	r := &Runner{client: c, cluster: cluster, id: c.takeRunnerID(), reg: reg, remote: remote,
		release: release, stopNow: make(chan struct{})}
	r.logger = c.logger.With(slog.String("runner_id", r.id), slog.String("cluster", cluster))
	if release != "" {
		r.logger = r.logger.With(slog.String("release", release))
	}
	r.tracing = newTaskTracing(c, r)
	r.knownClusters.Store(cluster, struct{}{})
	streamSeen := map[string]bool{}
	for _, id := range reg.ids {
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
	if err := c.q.EnsureGroups(ctx, r.streams); err != nil {
		return nil, fmt.Errorf("new runner: %w", err)
	}
	if err := c.q.RegisterIdentifiers(ctx, cluster, reg.ids); err != nil {
		return nil, fmt.Errorf("new runner: %w", err)
	}
	return r, nil
}

// registry is a set of registered tasks: what a runner (or a worker
// process) can execute.
type registry struct {
	ids    []queue.Identifier
	byName map[string][]registration // sorted by major, then minor
}

func newEmptyRegistry() *registry { return &registry{byName: map[string][]registration{}} }

// newRegistry registers task types; see NewRunner.
func newRegistry(tasks []Task) (*registry, error) {
	reg := newEmptyRegistry()
	for _, t := range tasks {
		if t == nil {
			return nil, errors.New("task is nil")
		}
		typ := reflect.TypeOf(t)
		if typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return nil, fmt.Errorf("task type %s is not a struct or a pointer to one", reflect.TypeOf(t))
		}
		if _, ok := reflect.New(typ).Interface().(Task); !ok {
			return nil, fmt.Errorf("*%s does not implement Task", typ)
		}
		id, err := IdentifierOf(t).Parse()
		if err != nil {
			return nil, fmt.Errorf("task type %s: %w", typ, err)
		}
		if err := reg.add(id, typ); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// add registers id, served by typ (nil for a remote executor).
func (reg *registry) add(id queue.Identifier, typ reflect.Type) error {
	for _, r := range reg.byName[id.Name] {
		if r.id == id {
			return fmt.Errorf("task %s registered twice", id)
		}
	}
	reg.ids = append(reg.ids, id)
	regs := append(reg.byName[id.Name], registration{id: id, typ: typ})
	slices.SortFunc(regs, func(a, b registration) int {
		if a.id.Major != b.id.Major {
			return a.id.Major - b.id.Major
		}
		return a.id.Minor - b.id.Minor
	})
	reg.byName[id.Name] = regs
	return nil
}

// lookup picks the registration that serves a task: same name and major, the
// lowest minor at or above the task's.
func (reg *registry) lookup(id queue.Identifier) (registration, bool) {
	for _, r := range reg.byName[id.Name] {
		if r.id.CanRun(id) {
			return r, true
		}
	}
	return registration{}, false
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

// errAlreadyRunning: two runs of one runner would share its consumer name and
// could execute a task twice; start another runner instead.
var errAlreadyRunning = errors.New("runner is already running: create another runner with NewRunner for more parallel work")

// maxClaim bounds the tasks one read hands to rf_claim.
const maxClaim = 256

// RunOption configures RunForever and RunAll.
type RunOption func(*runConfig)

type runConfig struct {
	concurrency    int
	concurrencySet bool        // WithConcurrency was given
	devices        *DevicePool // nil: executions get no device
	gpuSpec        *string     // WithGPUs, resolved into devices by config
	grace          time.Duration
	idleWait       time.Duration
	heartbeatTTL   time.Duration
	reclaimEvery   time.Duration
	metrics        *Metrics // WithMetrics
	metricsAddr    string   // WithMetricsAddr
	taskLogs       TaskLogs // WithTaskLogs, defaults applied by config
	storedInputs   int64    // WithStoredInputMemory
}

// WithConcurrency sets how many tasks run at once. Default 1.
// With devices (WithDevices, WithGPUs) the default is the number of devices.
func WithConcurrency(n int) RunOption {
	return func(c *runConfig) { c.concurrency, c.concurrencySet = n, true }
}

// WithGracePeriod sets how long running tasks may take to finish once the run
// context is canceled; tasks still running then are handed back to the queue.
// Default 30s.
func WithGracePeriod(d time.Duration) RunOption { return func(c *runConfig) { c.grace = d } }

// WithIdleWait sets how long RunAll waits for new work before it decides the
// queue is empty. Default 100ms.
func WithIdleWait(d time.Duration) RunOption { return func(c *runConfig) { c.idleWait = d } }

// WithHeartbeatTTL sets how long the runner counts as alive after its last
// heartbeat; it beats five times per TTL. Once the TTL passes without one,
// other runners queue its tasks again. Default 5s, so a crashed runner's tasks
// start elsewhere within about 6s.
func WithHeartbeatTTL(d time.Duration) RunOption { return func(c *runConfig) { c.heartbeatTTL = d } }

// WithReclaimInterval sets how often the runner looks for dead runners of its
// cluster whose tasks must be queued again. Default 1s.
func WithReclaimInterval(d time.Duration) RunOption { return func(c *runConfig) { c.reclaimEvery = d } }

func (r *Runner) config(ctx context.Context, opts []RunOption) (runConfig, error) {
	cfg := runConfig{concurrency: 1, grace: 30 * time.Second, idleWait: 100 * time.Millisecond,
		heartbeatTTL: 5 * time.Second, reclaimEvery: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.resolveDevices(ctx); err != nil {
		return cfg, err
	}
	if cfg.devices != nil && !cfg.concurrencySet {
		cfg.concurrency = cfg.devices.Len()
	}
	if cfg.concurrency < 1 || cfg.concurrency > 100_000 {
		return cfg, fmt.Errorf("concurrency %d out of range 1..100000", cfg.concurrency)
	}
	if cfg.heartbeatTTL < 500*time.Millisecond {
		return cfg, fmt.Errorf("heartbeat TTL %v is below the 500ms minimum", cfg.heartbeatTTL)
	}
	if cfg.reclaimEvery <= 0 {
		return cfg, fmt.Errorf("reclaim interval %v must be positive", cfg.reclaimEvery)
	}
	if cfg.grace < 0 {
		return cfg, fmt.Errorf("grace period %v is negative", cfg.grace)
	}
	var err error
	if cfg.taskLogs, err = cfg.taskLogs.withDefaults(); err != nil {
		return cfg, err
	}
	if cfg.idleWait < time.Millisecond {
		cfg.idleWait = time.Millisecond
	}
	return cfg, nil
}

// StopNow ends the grace period of a stopping runner at once: tasks still
// running are handed back to the queue (not counted as retries) and the run
// returns. Use it for a second SIGINT/SIGTERM.
func (r *Runner) StopNow() {
	r.stopMu.Lock()
	defer r.stopMu.Unlock()
	select {
	case <-r.stopNow:
	default:
		close(r.stopNow)
	}
}

func (r *Runner) resetStop() <-chan struct{} {
	r.stopMu.Lock()
	defer r.stopMu.Unlock()
	r.stopNow = make(chan struct{})
	return r.stopNow
}

// RunForever claims and executes tasks until ctx is canceled, then stops
// claiming, lets running tasks finish within the grace period, hands back
// those that do not, and returns nil.
func (r *Runner) RunForever(ctx context.Context, opts ...RunOption) error {
	cfg, err := r.config(ctx, opts)
	if err != nil {
		return err
	}
	if !r.active.CompareAndSwap(false, true) {
		return errAlreadyRunning
	}
	defer r.active.Store(false)
	return r.run(ctx, cfg, false)
}

// RunAll claims and executes tasks until none that this runner can run is
// left, then returns nil. Tasks other runners are still working on do not
// keep it waiting.
func (r *Runner) RunAll(ctx context.Context, opts ...RunOption) error {
	cfg, err := r.config(ctx, opts)
	if err != nil {
		return err
	}
	if !r.active.CompareAndSwap(false, true) {
		return errAlreadyRunning
	}
	defer r.active.Store(false)
	return r.run(ctx, cfg, true)
}
