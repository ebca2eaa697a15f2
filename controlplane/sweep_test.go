package controlplane_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// sweepBundle is a real redis-server and a client with clusters "dev" (bench
// tasks registered by a runner that has not run yet) and "prod" (empty).
type sweepBundle struct {
	ctx    context.Context
	client *workflows.Client
	runner *workflows.Runner
}

func newSweepBundle(t *testing.T) *sweepBundle {
	t.Helper()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	for _, slug := range []string{"dev", "prod"} {
		_, err = c.Clusters().Create(ctx, slug, "")
		require.NoError(t, err)
	}
	runner, err := c.NewRunner(ctx, "dev", benchtask.All()...)
	require.NoError(t, err)
	return &sweepBundle{ctx: ctx, client: c, runner: runner}
}

func (b *sweepBundle) server(t *testing.T, cfg controlplane.Config) *controlplane.Server {
	t.Helper()
	cfg.Client = b.client
	srv, err := controlplane.New(cfg)
	require.NoError(t, err)
	return srv
}

func (b *sweepBundle) submit(t *testing.T, task workflows.Task) workflows.Job {
	t.Helper()
	j, err := b.client.Jobs().Submit(b.ctx, "sweep-test", "dev", task)
	require.NoError(t, err)
	return j
}

// abandonStage makes a runner stage a large subtask set for the root of a
// new job and then hand the execution back, as a runner whose staging failed
// does. It returns the number of staged subtasks left behind.
func (b *sweepBundle) abandonStage(t *testing.T) int {
	t.Helper()
	const n = queue.InlineSubtasks + 1
	b.submit(t, &benchtask.Sleep{})
	q := b.client.Queue()
	sleep, err := queue.ParseIdentifier("Sleep", benchtask.Version)
	require.NoError(t, err)
	stream := queue.StreamKey("dev", sleep)
	require.NoError(t, q.EnsureGroups(b.ctx, []string{stream}))
	hints, err := q.Read(b.ctx, "r1", []string{stream}, 1, -1)
	require.NoError(t, err)
	held, err := q.Claim(b.ctx, "r1", hints)
	require.NoError(t, err)
	require.Len(t, held, 1)
	noop, err := queue.ParseIdentifier("Noop", benchtask.Version)
	require.NoError(t, err)
	comp := queue.Completion{JobID: held[0].JobID, Seq: held[0].Seq, Attempt: held[0].Attempt,
		Subtasks: make([]queue.SubtaskSpec, n)}
	for i := range comp.Subtasks {
		comp.Subtasks[i] = queue.SubtaskSpec{Task: noop, Cluster: "dev", Input: []byte("{}")}
	}
	require.NoError(t, q.Stage(b.ctx, "r1", &comp))
	_, err = q.Fail(b.ctx, "r1", []queue.Failure{{JobID: held[0].JobID, Seq: held[0].Seq, Attempt: held[0].Attempt,
		Error: "stopped", HandBack: true}})
	require.NoError(t, err)
	require.NoError(t, q.Ack(b.ctx, []queue.Hint{held[0].Hint}))
	return n
}

// failingStore is a file store whose Puts fail.
type failingStore struct{ artifacts.Store }

var errPutRefused = errors.New("injected: put refused")

func (failingStore) Put(context.Context, string, io.Reader) error { return errPutRefused }

// emfLines decodes the metric lines written to w, by cluster.
func emfLines(t *testing.T, w *testenv.Buffer) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(w.String()))
	for sc.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line), "each line is one JSON object: %s", sc.Text())
		out[line["Cluster"].(string)] = line
	}
	return out
}

