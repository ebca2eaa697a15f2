package console_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/console"
	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/workflows"
)

// Tiles fans out N optional Tiles, of which tiles 7 and N/2+7 fail, and a
// Stitch that waits for all of them: the shape of a big job.
type Tiles struct {
	N int `json:"n"`
}

func (*Tiles) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Tiles", version)
}
func (t *Tiles) Execute(ctx context.Context) error {
	workflows.Progress(ctx, "tiles").Add(int64(t.N))
	tiles := make([]workflows.Task, t.N)
	for i := range tiles {
		tiles[i] = &Tile{I: i, Fail: i == 7 || i == t.N/2+7}
	}
	fs, err := workflows.SubmitSubtasks(ctx, tiles, workflows.Optional())
	if err != nil {
		return err
	}
	_, err = workflows.SubmitSubtask(ctx, &Step{Label: "stitch"}, workflows.WithDependencies(fs...))
	return err
}

// Tile renders tile I, or fails.
type Tile struct {
	I    int  `json:"i"`
	Fail bool `json:"fail,omitempty"`
}

func (*Tile) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Tile", version)
}
func (t *Tile) Execute(ctx context.Context) error {
	if t.Fail {
		return fmt.Errorf("tile %d: out of memory", t.I)
	}
	workflows.Progress(ctx, "tiles").Done(1)
	return nil
}

// bigJob runs a job of n Tiles (n+2 tasks) to its end with a runner of its
// own and returns its id.
func (b *testBundle) bigJob(tb testing.TB, n int) string {
	tb.Helper()
	r, err := b.client.NewRunner(b.ctx, "dev", &Tiles{}, &Tile{}, &Step{})
	require.NoError(tb, err)
	j, err := b.client.Jobs().Submit(b.ctx, "tiles", "dev", &Tiles{N: n})
	require.NoError(tb, err)
	require.NoError(tb, r.RunAll(b.ctx, workflows.WithConcurrency(512), workflows.WithIdleWait(time.Millisecond)))
	j, err = b.client.Jobs().Get(b.ctx, j.ID)
	require.NoError(tb, err)
	require.Equal(tb, workflows.JobCompleted, j.State)
	require.Equal(tb, int64(2), j.TaskCounts[workflows.TaskFailedOptional])
	return j.ID
}

// BenchmarkJobPage100k serves the job page of a 100,002-task job (a
// 100,000-tile fan-out, two tiles failed) over HTTP from a gateway on real
// Redis. "page" is the page itself: above inlineGraphTasks the graph is not
// drawn before it answers (the failures and the first page of tasks are);
// "graph" is what the page then loads, the graph drawn from every task
// (the cache off); "cached" is the page of the finished job once its graph
// is cached, inline. It reports the median and p90 request time.
//
// RUNFLEET_BENCH_TILES sets another number of tiles (the name stays).
func BenchmarkJobPage100k(b *testing.B) {
	tiles := 100_000
	if s := os.Getenv("RUNFLEET_BENCH_TILES"); s != "" {
		var err error
		tiles, err = strconv.Atoi(s)
		require.NoError(b, err)
	}
	group := "Tile ×" + strconv.Itoa(tiles)
	for i := len(group) - 3; i > len("Tile ×"); i -= 3 {
		group = group[:i] + "," + group[i:] // as the graph writes counts
	}
	for _, c := range []struct {
		name, path, want string
		cache            int
	}{
		{"page", "", "data-graph-src", -1},
		{"graph", "/graph.svg", group, -1},
		{"cached", "", group, 0},
	} {
		b.Run(c.name, func(b *testing.B) {
			bd := setupWith(b, console.Config{GraphCache: c.cache})
			id := bd.bigJob(b, tiles)
			br := bd.browser(b)
			br.login(bd.token(b, controlplane.ScopeRead))
			get := func(path string) time.Duration {
				start := time.Now()
				p := br.get(path)
				d := time.Since(start)
				if p.status != http.StatusOK || !strings.Contains(p.body, c.want) {
					b.Fatalf("GET %s: %d, %q missing: %.300s", path, p.status, c.want, p.body)
				}
				return d
			}
			br.get("/jobs/" + id + "/graph.svg") // warm connections and, when on, the cache
			// At least 15 requests, so a median means something with
			// -benchtime 1x too.
			samples := max(b.N, 15)
			took := make([]time.Duration, 0, samples)
			b.ResetTimer()
			for range samples {
				took = append(took, get("/jobs/"+id+c.path))
			}
			b.StopTimer()
			slices.Sort(took)
			// ns/op is the median request, not the loop's mean.
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "ns/op")
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
			b.ReportMetric(float64(took[len(took)*9/10].Microseconds())/1000, "p90-ms")
			b.ReportMetric(float64(tiles+2), "tasks")
		})
	}
}
