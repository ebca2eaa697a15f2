package jobgraph_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/jobgraph"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const version = "v1.0"

// Step sets its display name, counts one "steps" unit and fails when Fail
// is set.
type Step struct {
	Display string `json:"display"`
	Fail    string `json:"fail,omitempty"`
}

func (*Step) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Step", version)
}
func (s *Step) Execute(ctx context.Context) error {
	workflows.SetDisplay(ctx, s.Display)
	workflows.Progress(ctx, "steps").Done(1)
	if s.Fail != "" {
		return errors.New(s.Fail)
	}
	return nil
}

// Diamond submits fetch, then left and right waiting for it, then merge
// waiting for both. The merge step's display name is hostile markup.
type Diamond struct{}

func (*Diamond) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Diamond", version)
}
func (*Diamond) Execute(ctx context.Context) error {
	workflows.Progress(ctx, "steps").Add(4)
	a, err := workflows.SubmitSubtask(ctx, &Step{Display: "fetch"})
	if err != nil {
		return err
	}
	lr, err := workflows.SubmitSubtasks(ctx, []workflows.Task{&Step{Display: "left"}, &Step{Display: "right"}},
		workflows.WithDependencies(a))
	if err != nil {
		return err
	}
	_, err = workflows.SubmitSubtask(ctx, &Step{Display: `<script>alert("x")</script> & 'co' #1 ` + "`md`"},
		workflows.WithDependencies(lr...))
	return err
}

// Pipeline submits fetch → parse → store where parse fails, so the job
// fails and store never runs.
type Pipeline struct{}

func (*Pipeline) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Pipeline", version)
}
func (*Pipeline) Execute(ctx context.Context) error {
	workflows.Progress(ctx, "steps").Add(3)
	fetch, err := workflows.SubmitSubtask(ctx, &Step{Display: "fetch pages"})
	if err != nil {
		return err
	}
	parse, err := workflows.SubmitSubtask(ctx, &Step{Display: "parse pages", Fail: "parse page 3: unexpected EOF\nat offset 12"},
		workflows.WithDependencies(fetch))
	if err != nil {
		return err
	}
	_, err = workflows.SubmitSubtask(ctx, &Step{Display: "store rows"}, workflows.WithDependencies(parse))
	return err
}

// Tiles fans out N optional tiles, each with one Tile.Pixel subtask, and a
// final step waiting for all tiles; tiles 7 and 10,007 fail.
type Tiles struct {
	N int `json:"n"`
}

func (*Tiles) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Tiles", version)
}
func (t *Tiles) Execute(ctx context.Context) error {
	workflows.Progress(ctx, "steps").Add(1)
	workflows.Progress(ctx, "tiles").Add(int64(t.N))
	tiles := make([]workflows.Task, t.N)
	for i := range tiles {
		tiles[i] = &Tile{I: i}
	}
	fs, err := workflows.SubmitSubtasks(ctx, tiles, workflows.Optional())
	if err != nil {
		return err
	}
	_, err = workflows.SubmitSubtask(ctx, &Step{Display: "stitch"}, workflows.WithDependencies(fs...))
	return err
}

// Tile renders tile I.
type Tile struct {
	I int `json:"i"`
}

func (*Tile) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Tile", version)
}
func (t *Tile) Execute(ctx context.Context) error {
	workflows.SetDisplay(ctx, fmt.Sprintf("tile %d", t.I))
	if t.I%10_000 == 7 {
		return fmt.Errorf("tile %d: out of memory", t.I)
	}
	workflows.Progress(ctx, "tiles").Done(1)
	return nil
}

