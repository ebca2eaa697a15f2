// Package runnerd is the release runner: it runs the workflow releases
// deployed to one cluster. It watches the cluster's deployments (an
// announcement wakes it within milliseconds; a periodic check is the
// fallback), downloads missing releases from the object store into a
// content-addressed cache, verifies digest, signature and manifest, starts
// one worker process per deployed release (speaking package protocol) and
// claims tasks for the union of their identifiers with runners from the
// workflows SDK.
//
// On a new deployment the new release is made ready first (downloaded,
// verified, its worker started and checked); only then does it take new
// tasks while the old release stops claiming and drains its running tasks.
// A release that cannot be made ready is logged and retried with backoff,
// and the release it should replace keeps serving meanwhile. Undeploy drains
// and stops. Two deployed releases exposing the same task name and major
// version are refused: the one deployed later does not run, with an error
// naming both.
package runnerd

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/rftype"
	"github.com/runfleet/runfleet/workflows"
)

// Config configures a release runner.
type Config struct {
	// Client connects to Redis. Required.
	Client *workflows.Client
	// Cluster is the cluster whose deployments to run. Required.
	Cluster string
	// Store holds the releases (see artifacts.Catalog). Required.
	Store artifacts.Store
	// CacheDir keeps unpacked releases. Default: the user cache directory
	// + /runfleet/releases.
	CacheDir string
	// CacheMaxBytes bounds the unpacked releases kept that no deployment
	// uses. Default 10 GiB.
	CacheMaxBytes int64
	// TrustedKeys, when set, makes the runner refuse releases that are
	// unsigned or that no key verifies.
	TrustedKeys []ed25519.PublicKey
	// Runners is how many runners share each release's worker process.
	// Default 1.
	Runners int
	// RunOptions are passed to every runner (concurrency, grace period,
	// heartbeat TTL, …).
	RunOptions []workflows.RunOption
	// Devices are GPUs to hand out, one per execution. Every runner of the
	// daemon, of every release, draws from one pool of them, so no two
	// executions of this process share a device; each execution's device
	// is named in its execute message. Runners whose RunOptions set no
	// concurrency run as many tasks as there are devices. Default: none.
	Devices []workflows.Device
	// CheckInterval is how often deployments are read when no announcement
	// arrives. Default 10s.
	CheckInterval time.Duration
	// StartTimeout bounds a worker's start up to its hello. Default 30s.
	StartTimeout time.Duration
	// Platform selects the entrypoint. Default: this machine's
	// GOOS/GOARCH, e.g. "linux/amd64".
	Platform string
	// Logger receives the runner's and the workers' logs. Default
	// slog.Default().
	Logger *slog.Logger
	// MetricsAddr, when set, serves the Prometheus metrics of every runner
	// of the daemon (one set, summed over its releases) at
	// http://MetricsAddr/metrics while Run runs ("127.0.0.1:0" picks a
	// free port, see Daemon.MetricsAddr). Default: no metrics.
	MetricsAddr string
}

// Daemon is a running release runner.
type Daemon struct {
	cfg     Config
	catalog *artifacts.Catalog
	cache   *artifacts.Cache
	logger  *slog.Logger

	mu       sync.Mutex
	active   map[string]*release // workflow -> release taking tasks
	pending  map[string]*release // workflow -> release being made ready
	draining map[*release]bool
	failed   map[string]failure // release id -> last failure to start
	refused  map[string]string  // workflow -> why its deployment is refused
	wg       sync.WaitGroup
	changed  chan struct{} // internal wake-ups (a release became ready or failed)

	metrics     *workflows.Metrics     // nil without Config.MetricsAddr
	metricsAddr atomic.Pointer[string] // where Run serves them
}

type failure struct {
	workflow string
	err      error
	at       time.Time
	tries    int
}

// backoff doubles from 1s to 1min with the tries.
func (f failure) backoff() time.Duration {
	return min(time.Second<<min(f.tries-1, 6), time.Minute)
}

// Status describes one release the daemon runs or tried to run.
type Status struct {
	Workflow string
	Release  string
	// State is "starting", "running", "draining" or "failed".
	State    string
	Error    string
	PID      int
	Restarts int
}

