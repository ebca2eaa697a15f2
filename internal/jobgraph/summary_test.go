package jobgraph_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/jobgraph"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// Leaf does nothing, or fails.
type Leaf struct {
	Fail bool `json:"fail,omitempty"`
}

func (*Leaf) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Leaf", version)
}
func (l *Leaf) Execute(context.Context) error {
	if l.Fail {
		return errors.New("leaf failed")
	}
	return nil
}

// Source is a task others wait for.
type Source struct{}

func (*Source) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Source", version)
}
func (*Source) Execute(context.Context) error { return nil }

// Tail is a lone task of its name at the end of a fan-out.
type Tail struct{}

func (*Tail) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Tail", version)
}
func (*Tail) Execute(context.Context) error { return nil }

// Spread submits a Source, N optional Leafs (those in Fail fail) with one
// more in the middle of them that waits for the Source, a Tail, and Nested
// Spreads of N each.
type Spread struct {
	N      int   `json:"n"`
	Fail   []int `json:"fail,omitempty"`
	Nested int   `json:"nested,omitempty"`
}

func (*Spread) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Spread", version)
}
func (s *Spread) Execute(ctx context.Context) error {
	fail := map[int]bool{}
	for _, i := range s.Fail {
		fail[i] = true
	}
	src, err := workflows.SubmitSubtask(ctx, &Source{})
	if err != nil {
		return err
	}
	for i := range s.N {
		if _, err := workflows.SubmitSubtask(ctx, &Leaf{Fail: fail[i]}, workflows.Optional()); err != nil {
			return err
		}
		if i == s.N/2 {
			if _, err := workflows.SubmitSubtask(ctx, &Leaf{}, workflows.WithDependencies(src)); err != nil {
				return err
			}
		}
	}
	if _, err := workflows.SubmitSubtask(ctx, &Tail{}); err != nil {
		return err
	}
	for range s.Nested {
		if _, err := workflows.SubmitSubtask(ctx, &Spread{N: s.N}); err != nil {
			return err
		}
	}
	return nil
}

// A graph drawn from GraphSummary (whole buckets of computed leaves read as
// counts) is the graph drawn from every task's full record, byte for byte:
// groups, counts, failures, and the arrow into a bucket that would
// otherwise have been counted.
func TestSummaryDrawsTheSameGraph(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(testenv.NewRedis(t).URL()),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Clusters().Create(ctx, "dev", "dev")
	require.NoError(t, err)
	r, err := c.NewRunner(ctx, "dev", &Spread{}, &Leaf{}, &Source{}, &Tail{})
	require.NoError(t, err)
	j, err := c.Jobs().Submit(ctx, "summary", "dev", &Spread{N: 1000, Fail: []int{7, 300, 999}, Nested: 3})
	require.NoError(t, err)
	require.NoError(t, r.RunAll(ctx, workflows.WithConcurrency(64)))
	job, err := c.Jobs().Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobCompleted, job.State)

	full, err := c.Jobs().Tasks(ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, full, 1+1003+3+3*1003)
	want := jobgraph.Build(job, full, jobgraph.Options{})

	listed, leaves, err := c.Queue().GraphSummary(ctx, j.ID)
	require.NoError(t, err)
	require.NotEmpty(t, leaves)
	counted := int64(0)
	for _, l := range leaves {
		counted += l.Count
	}
	require.Equal(t, int64(len(full)), int64(len(listed))+counted, "every task listed or counted, once")
	require.Less(t, len(listed), len(full)/4, "most tasks were counted")
	for _, l := range leaves {
		require.NotEqual(t, "Tail", l.Name, "a lone task is listed, to be drawn on its own")
	}
	got := jobgraph.Build(job, listed, jobgraph.Options{Leaves: leaves})
	named, err := c.Queue().Tasks(ctx, j.ID, got.NodeSeqs())
	require.NoError(t, err)
	got.Label(named)

	require.Equal(t, want.Tasks, got.Tasks)
	var a, b bytes.Buffer
	require.NoError(t, want.WriteSVG(&a))
	require.NoError(t, got.WriteSVG(&b))
	require.Equal(t, a.String(), b.String())
	require.Equal(t, 4, countEdges(want, jobgraph.Dependency), "the arrows from the Sources to the Leaf groups are drawn")
}
