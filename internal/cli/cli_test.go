package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// runAsCLI makes the test binary act as runfleet itself, for tests that need
// a real process (real signals).
const runAsCLI = "RUNFLEET_CLI_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsCLI) == "1" {
		os.Exit(Main(context.Background(), os.Args[1:], Stdio()))
	}
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
}

// testApp is an app writing to buffers, with stdin from a string.
func testApp(stdin string) (*app, *testenv.Buffer, *testenv.Buffer) {
	out, errOut := &testenv.Buffer{}, &testenv.Buffer{}
	return newApp(Streams{In: strings.NewReader(stdin), Out: out, Err: errOut}), out, errOut
}

// runCLI runs runfleet in-process with args.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	a, out, errOut := testApp(stdin)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := a.run(ctx, args)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// fixture is a Redis server of one test and helpers around it.
type fixture struct {
	t   *testing.T
	url string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return &fixture{t: t, url: testenv.NewRedis(t).URL()}
}

// run runs runfleet against the fixture's Redis.
func (f *fixture) run(args ...string) result {
	f.t.Helper()
	return runCLI(f.t, "", append([]string{"--redis", f.url}, args...)...)
}

// runStdin is run with stdin.
func (f *fixture) runStdin(stdin string, args ...string) result {
	f.t.Helper()
	return runCLI(f.t, stdin, append([]string{"--redis", f.url}, args...)...)
}

// ok runs runfleet and requires exit code 0.
func (f *fixture) ok(args ...string) result {
	f.t.Helper()
	r := f.run(args...)
	require.Equal(f.t, 0, r.code, "runfleet %v\nstdout: %s\nstderr: %s", args, r.stdout, r.stderr)
	return r
}

func (f *fixture) client() *workflows.Client {
	f.t.Helper()
	logger := slog.New(slog.NewTextHandler(f.t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := workflows.NewClient(context.Background(), workflows.WithRedisURL(f.url), workflows.WithLogger(logger))
	require.NoError(f.t, err)
	f.t.Cleanup(func() { _ = c.Close() })
	return c
}

// cluster creates a cluster.
func (f *fixture) cluster(slug string) {
	f.t.Helper()
	f.ok("cluster", "create", slug)
}

// register registers the bench tasks in cluster without running them, so
// submissions are accepted but nothing runs.
func (f *fixture) register(cluster string) {
	f.t.Helper()
	_, err := f.client().NewRunner(context.Background(), cluster, benchtask.All()...)
	require.NoError(f.t, err)
}

// runner starts a direct runner of the bench tasks on cluster until the test
// ends.
func (f *fixture) runner(cluster string) {
	f.t.Helper()
	c := f.client()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := c.NewRunner(ctx, cluster, benchtask.All()...)
	require.NoError(f.t, err)
	done := make(chan error, 1)
	go func() {
		done <- r.RunForever(ctx, workflows.WithConcurrency(8), workflows.WithGracePeriod(100*time.Millisecond))
	}()
	f.t.Cleanup(func() {
		cancel()
		require.NoError(f.t, <-done)
	})
}

// submit submits a bench task job and returns its id.
func (f *fixture) submit(cluster, task, input string, extra ...string) string {
	f.t.Helper()
	args := append([]string{"job", "submit", "--cluster", cluster, "--name", "test-" + strings.ToLower(task),
		"--task", task, "--version", benchtask.Version, "--input", input}, extra...)
	r := f.ok(args...)
	id := strings.TrimSpace(r.stdout)
	require.NotEmpty(f.t, id)
	require.NotContains(f.t, id, "\n")
	return id
}

// job reads a job through the CLI's --json output.
func (f *fixture) job(id string) map[string]any {
	f.t.Helper()
	r := f.ok("job", "get", id, "--json")
	var m map[string]any
	require.NoError(f.t, json.Unmarshal([]byte(r.stdout), &m), r.stdout)
	return m
}

// jobCount is the number of jobs a JSON listing shows.
func (f *fixture) jobCount() int {
	f.t.Helper()
	r := f.ok("job", "list", "--json")
	var jobs []map[string]any
	require.NoError(f.t, json.Unmarshal([]byte(r.stdout), &jobs), r.stdout)
	return len(jobs)
}