// New checks cfg and returns a daemon ready to Run.
func New(cfg Config) (*Daemon, error) {
	if cfg.Client == nil {
		return nil, errors.New("runnerd: Config.Client is required")
	}
	if err := rftype.ValidateSlug("cluster", cfg.Cluster); err != nil {
		return nil, fmt.Errorf("runnerd: %w", err)
	}
	if cfg.Store == nil {
		return nil, errors.New("runnerd: Config.Store is required")
	}
	if cfg.CacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("runnerd: no cache directory given and no user cache directory: %w", err)
		}
		cfg.CacheDir = filepath.Join(dir, "runfleet", "releases")
	}
	if cfg.CacheMaxBytes == 0 {
		cfg.CacheMaxBytes = 10 << 30
	}
	if cfg.Runners == 0 {
		cfg.Runners = 1
	}
	if cfg.Runners < 1 || cfg.Runners > 1000 {
		return nil, fmt.Errorf("runnerd: runners %d out of range 1..1000", cfg.Runners)
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 10 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Platform == "" {
		cfg.Platform = runtime.GOOS + "/" + runtime.GOARCH
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Devices) > 0 {
		pool, err := workflows.NewDevicePool(cfg.Devices)
		if err != nil {
			return nil, fmt.Errorf("runnerd: %w", err)
		}
		// Appended last, after the caller's options, on a copy: the
		// caller's slice is not ours to grow.
		cfg.RunOptions = append(slices.Clip(cfg.RunOptions), workflows.WithDevices(pool))
	}
	var metrics *workflows.Metrics
	if cfg.MetricsAddr != "" {
		// One set for every runner of the process: each release's runners
		// add to the same (cluster, task) series.
		metrics = workflows.NewMetrics()
		cfg.RunOptions = append(slices.Clip(cfg.RunOptions), workflows.WithMetrics(metrics))
	}
	return &Daemon{
		metrics:  metrics,
		cfg:      cfg,
		catalog:  &artifacts.Catalog{Store: cfg.Store},
		cache:    &artifacts.Cache{Dir: cfg.CacheDir, MaxBytes: cfg.CacheMaxBytes},
		logger:   cfg.Logger.With(slog.String("cluster", cfg.Cluster)),
		active:   map[string]*release{},
		pending:  map[string]*release{},
		draining: map[*release]bool{},
		failed:   map[string]failure{},
		refused:  map[string]string{},
		changed:  make(chan struct{}, 1),
	}, nil
}

// Run runs the deployments of the cluster until ctx ends, then drains every
// release (runners stop claiming, running tasks get the grace period) and
// returns nil. It returns an error only if it cannot start at all.
func (d *Daemon) Run(ctx context.Context) error {
	if _, err := d.cfg.Client.Clusters().Get(ctx, d.cfg.Cluster); err != nil {
		return fmt.Errorf("runnerd: %w", err)
	}
	lock, err := lockCacheDir(d.cfg.CacheDir)
	if errors.Is(err, errCacheInUse) {
		return fmt.Errorf("runnerd: cache directory %s is in use by another release runner process; give each its own (--cache-dir)", d.cfg.CacheDir)
	}
	if err != nil {
		return fmt.Errorf("runnerd: cache directory: %w", err)
	}
	defer lock.Close()
	if d.metrics != nil {
		serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
		addr, err := d.metrics.Serve(serveCtx, d.cfg.MetricsAddr, d.logger)
		if err != nil {
			stopServe()
			return fmt.Errorf("runnerd: %w", err)
		}
		s := addr.String()
		d.metricsAddr.Store(&s)
		// Served until the releases have drained, so the last counts can
		// be read during the drain.
		defer func() { d.metricsAddr.Store(nil); stopServe() }()
		d.logger.Info("serving metrics", slog.String("url", "http://"+s+"/metrics"))
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	announced := d.cfg.Client.Deployments().Watch(watchCtx, d.cfg.Cluster)
	tick := time.NewTicker(d.cfg.CheckInterval)
	defer tick.Stop()
	d.logger.Info("release runner started", slog.Int("runners", d.cfg.Runners), slog.String("platform", d.cfg.Platform),
		slog.String("gpus", workflows.CUDAVisibleDevices(d.cfg.Devices)))
	d.reconcile(ctx)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-announced:
			d.reconcile(ctx)
		case <-d.changed:
			d.reconcile(ctx)
		case <-tick.C:
			d.reconcile(ctx)
		}
	}
	d.mu.Lock()
	for wf, r := range d.active {
		d.drainLocked(r)
		delete(d.active, wf)
	}
	d.mu.Unlock()
	d.wg.Wait()
	d.logger.Info("release runner stopped")
	return nil
}