func TestSweepWritesOneEMFLinePerCluster(t *testing.T) {
	t.Parallel()
	b := newSweepBundle(t)
	b.submit(t, &benchtask.Noop{})
	b.submit(t, &benchtask.Noop{})
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	metrics := &testenv.Buffer{}
	srv := b.server(t, controlplane.Config{Metrics: metrics, Now: func() time.Time { return at }})

	_, err := srv.Sweep(b.ctx)
	require.NoError(t, err)
	lines := emfLines(t, metrics)
	require.Len(t, lines, 2)
	dev := lines["dev"]
	require.Equal(t, map[string]any{
		"Timestamp": float64(at.UnixMilli()),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace":  "runfleet",
			"Dimensions": []any{[]any{"Cluster"}},
			"Metrics": []any{
				map[string]any{"Name": "ReadyTasks", "Unit": "Count"},
				map[string]any{"Name": "RunningTasks", "Unit": "Count"},
				map[string]any{"Name": "LiveRunners", "Unit": "Count"},
				map[string]any{"Name": "OldestReadyAgeSeconds", "Unit": "Seconds"},
			},
		}},
	}, dev["_aws"])
	require.Equal(t, float64(2), dev["ReadyTasks"])
	require.Equal(t, float64(0), dev["RunningTasks"])
	require.Equal(t, float64(0), dev["LiveRunners"])
	require.GreaterOrEqual(t, dev["OldestReadyAgeSeconds"], float64(0))
	require.Equal(t, map[string]any{"Noop@" + benchtask.Version: float64(2)}, dev["ReadyByTask"])

	prod := lines["prod"]
	require.Equal(t, float64(0), prod["ReadyTasks"])
	require.Equal(t, float64(0), prod["OldestReadyAgeSeconds"])
	require.Equal(t, map[string]any{}, prod["ReadyByTask"])
}

func TestSweepArchivesDropsStagesAndKeepsGoingPastAFailingStep(t *testing.T) {
	t.Parallel()
	b := newSweepBundle(t)
	j := b.submit(t, &benchtask.Noop{})
	require.NoError(t, b.runner.RunAll(b.ctx))
	staged := b.abandonStage(t)
	dir := t.TempDir()
	fs, err := artifacts.NewFileStore(dir)
	require.NoError(t, err)
	later := func() time.Time { return time.Now().Add(controlplane.DefaultRetention + time.Hour) }

	// The store refuses the export: the job stays, every other step runs.
	metrics := &testenv.Buffer{}
	srv := b.server(t, controlplane.Config{Store: failingStore{fs}, StoreURL: "file://" + dir, Now: later, Metrics: metrics})
	rep, err := srv.Sweep(b.ctx)
	require.ErrorIs(t, err, errPutRefused)
	require.ErrorContains(t, err, "archive jobs")
	require.Zero(t, rep.Archived)
	require.Equal(t, staged, rep.StagesDropped)
	require.Len(t, emfLines(t, metrics), 2, "metrics are written despite the failed archive")
	got, err := b.client.Jobs().Get(b.ctx, j.ID)
	require.NoError(t, err)
	require.False(t, got.Archived)

	srv = b.server(t, controlplane.Config{Store: fs, StoreURL: "file://" + dir, Now: later})
	rep, err = srv.Sweep(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Archived)
	require.Zero(t, rep.StagesDropped)
	got, err = b.client.Jobs().Get(b.ctx, j.ID)
	require.NoError(t, err)
	require.True(t, got.Archived)
	require.Equal(t, workflows.JobCompleted, got.State)
}

func TestSweepArchivesNothingWithinTheRetentionOrWithoutAStore(t *testing.T) {
	t.Parallel()
	b := newSweepBundle(t)
	j := b.submit(t, &benchtask.Noop{})
	require.NoError(t, b.runner.RunAll(b.ctx))
	fs, err := artifacts.NewFileStore(t.TempDir())
	require.NoError(t, err)

	within := b.server(t, controlplane.Config{Store: fs, StoreURL: "file://" + fs.Root, Retention: time.Hour})
	rep, err := within.Sweep(b.ctx)
	require.NoError(t, err)
	require.Zero(t, rep.Archived)

	later := func() time.Time { return time.Now().Add(30 * 24 * time.Hour) }
	rep, err = b.server(t, controlplane.Config{Now: later}).Sweep(b.ctx)
	require.NoError(t, err)
	require.Zero(t, rep.Archived)
	got, err := b.client.Jobs().Get(b.ctx, j.ID)
	require.NoError(t, err)
	require.False(t, got.Archived)
}
