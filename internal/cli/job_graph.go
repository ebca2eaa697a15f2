package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/internal/atomicfile"
	"github.com/runfleet/runfleet/internal/jobgraph"
	"github.com/runfleet/runfleet/workflows"
)

// graphFormats maps --format to a renderer, in the order help lists them.
var graphFormats = []struct {
	name  string
	write func(*jobgraph.Graph, io.Writer) error
}{
	{"svg", (*jobgraph.Graph).WriteSVG},
	{"dot", (*jobgraph.Graph).WriteDOT},
	{"mermaid", (*jobgraph.Graph).WriteMermaid},
}

func (a *app) jobGraphCmd() *cobra.Command {
	var (
		format string
		out    string
	)
	cmd := &cobra.Command{
		Use:   "graph ID [--format svg|dot|mermaid] [--out F]",
		Short: "Draw a job's task tree and dependencies",
		Long: fmt.Sprintf(`Draw a job as a graph: every task with its name, id, state and display name
(a failed task shows its error), arrows from parents to the subtasks they
submitted, and dashed arrows from a task to those that wait for it. Tasks are
coloured by state; the job's progress counters head the picture.

More than %d subtasks of one parent with the same task name are drawn as one
node with counts per state ("Tile ×20,000: 19,998 computed, 2 failed"), their
own subtasks collapsed with them, so big jobs stay readable.

--format svg (the default) is a self-contained picture laid out by runfleet;
dot is for Graphviz (dot -Tpng); mermaid is a flowchart for Markdown pages.
The same job gives the same output. --out writes to a file, replaced whole, instead
of stdout. Archived jobs are drawn from their archive.`, jobgraph.DefaultCollapseOver),
		Example: `  runfleet job graph 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --out job.svg
  runfleet job graph 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --format dot | dot -Tpng -o job.png
  runfleet job graph 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --format mermaid >> report.md`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			write, err := graphWriter(format)
			if err != nil {
				return err
			}
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				job, err := c.Jobs().Get(cmd.Context(), args[0])
				if err != nil {
					return jobErr(err)
				}
				g, err := buildGraph(cmd.Context(), c, job)
				if err != nil {
					return jobErr(err)
				}
				if out == "" || out == "-" {
					return write(g, a.out)
				}
				err = atomicfile.Write(out, filepath.Join(filepath.Dir(out), ".runfleet-graph-*"), func(f *os.File) error {
					return write(g, f)
				})
				if err != nil {
					return fmt.Errorf("write graph to %s: %w", out, err)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "svg", "output format: svg, dot or mermaid")
	cmd.Flags().StringVar(&out, "out", "", "write to this file instead of stdout (replaced atomically)")
	return cmd
}

// buildGraph draws job as the console does: a job in Redis is read with
// the few fields the layout needs per task (a million-task job in seconds,
// not minutes) and full records only for the nodes drawn; an archived job
// (or one being purged after archiving) from its archive.
func buildGraph(ctx context.Context, c *workflows.Client, job workflows.Job) (*jobgraph.Graph, error) {
	// A job being purged is still partly in Redis: its archive is whole.
	_, archived, err := c.Queue().ArchiveRecordOf(ctx, job.ID)
	if err != nil {
		return nil, err
	}
	if !job.Archived && !archived {
		light, leaves, err := c.Queue().GraphSummary(ctx, job.ID)
		if err == nil {
			g := jobgraph.Build(job, light, jobgraph.Options{Leaves: leaves})
			full, err := c.Queue().Tasks(ctx, job.ID, g.NodeSeqs())
			if err != nil {
				return nil, err
			}
			g.Label(full)
			return g, nil
		}
		if !errors.Is(err, workflows.ErrJobNotFound) {
			return nil, err
		}
		// Archived since it was read: draw it from its archive.
	}
	tasks, err := c.Jobs().Tasks(ctx, job.ID)
	if err != nil {
		return nil, err
	}
	return jobgraph.Build(job, tasks, jobgraph.Options{}), nil
}

func graphWriter(format string) (func(*jobgraph.Graph, io.Writer) error, error) {
	names := make([]string, len(graphFormats))
	for i, f := range graphFormats {
		if f.name == format {
			return f.write, nil
		}
		names[i] = f.name
	}
	return nil, usageErrorf("unknown --format %q: want one of %s", format, strings.Join(names, ", "))
}