// MetricsAddr is the address Run serves metrics on (Config.MetricsAddr
// with the port resolved), or "" when it serves none.
func (d *Daemon) MetricsAddr() string {
	if a := d.metricsAddr.Load(); a != nil {
		return *a
	}
	return ""
}

// StopNow ends the grace period of every draining runner at once (a second
// SIGINT/SIGTERM): their running tasks are handed back.
func (d *Daemon) StopNow() {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Pending releases have no running runners yet, and their fields
	// belong to their bringUp goroutine.
	for _, r := range d.active {
		r.stopNow()
	}
	for r := range d.draining {
		r.stopNow()
	}
}

// all lists every release the daemon holds; d.mu is held.
func (d *Daemon) all() []*release {
	var out []*release
	out = slices.AppendSeq(out, maps.Values(d.active))
	out = slices.AppendSeq(out, maps.Values(d.pending))
	out = slices.AppendSeq(out, maps.Keys(d.draining))
	return out
}

// Status lists the releases the daemon runs, starts or drains, and those
// that failed to start or were refused, sorted by workflow.
func (d *Daemon) Status() []Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Status
	add := func(r *release, state string) {
		s := Status{Workflow: r.dep.Workflow, Release: r.dep.Release, State: state}
		// A pending release's fields belong to its bringUp goroutine.
		if state != "starting" && r.w != nil {
			s.PID, s.Restarts = r.w.pid(), r.w.restartCount()
		}
		out = append(out, s)
	}
	for _, r := range d.active {
		add(r, "running")
	}
	for _, r := range d.pending {
		add(r, "starting")
	}
	for r := range d.draining {
		add(r, "draining")
	}
	for id, f := range d.failed {
		out = append(out, Status{Workflow: f.workflow, Release: id, State: "failed", Error: f.err.Error()})
	}
	for wf, why := range d.refused {
		out = append(out, Status{Workflow: wf, State: "failed", Error: why})
	}
	slices.SortFunc(out, func(a, b Status) int {
		return strings.Compare(a.Workflow+"/"+a.State+"/"+a.Release, b.Workflow+"/"+b.State+"/"+b.Release)
	})
	return out
}

// reconcile makes what runs match the cluster's deployments.
func (d *Daemon) reconcile(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	_, deps, err := d.cfg.Client.Deployments().List(ctx, d.cfg.Cluster)
	if errors.Is(err, workflows.ErrClusterNotFound) {
		// The cluster was deleted, and its deployments with it.
		d.logger.Warn("the cluster does not exist (any more); running nothing")
		deps, err = nil, nil
	}
	if err != nil {
		if ctx.Err() == nil {
			d.logger.Warn("cannot read deployments; keeping what runs", slog.Any("error", err))
		}
		return
	}
	accepted, refused := acceptDeployments(deps)
	d.mu.Lock()
	defer d.mu.Unlock()
	for wf, why := range refused {
		if d.refused[wf] != why {
			d.logger.Error("deployment refused", slog.String("workflow", wf), slog.String("error", why))
		}
	}
	d.refused = refused
	want := map[string]workflows.Deployment{}
	for _, dep := range accepted {
		want[dep.Workflow] = dep
	}
	for id, f := range d.failed {
		if want[f.workflow].Release != id {
			delete(d.failed, id) // no longer deployed: nothing to retry
		}
	}
	for wf, r := range d.active {
		// A release being replaced keeps serving until its successor is
		// ready (bringUp swaps them); only an undeployed one drains here.
		if _, ok := want[wf]; !ok {
			d.logger.Info("workflow undeployed; draining its release", slog.String("workflow", wf), slog.String("release", short(r.dep.Release)))
			d.drainLocked(r)
			delete(d.active, wf)
		}
	}
	for wf, p := range d.pending {
		if dep, ok := want[wf]; !ok || dep.Release != p.dep.Release {
			p.cancelPrepare() // superseded before it was ready
		}
	}
	for wf, dep := range want {
		if r := d.active[wf]; r != nil && r.dep.Release == dep.Release {
			continue
		}
		if p := d.pending[wf]; p != nil && p.dep.Release == dep.Release {
			continue
		}
		if d.failedRecently(dep.Release) {
			continue
		}
		r := &release{d: d, dep: dep, logger: d.logger.With(slog.String("workflow", wf), slog.String("release", short(dep.Release)))}
		r.prepareCtx, r.cancelPrepare = context.WithCancel(ctx)
		d.pending[wf] = r
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.bringUp(ctx, r)
		}()
	}
}

