// Package tiles is an example workflow: survey an area by cutting it into
// tiles, measure each tile on its own runner, and merge the measurements.
//
//	tiles.Survey  (root)   validates the input, submits one Tile per tile and
//	                       a Merge that depends on all of them
//	tiles.Tile    (xN)     samples a synthetic elevation field over its tile and
//	                       writes the tile's statistics to OutDir as JSON
//	tiles.Merge   (x1)     runs once every Tile is complete, reads their files
//	                       and writes OutDir/summary.json
//
// The elevation field is generated deterministically from the coordinates and
// a seed (see Elevation), so a tile measured twice, on any runner, gives the
// same numbers, and retrying a tile is always safe.
//
// Tasks hand results to each other through files in OutDir, which must
// therefore be a directory every runner of the cluster can reach (a local
// directory when all runners share a machine, as in the demo). Give each
// survey its own OutDir: Merge refuses tile files written for other inputs.
package tiles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"

	"github.com/runfleet/runfleet/workflows"
)

// Version is the version of every tiles task.
const Version = "v1.0"

// Task names, as given to `runfleet job submit --task`.
const (
	SurveyName = "tiles.Survey"
	TileName   = "tiles.Tile"
	MergeName  = "tiles.Merge"
)

// Limits on a survey's input.
const (
	MaxTilesPerSide = 100
	MaxTileSize     = 4096
	DefaultTileSize = 256
)

// ProgressLabel is the job progress counter the tiles advance.
const ProgressLabel = "tiles"

// SummaryFile is the name of the merged result in OutDir.
const SummaryFile = "summary.json"

// Tasks returns one of each tiles task, ready to register with a runner.
func Tasks() []workflows.Task {
	return []workflows.Task{&Survey{}, &Tile{}, &Merge{}}
}

// Survey is the root task: it cuts Area into Rows x Cols tiles of Size x Size
// pixels each and fans out.
type Survey struct {
	Area   Area   `json:"area"`
	Rows   int    `json:"rows"`
	Cols   int    `json:"cols"`
	Size   int    `json:"size,omitempty"` // pixels per tile side; default 256
	Seed   int64  `json:"seed"`
	OutDir string `json:"out_dir"` // absolute; shared by all runners
}

func (*Survey) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier(SurveyName, Version)
}

// Validate reports what is wrong with the input, after applying defaults.
func (s *Survey) Validate() error {
	if err := s.Area.Validate(); err != nil {
		return fmt.Errorf("survey: %w", err)
	}
	if s.Rows < 1 || s.Rows > MaxTilesPerSide || s.Cols < 1 || s.Cols > MaxTilesPerSide {
		return fmt.Errorf("survey: rows=%d cols=%d: want 1 to %d tiles per side", s.Rows, s.Cols, MaxTilesPerSide)
	}
	if s.Size == 0 {
		s.Size = DefaultTileSize
	}
	if s.Size < 1 || s.Size > MaxTileSize {
		return fmt.Errorf("survey: size=%d: want 1 to %d pixels per tile side", s.Size, MaxTileSize)
	}
	if s.OutDir == "" || !filepath.IsAbs(s.OutDir) {
		return fmt.Errorf("survey: out_dir %q: want an absolute directory that every runner can reach", s.OutDir)
	}
	return nil
}