// runJob runs root to its end on a real Redis with a real runner and returns
// the job and its tasks.
func runJob(t *testing.T, root workflows.Task) (workflows.Job, []workflows.TaskInfo) {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(testenv.NewRedis(t).URL()), workflows.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Clusters().Create(ctx, "dev", "dev")
	require.NoError(t, err)

	runCtx, cancel := context.WithCancel(ctx)
	r, err := c.NewRunner(runCtx, "dev", &Step{}, &Diamond{}, &Pipeline{}, &Tiles{}, &Tile{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		done <- r.RunForever(runCtx, workflows.WithConcurrency(8), workflows.WithGracePeriod(100*time.Millisecond))
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	job, err := c.Jobs().Submit(ctx, "graph-test", "dev", root)
	require.NoError(t, err)
	waitCtx, stop := context.WithTimeout(ctx, 2*time.Minute)
	defer stop()
	job, err = c.Jobs().Wait(waitCtx, job.ID, 20*time.Millisecond, nil)
	require.NoError(t, err)
	tasks, err := c.Jobs().Tasks(ctx, job.ID)
	require.NoError(t, err)
	return job, tasks
}

// render writes g in every format, with the job id (random) replaced.
func render(t *testing.T, g *jobgraph.Graph) map[string]string {
	t.Helper()
	out := map[string]string{}
	for ext, write := range map[string]func(*bytes.Buffer) error{
		"svg": func(b *bytes.Buffer) error { return g.WriteSVG(b) },
		"dot": func(b *bytes.Buffer) error { return g.WriteDOT(b) },
		"mmd": func(b *bytes.Buffer) error { return g.WriteMermaid(b) },
	} {
		var b bytes.Buffer
		require.NoError(t, write(&b))
		out[ext] = strings.ReplaceAll(b.String(), g.JobID, "JOB-ID")
	}
	return out
}

// golden compares every rendering of g with testdata/<name>.<ext>, or
// rewrites them with -update.
func golden(t *testing.T, name string, g *jobgraph.Graph) map[string]string {
	t.Helper()
	out := render(t, g)
	requireWellFormedXML(t, out["svg"])
	for ext, got := range out {
		path := filepath.Join("testdata", name+"."+ext)
		if *update {
			require.NoError(t, os.MkdirAll("testdata", 0o755))
			require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
			continue
		}
		want, err := os.ReadFile(path)
		require.NoError(t, err, "run go test ./internal/jobgraph -update to create the golden files")
		require.Equal(t, string(want), got, "%s differs from the rendering; rerun with -update if the change is intended", path)
	}
	return out
}

func TestDiamondGraph(t *testing.T) {
	t.Parallel()
	job, tasks := runJob(t, &Diamond{})
	require.Equal(t, workflows.JobCompleted, job.State)
	g := jobgraph.Build(job, tasks, jobgraph.Options{})

	require.Len(t, g.Nodes, 5)
	require.Equal(t, 4, g.Layers, "root, fetch, left and right side by side, merge")
	require.Equal(t, []int{0, 1, 2, 2, 3}, layers(g))
	require.Equal(t, 4, countEdges(g, jobgraph.Child))
	require.Equal(t, 4, countEdges(g, jobgraph.Dependency))

	out := golden(t, "diamond", g)
	// Display names are user input: none of it may come through as markup.
	require.NotContains(t, out["svg"], "<script")
	require.Contains(t, out["svg"], "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;")
	require.NotContains(t, out["mmd"], "<script")
	require.Contains(t, out["mmd"], "#lt;script#gt;alert(#quot;x#quot;)")
	require.Contains(t, out["dot"], `<script>alert(\"x\")</script>`)
	require.Contains(t, out["svg"], "steps 4/4")

	// The same job gives the same bytes.
	again := render(t, jobgraph.Build(job, tasks, jobgraph.Options{}))
	for ext := range out {
		require.Equal(t, out[ext], again[ext], ext)
	}
}

func TestFailedJobGraph(t *testing.T) {
	t.Parallel()
	job, tasks := runJob(t, &Pipeline{})
	require.Equal(t, workflows.JobFailed, job.State)
	g := jobgraph.Build(job, tasks, jobgraph.Options{})
	require.Equal(t, []string{"computed", "computed", "failed", "queued"}, states(g))
	out := golden(t, "failed", g)
	require.Contains(t, out["svg"], "parse page 3: unexpected EOF", "a failed task shows its error's first line")
	require.NotContains(t, out["svg"], "at offset 12")
	require.Contains(t, out["svg"], `stroke="#e53935" stroke-width="2"`, "the failed task is red")
}

func TestFanOutIsCollapsed(t *testing.T) {
	t.Parallel()
	const n = 20_000
	job, tasks := runJob(t, &Tiles{N: n})
	require.Len(t, tasks, 1+n+1)
	g := jobgraph.Build(job, tasks, jobgraph.Options{})

	require.Len(t, g.Nodes, 3, "root, one node for all tiles, stitch")
	tiles := g.Nodes[1]
	require.True(t, tiles.Group)
	require.Equal(t, int64(n), tiles.Count)
	require.Equal(t, "Tile ×20,000", tiles.Title())
	require.Equal(t, "19,998 computed, 2 failed_optional", tiles.Summary())
	require.Equal(t, workflows.TaskFailedOptional, tiles.State, "the group takes its most notable state")
	require.Equal(t, 1, countEdges(g, jobgraph.Dependency), "20,000 dependencies become one edge")
	golden(t, "fanout", g)
}

func TestCollapseThreshold(t *testing.T) {
	t.Parallel()
	build := func(kids int) *jobgraph.Graph {
		tasks := []workflows.TaskInfo{{Seq: 0, Parent: -1, Name: "Root", State: workflows.TaskComputed}}
		for i := 1; i <= kids; i++ {
			tasks = append(tasks, workflows.TaskInfo{Seq: int64(i), Parent: 0, Name: "Leaf", State: workflows.TaskRunning})
			// Each leaf has one grandchild, collapsed with its parent.
		}
		for i := 1; i <= kids; i++ {
			tasks = append(tasks, workflows.TaskInfo{Seq: int64(kids + i), Parent: int64(i), Name: "Sub", State: workflows.TaskQueued})
		}
		return jobgraph.Build(workflows.Job{ID: "j", Name: "n", State: workflows.JobRunning}, tasks, jobgraph.Options{CollapseOver: 3})
	}
	require.Len(t, build(3).Nodes, 1+3+3, "at the threshold every task is a node")
	g := build(4)
	require.Len(t, g.Nodes, 3, "over it, the leaves and their subtasks are one node each")
	require.Equal(t, "Sub ×4", g.Nodes[2].Title())
	require.Equal(t, []int{0, 1, 2}, layers(g))
}

// BenchmarkGraph100k builds the model and the SVG of a 100,000-task fan-out;
// the web console serves this graph and has 300 ms for it.
func BenchmarkGraph100k(b *testing.B) {
	const n = 100_000
	tasks := make([]workflows.TaskInfo, 0, n+2)
	tasks = append(tasks, workflows.TaskInfo{Seq: 0, Parent: -1, Name: "Tiles", State: workflows.TaskComputed})
	for i := int64(1); i <= n; i++ {
		st := workflows.TaskComputed
		if i%50_000 == 7 {
			st = workflows.TaskFailed
		}
		tasks[0].Children = append(tasks[0].Children, i)
		tasks = append(tasks, workflows.TaskInfo{Seq: i, Parent: 0, Name: "Tile", State: st,
			Display: fmt.Sprintf("tile %d", i), Dependents: []int64{n + 1}})
	}
	tasks = append(tasks, workflows.TaskInfo{Seq: n + 1, Parent: 0, Name: "Stitch", State: workflows.TaskQueued})
	job := workflows.Job{ID: "0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d", Name: "tiles", State: workflows.JobFailed}
	b.ReportAllocs()
	for b.Loop() {
		g := jobgraph.Build(job, tasks, jobgraph.Options{})
		var buf bytes.Buffer
		if err := g.WriteSVG(&buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "tasks/op")
}

func requireWellFormedXML(t *testing.T, doc string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		require.NoError(t, err, "the SVG is not well-formed XML")
	}
}

func layers(g *jobgraph.Graph) []int {
	out := make([]int, len(g.Nodes))
	for i, n := range g.Nodes {
		out[i] = n.Layer
	}
	return out
}

func states(g *jobgraph.Graph) []string {
	out := make([]string, len(g.Nodes))
	for i, n := range g.Nodes {
		out[i] = n.State
	}
	return out
}

func countEdges(g *jobgraph.Graph, kind jobgraph.EdgeKind) int {
	n := 0
	for _, e := range g.Edges {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// TestGroupsWaitingOnEachOther: collapsing can merge dependencies into a
// cycle between two groups (a_i → b_i → a_i+1); the graph still lays out,
// and both edges are drawn.
func TestGroupsWaitingOnEachOther(t *testing.T) {
	t.Parallel()
	const n = 25
	tasks := []workflows.TaskInfo{{Seq: 0, Parent: -1, Name: "Root", State: workflows.TaskRunning}}
	for i := int64(0); i < n; i++ {
		a, b := 1+2*i, 2+2*i
		tasks = append(tasks,
			workflows.TaskInfo{Seq: a, Parent: 0, Name: "A", State: workflows.TaskComputed, Dependents: []int64{b}},
			workflows.TaskInfo{Seq: b, Parent: 0, Name: "B", State: workflows.TaskQueued})
		if i+1 < n {
			tasks[len(tasks)-1].Dependents = []int64{a + 2}
		}
	}
	g := jobgraph.Build(workflows.Job{ID: "j", Name: "cycle", State: workflows.JobRunning}, tasks, jobgraph.Options{})
	require.Len(t, g.Nodes, 3)
	require.Equal(t, "A ×25", g.Nodes[1].Title())
	require.Equal(t, "B ×25", g.Nodes[2].Title())
	require.Equal(t, 2, countEdges(g, jobgraph.Dependency), "A→B and B→A")
	require.Equal(t, []int{0, 1, 2}, layers(g))
	var b bytes.Buffer
	require.NoError(t, g.WriteSVG(&b))
}

func TestEmptyJob(t *testing.T) {
	t.Parallel()
	g := jobgraph.Build(workflows.Job{ID: "j", Name: "empty", State: workflows.JobSubmitted}, nil, jobgraph.Options{})
	require.Empty(t, g.Nodes)
	for _, write := range []func(io.Writer) error{g.WriteSVG, g.WriteDOT, g.WriteMermaid} {
		var b bytes.Buffer
		require.NoError(t, write(&b))
		require.NotEmpty(t, b.String())
	}
}

// TestHostileTextStaysText: display names and errors are user input; control
// characters, invalid UTF-8, quotes and newlines must not break any format.
func TestHostileTextStaysText(t *testing.T) {
	t.Parallel()
	hostile := "a\x00b\x1b[31m\xff\"]\n  end\n<b>x</b>"
	tasks := []workflows.TaskInfo{
		{Seq: 0, Parent: -1, Name: "Root", State: workflows.TaskComputed},
		{Seq: 1, Parent: 0, Name: "Bad", State: workflows.TaskRunning, Display: hostile},
		{Seq: 2, Parent: 0, Name: "Err", State: workflows.TaskFailed, Error: hostile},
	}
	g := jobgraph.Build(workflows.Job{ID: "0196a3c4-hostile", Name: hostile, State: workflows.JobFailed}, tasks, jobgraph.Options{})
	out := render(t, g)
	requireWellFormedXML(t, out["svg"])
	require.NotContains(t, out["svg"], "<b>")

	// Mermaid: the header, one line per node, two edges, one class pair per
	// state in use (computed, running, failed).
	lines := strings.Split(strings.TrimSuffix(out["mmd"], "\n"), "\n")
	require.Len(t, lines, 2+3+2+3*2, out["mmd"])
	require.NotContains(t, out["mmd"], `"]`+"\n  end")

	// DOT: each statement stays on its line.
	for _, l := range strings.Split(strings.TrimSuffix(out["dot"], "\n"), "\n") {
		require.Regexp(t, `^(digraph job \{|  .*;|\})$`, l)
	}
}