// failedRecently holds back a release that failed to start until its
// backoff (doubling from 1s to 1min) has passed; d.mu is held.
func (d *Daemon) failedRecently(id string) bool {
	f, ok := d.failed[id]
	if !ok {
		return false
	}
	return time.Since(f.at) < f.backoff()
}

// bringUp makes r ready, then lets it take over from the release it
// replaces.
func (d *Daemon) bringUp(ctx context.Context, r *release) {
	start := time.Now()
	err := r.prepare()
	defer r.cancelPrepare()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending[r.dep.Workflow] == r {
		delete(d.pending, r.dep.Workflow)
	}
	if err == nil && (ctx.Err() != nil || r.prepareCtx.Err() != nil) {
		err = errors.New("superseded before it was ready")
	}
	if err != nil {
		// Stopping a worker can take seconds: not under the lock.
		d.mu.Unlock()
		r.teardown()
		d.mu.Lock()
		if r.prepareCtx.Err() == nil {
			f := d.failed[r.dep.Release]
			f = failure{workflow: r.dep.Workflow, err: err, at: time.Now(), tries: f.tries + 1}
			d.failed[r.dep.Release] = f
			r.logger.Error("release cannot run here", slog.Any("error", err), slog.Duration("retry_in", f.backoff()))
			time.AfterFunc(f.backoff(), d.wake)
		}
		return
	}
	delete(d.failed, r.dep.Release)
	old := d.active[r.dep.Workflow]
	d.active[r.dep.Workflow] = r
	r.run(ctx)
	r.logger.Info("release running", slog.Duration("ready_in", time.Since(start)))
	if old != nil {
		old.logger.Info("replaced; draining its running tasks")
		d.drainLocked(old)
	}
}

// drainLocked stops r's runners from claiming and lets their running tasks
// finish; r stops once they have. d.mu is held.
func (d *Daemon) drainLocked(r *release) {
	d.draining[r] = true
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		r.drain()
		d.mu.Lock()
		defer d.mu.Unlock()
		delete(d.draining, r)
		r.logger.Info("release stopped")
		// Under the lock: a release deployed again meanwhile is pending,
		// hence in use, before its bringUp can look it up in the cache.
		inUse := map[string]bool{}
		for _, x := range d.all() {
			inUse[x.dep.Release] = true
		}
		if removed, err := d.cache.Evict(inUse); err != nil {
			d.logger.Warn("cache eviction failed", slog.Any("error", err))
		} else if len(removed) > 0 {
			d.logger.Info("evicted releases from the cache", slog.Any("releases", removed))
		}
	}()
}

func (d *Daemon) wake() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// acceptDeployments refuses deployments whose identifiers collide with an
// earlier-deployed one (same name and major: both would claim the same
// tasks) and returns the rest.
func acceptDeployments(deps []workflows.Deployment) ([]workflows.Deployment, map[string]string) {
	deps = slices.Clone(deps)
	slices.SortFunc(deps, func(a, b workflows.Deployment) int {
		if c := a.DeployedAt.Compare(b.DeployedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Workflow, b.Workflow)
	})
	type owner struct {
		dep workflows.Deployment
		id  string
	}
	owners := map[string]owner{} // name@vMAJOR -> first deployment exposing it
	refused := map[string]string{}
	var accepted []workflows.Deployment
	for _, dep := range deps {
		var why string
		keys := make([]string, 0, len(dep.Tasks))
		for _, t := range dep.Tasks {
			id, err := t.Parse()
			if err != nil {
				why = fmt.Sprintf("release %s of workflow %s lists an invalid task identifier: %v", short(dep.Release), dep.Workflow, err)
				break
			}
			k := fmt.Sprintf("%s@v%d", id.Name, id.Major)
			if o, ok := owners[k]; ok {
				why = fmt.Sprintf("release %s of workflow %s and release %s of workflow %s both expose %s (%s vs %s); undeploy one of them",
					short(o.dep.Release), o.dep.Workflow, short(dep.Release), dep.Workflow, k, o.id, t)
				break
			}
			keys = append(keys, k)
		}
		if why != "" {
			refused[dep.Workflow] = why
			continue
		}
		for i, k := range keys {
			owners[k] = owner{dep: dep, id: dep.Tasks[i].String()}
		}
		accepted = append(accepted, dep)
	}
	return accepted, refused
}