func (s *Survey) Execute(ctx context.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(s.OutDir, 0o755); err != nil {
		return fmt.Errorf("survey: create out_dir: %w", err)
	}
	n := s.Rows * s.Cols
	workflows.SetDisplay(ctx, fmt.Sprintf("survey %dx%d tiles of %dpx (%s)", s.Rows, s.Cols, s.Size, s.Area))
	tiles := make([]workflows.Task, 0, n)
	for row := range s.Rows {
		for col := range s.Cols {
			tiles = append(tiles, &Tile{
				Index: row*s.Cols + col, Count: n, Row: row, Col: col,
				Area: s.Area.Tile(s.Rows, s.Cols, row, col),
				Size: s.Size, Seed: s.Seed, OutDir: s.OutDir,
			})
		}
	}
	// A tile is a pure function of its input, so retrying one is always safe.
	futures, err := workflows.SubmitSubtasks(ctx, tiles, workflows.WithMaxRetries(2))
	if err != nil {
		return fmt.Errorf("survey: submit tiles: %w", err)
	}
	merge := &Merge{Area: s.Area, Rows: s.Rows, Cols: s.Cols, Size: s.Size, Seed: s.Seed, OutDir: s.OutDir}
	if _, err := workflows.SubmitSubtask(ctx, merge,
		workflows.WithDependencies(futures...), workflows.WithMaxRetries(2)); err != nil {
		return fmt.Errorf("survey: submit merge: %w", err)
	}
	workflows.Progress(ctx, ProgressLabel).Add(int64(n))
	logger(ctx).Info("survey split", slog.Int("tiles", n), slog.String("area", s.Area.String()),
		slog.String("out_dir", s.OutDir))
	return nil
}

// Tile measures one tile and writes OutDir/TileFile(Row, Col).
type Tile struct {
	Index  int    `json:"index"` // Row*cols + Col
	Count  int    `json:"count"` // tiles in the survey
	Row    int    `json:"row"`
	Col    int    `json:"col"`
	Area   Area   `json:"area"`
	Size   int    `json:"size"`
	Seed   int64  `json:"seed"`
	OutDir string `json:"out_dir"`
}

func (*Tile) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier(TileName, Version)
}

func (t *Tile) Execute(ctx context.Context) error {
	workflows.SetDisplay(ctx, fmt.Sprintf("tile %d/%d (%s)", t.Index+1, t.Count, t.Area))
	if err := t.Area.Validate(); err != nil {
		return fmt.Errorf("tile %d: %w", t.Index, err)
	}
	stats, err := ComputeStats(ctx, t.Area, t.Size, t.Seed)
	if err != nil {
		return fmt.Errorf("tile %d: %w", t.Index, err)
	}
	res := TileResult{Index: t.Index, Row: t.Row, Col: t.Col, Area: t.Area, Size: t.Size, Seed: t.Seed, Stats: stats}
	if cur, ok := workflows.CurrentTask(ctx); ok {
		res.JobID = cur.JobID
	}
	if err := writeJSON(filepath.Join(t.OutDir, TileFile(t.Row, t.Col)), res); err != nil {
		return fmt.Errorf("tile %d: %w", t.Index, err)
	}
	workflows.Progress(ctx, ProgressLabel).Done(1)
	return nil
}

// TileResult is what a Tile writes.
type TileResult struct {
	JobID string `json:"job_id,omitempty"` // the job that wrote it
	Index int    `json:"index"`
	Row   int    `json:"row"`
	Col   int    `json:"col"`
	Area  Area   `json:"area"`
	Size  int    `json:"size"`
	Seed  int64  `json:"seed"`
	Stats Stats  `json:"stats"`
}

// TileFile is the name of a tile's result file in OutDir.
func TileFile(row, col int) string { return fmt.Sprintf("tile-r%03d-c%03d.json", row, col) }

// Merge reads every tile's result and writes OutDir/summary.json.
type Merge struct {
	Area   Area   `json:"area"`
	Rows   int    `json:"rows"`
	Cols   int    `json:"cols"`
	Size   int    `json:"size"`
	Seed   int64  `json:"seed"`
	OutDir string `json:"out_dir"`
}

func (*Merge) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier(MergeName, Version)
}

