package runnerd_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/runnerd"
	"github.com/runfleet/runfleet/workflows"
)

// platform is this machine's, the only entrypoint test releases carry.
var platform = runtime.GOOS + "/" + runtime.GOARCH

var (
	buildDir  string
	buildMu   sync.Mutex
	buildDone = map[string]string{}
	packDone  = map[string]string{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "runnerd-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// benchBinary builds examples/bench for this platform with benchtask.Build
// set to label, once per label per test binary.
func benchBinary(t testing.TB, label string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildDone[label]; ok {
		return p
	}
	out := filepath.Join(buildDir, "bench-"+label)
	cmd := exec.Command("go", "build", "-trimpath", "-o", out,
		"-ldflags", "-X github.com/runfleet/runfleet/examples/bench/benchtask.Build="+label, "./examples/bench")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "build bench: %s", b)
	buildDone[label] = out
	return out
}

// benchManifest is the manifest of a bench release: the bench tasks.
func benchManifest() artifacts.Manifest {
	m := artifacts.Manifest{FormatVersion: artifacts.FormatVersion, Workflow: "bench",
		Entrypoints: map[string]string{platform: "bin/bench"}}
	for _, task := range benchtask.All() {
		id := workflows.IdentifierOf(task)
		m.Tasks = append(m.Tasks, artifacts.TaskID{Name: id.Name, Version: id.Version})
	}
	return m
}

// fixture is one test's Redis, client, cluster, store and daemon.
type fixture struct {
	ctx     context.Context
	redis   *testenv.Redis
	client  *workflows.Client
	cluster string
	store   artifacts.Store
	catalog *artifacts.Catalog
	cache   string
	logs    *testenv.Buffer
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Clusters().Create(ctx, "dev", "")
	require.NoError(t, err)
	store, err := artifacts.NewFileStore(t.TempDir())
	require.NoError(t, err)
	return &fixture{ctx: ctx, redis: r, client: c, cluster: "dev", store: store,
		catalog: &artifacts.Catalog{Store: store}, cache: t.TempDir(), logs: &testenv.Buffer{}}
}

// pack writes an artifact of binary with manifest m and returns its path;
// packing is slow under the race detector, so each is made once.
func (f *fixture) pack(t testing.TB, m artifacts.Manifest, binary string) string {
	t.Helper()
	key := fmt.Sprintf("%s %v", binary, m.Tasks)
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := packDone[key]; ok {
		return p
	}
	path := filepath.Join(buildDir, fmt.Sprintf("release-%d.tar.zst", len(packDone)))
	packDone[key] = path
	out, err := os.Create(path)
	require.NoError(t, err)
	_, err = artifacts.Pack(out, m, map[string]artifacts.File{"bin/bench": {Path: binary, Executable: true}})
	require.NoError(t, err)
	require.NoError(t, out.Close())
	return path
}

// publish builds (once), packs and publishes a bench release labelled
// label, signed with key unless it is nil.
func (f *fixture) publish(t testing.TB, label string, key ed25519.PrivateKey) artifacts.Release {
	t.Helper()
	rel, _, err := f.catalog.Publish(f.ctx, f.pack(t, benchManifest(), benchBinary(t, label)), key)
	require.NoError(t, err)
	return rel
}

func (f *fixture) deploy(t testing.TB, rel artifacts.Release) {
	t.Helper()
	d := workflows.Deployment{Workflow: rel.Workflow, Release: rel.ID}
	for _, id := range rel.Manifest.Tasks {
		d.Tasks = append(d.Tasks, workflows.TaskIdentifier{Name: id.Name, Version: id.Version})
	}
	_, err := f.client.Deployments().Deploy(f.ctx, f.cluster, d)
	require.NoError(t, err)
}

// start runs a daemon until the test ends.
func (f *fixture) start(t testing.TB, mutate func(*runnerd.Config)) *runnerd.Daemon {
	t.Helper()
	d, stop := f.startStoppable(t, mutate)
	t.Cleanup(stop)
	return d
}

// startStoppable runs a daemon until stop is called.
func (f *fixture) startStoppable(t testing.TB, mutate func(*runnerd.Config)) (*runnerd.Daemon, func()) {
	t.Helper()
	cfg := runnerd.Config{Client: f.client, Cluster: f.cluster, Store: f.store, CacheDir: f.cache,
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RunOptions: []workflows.RunOption{workflows.WithConcurrency(8), workflows.WithGracePeriod(20 * time.Second),
			workflows.WithHeartbeatTTL(2 * time.Second), workflows.WithReclaimInterval(200 * time.Millisecond)}}
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := runnerd.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	return d, sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", f.logs.String())
		}
	})
}

// waitStatus waits until the daemon's status satisfies ok.
func waitStatus(t testing.TB, d *runnerd.Daemon, what string, ok func([]runnerd.Status) bool) []runnerd.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := d.Status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; status: %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// running reports whether exactly the given release runs and nothing else.
func onlyRunning(id string) func([]runnerd.Status) bool {
	return func(st []runnerd.Status) bool {
		return len(st) == 1 && st[0].State == "running" && st[0].Release == id && st[0].PID > 0
	}
}

func (f *fixture) submit(t testing.TB, task workflows.Task) workflows.Job {
	t.Helper()
	j, err := f.client.Jobs().Submit(f.ctx, t.Name(), f.cluster, task)
	require.NoError(t, err)
	return j
}

func (f *fixture) wait(t testing.TB, id string) workflows.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 45*time.Second)
	defer cancel()
	j, err := f.client.Jobs().Wait(ctx, id, 10*time.Millisecond, nil)
	require.NoError(t, err, "job %s did not finish", id)
	return j
}

func (f *fixture) tasks(t testing.TB, id string) []workflows.TaskInfo {
	t.Helper()
	ts, err := f.client.Jobs().Tasks(f.ctx, id)
	require.NoError(t, err)
	return ts
}
