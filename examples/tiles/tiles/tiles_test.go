package tiles_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/tiles/tiles"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// alps is a real bounding box (roughly Switzerland); the terrain is synthetic.
var alps = tiles.Area{South: 45.8, West: 5.9, North: 47.8, East: 10.5}

type testBundle struct {
	client *workflows.Client
	runner *workflows.Runner
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := t.Context()
	r := testenv.NewRedis(t)
	client, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	_, err = client.Clusters().Create(ctx, "tiles-test", "tiles test")
	require.NoError(t, err)
	runner, err := client.NewRunner(ctx, "tiles-test", tiles.Tasks()...)
	require.NoError(t, err)
	return &testBundle{client: client, runner: runner}
}

func TestSurvey(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	out := t.TempDir()
	const size = 32

	job, err := b.client.Jobs().Submit(ctx, "tiles-test", "tiles-test",
		&tiles.Survey{Area: alps, Rows: 2, Cols: 2, Size: size, Seed: 42, OutDir: out})
	require.NoError(t, err)
	require.NoError(t, b.runner.RunAll(ctx, workflows.WithConcurrency(4)))

	job, err = b.client.Jobs().Get(ctx, job.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobCompleted, job.State)
	require.Equal(t, []workflows.ProgressInfo{{Label: tiles.ProgressLabel, Total: 4, Done: 4}}, job.Progress)

	list, err := b.client.Jobs().Tasks(ctx, job.ID)
	require.NoError(t, err)
	names := map[string]int{}
	for _, task := range list {
		require.Equal(t, workflows.TaskComputed, task.State, "task %d %s", task.Seq, task.Name)
		require.Equal(t, tiles.Version, task.Version)
		names[task.Name]++
	}
	require.Equal(t, map[string]int{tiles.SurveyName: 1, tiles.TileName: 4, tiles.MergeName: 1}, names)
	require.Contains(t, list[1].Display, "tile 1/4 (lat")

	sum, err := tiles.ReadSummary(out)
	require.NoError(t, err)
	require.Equal(t, job.ID, sum.JobID)
	require.Equal(t, 4, sum.Tiles)
	st := sum.Stats
	require.Equal(t, int64(4*size*size), st.Pixels)
	require.LessOrEqual(t, st.Min, st.Mean)
	require.LessOrEqual(t, st.Mean, st.Max)
	require.Less(t, st.Min, st.Max, "terrain should not be flat")
	require.GreaterOrEqual(t, st.Min, 0.0)
	require.LessOrEqual(t, st.Max, tiles.MaxElevation)
	require.Positive(t, st.StdDev)
	require.Len(t, st.Histogram, tiles.HistogramBins)
	var hist int64
	for _, c := range st.Histogram {
		hist += c
	}
	require.Equal(t, st.Pixels, hist)
	require.True(t, st.Peak.Lat >= alps.South && st.Peak.Lat <= alps.North &&
		st.Peak.Lon >= alps.West && st.Peak.Lon <= alps.East, "peak %+v outside the area", st.Peak)
	require.Equal(t, st.Max, tiles.Elevation(42, st.Peak.Lat, st.Peak.Lon))

	// The merged statistics equal those of the whole area measured at once
	// (up to rounding): the per-tile pixel grids tile the area's grid.
	whole, err := tiles.ComputeStats(ctx, alps, 2*size, 42)
	require.NoError(t, err)
	require.Equal(t, whole.Pixels, st.Pixels)
	require.InDelta(t, whole.Mean, st.Mean, 1e-6)
	require.InDelta(t, whole.StdDev, st.StdDev, 1e-6)
	require.InDelta(t, whole.Min, st.Min, 1e-6)
	require.InDelta(t, whole.Max, st.Max, 1e-6)
	require.Equal(t, whole.Histogram, st.Histogram)
}

func TestTileIsDeterministic(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	out := t.TempDir()
	survey := &tiles.Survey{Area: alps, Rows: 2, Cols: 2, Size: 16, Seed: 7, OutDir: out}

	job, err := b.client.Jobs().Submit(ctx, "tiles-test", "tiles-test", survey)
	require.NoError(t, err)
	require.NoError(t, b.runner.RunAll(ctx))
	job, err = b.client.Jobs().Get(ctx, job.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobCompleted, job.State)

	// The tile measured on the runner, and twice more here, agrees exactly.
	onRunner, err := tiles.ReadTile(out, 1, 0)
	require.NoError(t, err)
	area := alps.Tile(2, 2, 1, 0)
	require.Equal(t, area, onRunner.Area)
	first, err := tiles.ComputeStats(ctx, area, 16, 7)
	require.NoError(t, err)
	second, err := tiles.ComputeStats(ctx, area, 16, 7)
	require.NoError(t, err)
	require.Equal(t, first, second)
	require.Equal(t, first, onRunner.Stats)

	// Another seed is another terrain.
	other, err := tiles.ComputeStats(ctx, area, 16, 8)
	require.NoError(t, err)
	require.NotEqual(t, first.Histogram, other.Histogram)
}

func TestMergeRefusesAnotherSurveysTiles(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	out := t.TempDir()
	job, err := b.client.Jobs().Submit(ctx, "tiles-test", "tiles-test",
		&tiles.Survey{Area: alps, Rows: 1, Cols: 2, Size: 8, Seed: 1, OutDir: out})
	require.NoError(t, err)
	require.NoError(t, b.runner.RunAll(ctx))
	job, err = b.client.Jobs().Get(ctx, job.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobCompleted, job.State)

	// Tiles of seed 1 left in out_dir must not be merged into a seed 2 survey.
	merge := &tiles.Merge{Area: alps, Rows: 1, Cols: 2, Size: 8, Seed: 2, OutDir: out}
	require.ErrorContains(t, merge.Execute(ctx), "written for other survey inputs")
}

func TestSurveyRejectsBadInput(t *testing.T) {
	t.Parallel()
	ok := tiles.Survey{Area: alps, Rows: 2, Cols: 2, OutDir: "/tmp/tiles"}
	for name, tc := range map[string]struct {
		mutate func(*tiles.Survey)
		want   string
	}{
		"inverted latitudes": {func(s *tiles.Survey) { s.Area.South, s.Area.North = 47, 46 }, "want -90 <= south < north <= 90"},
		"antimeridian":       {func(s *tiles.Survey) { s.Area.West, s.Area.East = 170, -170 }, "antimeridian"},
		"no rows":            {func(s *tiles.Survey) { s.Rows = 0 }, "want 1 to 100 tiles per side"},
		"huge tiles":         {func(s *tiles.Survey) { s.Size = 1 << 20 }, "pixels per tile side"},
		"relative out_dir":   {func(s *tiles.Survey) { s.OutDir = "out" }, "absolute directory"},
	} {
		t.Run(name, func(t *testing.T) {
			s := ok
			tc.mutate(&s)
			require.ErrorContains(t, s.Execute(context.Background()), tc.want)
		})
	}
	s := ok
	require.NoError(t, s.Validate())
	require.Equal(t, tiles.DefaultTileSize, s.Size)
}