// release is one deployed release on this runner: its unpacked files, its
// worker process and its runners.
type release struct {
	d      *Daemon
	dep    workflows.Deployment
	logger *slog.Logger

	prepareCtx    context.Context
	cancelPrepare context.CancelFunc

	dir     string
	w       *worker
	runners []*workflows.Runner
	runStop context.CancelFunc
	runDone sync.WaitGroup
}

// prepare downloads, verifies and unpacks the release, starts its worker
// and creates its runners: everything short of claiming tasks.
func (r *release) prepare() error {
	ctx := r.prepareCtx
	d := r.d
	rec, err := d.catalog.Release(ctx, r.dep.Workflow, r.dep.Release)
	if err != nil {
		return err
	}
	if rec.ID != r.dep.Release {
		return fmt.Errorf("the store's record for release %s names release %s", r.dep.Release, rec.ID)
	}
	if len(d.cfg.TrustedKeys) > 0 {
		if !rec.Signed() {
			return fmt.Errorf("release %s is unsigned and this runner requires releases signed by a trusted key", r.dep.Release)
		}
		if err := artifacts.Verify(d.cfg.TrustedKeys, r.dep.Release, rec.Signature); err != nil {
			return fmt.Errorf("release %s: %w", r.dep.Release, err)
		}
	}
	dir, m, err := d.cache.Get(ctx, r.dep.Release, func(ctx context.Context) (io.ReadCloser, error) {
		return d.catalog.OpenArtifact(ctx, r.dep.Workflow, r.dep.Release)
	})
	if err != nil {
		return err
	}
	r.dir = dir
	if m.Workflow != r.dep.Workflow {
		return fmt.Errorf("release %s belongs to workflow %q, but it is deployed as %q", r.dep.Release, m.Workflow, r.dep.Workflow)
	}
	entry, ok := m.Entrypoints[d.cfg.Platform]
	if !ok {
		return fmt.Errorf("%w: release %s has entrypoints for %v, this runner is %s", errNoEntrypoint, r.dep.Release, slices.Sorted(maps.Keys(m.Entrypoints)), d.cfg.Platform)
	}
	ids := slices.Clone(m.Tasks) // the worker's hello must list these too
	if !slices.Equal(taskSet(ids), taskSet(r.dep.Tasks)) {
		return fmt.Errorf("the deployment lists tasks %v but release %s's manifest lists %v", r.dep.Tasks, r.dep.Release, ids)
	}
	r.w = &worker{path: filepath.Join(dir, filepath.FromSlash(entry)), dir: dir, want: ids, timeout: d.cfg.StartTimeout,
		logger: r.logger,
		env: []string{protocol.ModeEnv + "=" + protocol.ModeWorker, "RUNFLEET_RELEASE=" + r.dep.Release,
			"RUNFLEET_WORKFLOW=" + r.dep.Workflow, "RUNFLEET_CLUSTER=" + d.cfg.Cluster}}
	if err := r.w.start(ctx); err != nil {
		r.w = nil
		return err
	}
	for range d.cfg.Runners {
		rn, err := d.cfg.Client.NewRemoteRunner(ctx, d.cfg.Cluster, ids, r.w, r.dep.Release)
		if err != nil {
			return err
		}
		r.runners = append(r.runners, rn)
	}
	return nil
}

// taskSet is a list of task identifiers as a sorted list of strings, for
// comparing lists from different sources (deployment, manifest, hello).
func taskSet[T fmt.Stringer](ids []T) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	slices.Sort(out)
	return out
}

// run starts the runners claiming.
func (r *release) run(ctx context.Context) {
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.runStop = stop
	stopOnCtx := context.AfterFunc(ctx, stop) // the daemon stopping drains too
	for _, rn := range r.runners {
		r.runDone.Add(1)
		go func() {
			defer r.runDone.Done()
			if err := rn.RunForever(runCtx, r.d.cfg.RunOptions...); err != nil {
				r.logger.Error("runner stopped with an error", slog.Any("error", err))
			}
		}()
	}
	go func() {
		r.runDone.Wait()
		stopOnCtx()
	}()
}

// drain stops claiming, waits for the runners (their grace period applies)
// and stops the worker.
func (r *release) drain() {
	if r.runStop != nil {
		r.runStop()
	}
	r.runDone.Wait()
	r.teardown()
}

// stopNow hands back the release's running tasks at once.
func (r *release) stopNow() {
	for _, rn := range r.runners {
		rn.StopNow()
	}
}

// teardown stops the worker, if one runs.
func (r *release) teardown() {
	if r.w != nil {
		r.w.stop()
	}
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
