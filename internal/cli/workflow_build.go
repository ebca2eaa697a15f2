package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/internal/jobgraph"
	"github.com/runfleet/runfleet/internal/project"
)

func (a *app) workflowBuildCmd() *cobra.Command {
	var (
		dir, out string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "build [--dir DIR] [--out FILE] [--json]",
		Short: "Build a release artifact of the workflow project",
		Long: `Build a release of the workflow project whose ` + project.ConfigFile + ` is in
DIR (default: the current directory) or its parents: cross-compile its main
package for each of its platforms (CGO_ENABLED=0, -trimpath, stripped; GOFLAGS
from the environment apply), run the binary in describe mode to learn its task
identifiers, and pack the binaries and a manifest into a deterministic
.tar.zst artifact (default: dist/<workflow>.tar.zst next to the config file).

The same source built with the same Go version gives the same bytes, hence
the same release id (the artifact's SHA-256). The manifest records the Go
version and, when the project is in a clean git work tree, the commit.

Progress goes to stderr; the release id, path, size and tasks to stdout.`,
		Example: `  runfleet workflow build
  runfleet workflow build --dir ~/src/tiles --out /tmp/tiles.tar.zst
  runfleet workflow build --json | jq -r .release_id`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := project.Find(dir)
			if errors.Is(err, project.ErrNoConfig) {
				return &hintError{err: err, hint: "or point at the project with --dir DIR"}
			}
			if err != nil {
				return err
			}
			res, err := project.Build(cmd.Context(), cfg, project.BuildOptions{Out: out, Log: a.err})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.out, res)
			}
			m := res.Manifest
			tasks := make([]string, len(m.Tasks))
			for i, t := range m.Tasks {
				tasks[i] = t.String()
			}
			platforms := make([]string, 0, len(m.Entrypoints))
			for _, p := range cfg.Platforms {
				if _, ok := m.Entrypoints[p]; ok {
					platforms = append(platforms, p)
				}
			}
			tw := newTable(a.out)
			fmt.Fprintf(tw, "Release:\t%s\n", res.ReleaseID)
			fmt.Fprintf(tw, "Workflow:\t%s\n", m.Workflow)
			fmt.Fprintf(tw, "Path:\t%s\n", relativeToWD(res.Path))
			fmt.Fprintf(tw, "Size:\t%s (%s bytes)\n", byteSize(res.Size), jobgraph.Commas(res.Size))
			fmt.Fprintf(tw, "Platforms:\t%s\n", strings.Join(platforms, ", "))
			fmt.Fprintf(tw, "Tasks:\t%s\n", strings.Join(tasks, ", "))
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(a.err, "publish it with: runfleet workflow publish %s\n", relativeToWD(res.Path))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", ".", "directory of the project, or below it")
	f.StringVar(&out, "out", "", "artifact file to write (default: dist/<workflow>.tar.zst next to "+project.ConfigFile+")")
	f.BoolVar(&asJSON, "json", false, "print release_id, path, size and manifest as JSON")
	return cmd
}