// Summary is the merged result of a survey.
type Summary struct {
	JobID           string  `json:"job_id,omitempty"`
	Area            Area    `json:"area"`
	Rows            int     `json:"rows"`
	Cols            int     `json:"cols"`
	Tiles           int     `json:"tiles"`
	Size            int     `json:"tile_size_px"`
	Seed            int64   `json:"seed"`
	Stats           Stats   `json:"stats"`
	PeakTile        int     `json:"peak_tile"`         // index of the tile holding the highest pixel
	HighestMeanTile int     `json:"highest_mean_tile"` // index of the tile with the highest mean
	HighestMean     float64 `json:"highest_mean_m"`
}

func (m *Merge) Execute(ctx context.Context) error {
	n := m.Rows * m.Cols
	workflows.SetDisplay(ctx, fmt.Sprintf("merge %d tiles", n))
	sum := Summary{Area: m.Area, Rows: m.Rows, Cols: m.Cols, Tiles: n, Size: m.Size, Seed: m.Seed,
		HighestMean: math.Inf(-1)}
	if cur, ok := workflows.CurrentTask(ctx); ok {
		sum.JobID = cur.JobID
	}
	for row := range m.Rows {
		for col := range m.Cols {
			name := filepath.Join(m.OutDir, TileFile(row, col))
			var res TileResult
			if err := readJSON(name, &res); err != nil {
				return fmt.Errorf("merge: %w", err)
			}
			if res.Row != row || res.Col != col || res.Size != m.Size || res.Seed != m.Seed ||
				res.Area != m.Area.Tile(m.Rows, m.Cols, row, col) {
				return fmt.Errorf("merge: %s was written for other survey inputs (job %s); give each survey its own out_dir", name, res.JobID)
			}
			if sum.Stats.Pixels == 0 || res.Stats.Max > sum.Stats.Max {
				sum.PeakTile = res.Index // Merge keeps the earlier peak on a tie, so do we
			}
			sum.Stats.Merge(res.Stats)
			if res.Stats.Mean > sum.HighestMean {
				sum.HighestMean, sum.HighestMeanTile = res.Stats.Mean, res.Index
			}
		}
	}
	if err := writeJSON(filepath.Join(m.OutDir, SummaryFile), sum); err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	st := sum.Stats
	logger(ctx).Info("survey merged", slog.Int("tiles", n), slog.Int64("pixels", st.Pixels),
		slog.Float64("mean_m", round(st.Mean)), slog.Float64("stddev_m", round(st.StdDev)),
		slog.Float64("min_m", round(st.Min)), slog.Float64("max_m", round(st.Max)),
		slog.Float64("peak_lat", st.Peak.Lat), slog.Float64("peak_lon", st.Peak.Lon),
		slog.String("summary", filepath.Join(m.OutDir, SummaryFile)))
	return nil
}

// ReadSummary reads the summary a Merge wrote to dir.
func ReadSummary(dir string) (Summary, error) {
	var s Summary
	err := readJSON(filepath.Join(dir, SummaryFile), &s)
	return s, err
}

// ReadTile reads the result a Tile wrote to dir.
func ReadTile(dir string, row, col int) (TileResult, error) {
	var r TileResult
	err := readJSON(filepath.Join(dir, TileFile(row, col)), &r)
	return r, err
}

// writeJSON writes v to name atomically: a reader sees the old file or the
// whole new one, never a torn write, even if the runner dies halfway.
func writeJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(name), err)
	}
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(f.Name()) // no-op once renamed
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

func readJSON(name string, v any) error {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: file does not exist (is out_dir shared by every runner?)", name)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", name, err)
	}
	return nil
}

// logger is the default logger with the running task's identity.
func logger(ctx context.Context) *slog.Logger {
	l := slog.Default()
	if cur, ok := workflows.CurrentTask(ctx); ok {
		l = l.With(slog.String("job_id", cur.JobID), slog.Int64("task_id", cur.TaskID),
			slog.Int("attempt", cur.Attempt), slog.String("runner_id", cur.RunnerID))
	}
	return l
}

func round(v float64) float64 { return math.Round(v*10) / 10 }
