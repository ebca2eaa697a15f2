package cli

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/internal/project"
)

func (a *app) workflowInitCmd() *cobra.Command {
	var (
		dir  string
		opts project.InitOptions
	)
	cmd := &cobra.Command{
		Use:   "init SLUG [--dir DIR] [--module PATH] [--cluster C] [--sdk DIR] [--tidy]",
		Short: "Create a workflow project: runfleet.workflow.toml, main.go and go.mod",
		Long: `Create a Go workflow project in DIR (default: the current directory; created
if missing): ` + project.ConfigFile + ` naming the workflow SLUG and a deploy
target "dev" for cluster C, a main.go with one example task (Greet v1.0) that
is both a release binary and a direct runner, a go.mod for module PATH
(default: SLUG) and a .gitignore ignoring dist/. Existing files are never
overwritten: a directory that already has ` + project.ConfigFile + `, main.go or
go.mod is refused.

The runfleet SDK is not published to a module proxy, so go.mod points at its
source with a replace directive: --sdk DIR, else the source this runfleet was
built from when it can be found. Without either, go.mod explains how to add
it. --tidy then runs go mod tidy, which fetches the dependencies.`,
		Example: `  runfleet workflow init tiles --tidy
  runfleet workflow init tiles --dir ~/src/tiles --module example.com/me/tiles --cluster tiles-dev
  runfleet workflow init bench --sdk ~/src/runfleet --tidy`,
		Args: exactArgs("SLUG"),
		RunE: func(cmd *cobra.Command, args []string) error {
			slug := args[0]
			if !project.ValidSlug(slug) {
				return usageErrorf("invalid workflow slug %q: use 1 to 100 lowercase letters, digits and dashes, starting with a letter or digit", slug)
			}
			if opts.Cluster != "" && !project.ValidSlug(opts.Cluster) {
				return usageErrorf("invalid --cluster %q: use 1 to 100 lowercase letters, digits and dashes, starting with a letter or digit", opts.Cluster)
			}
			opts.Log = a.err
			files, err := project.Init(dir, slug, opts)
			switch {
			case errors.Is(err, project.ErrInvalidConfig):
				return &usageError{err: err}
			case errors.Is(err, project.ErrExists):
				return &hintError{err: err, hint: "create the project in a new directory with --dir DIR"}
			case err != nil:
				return err
			}
			abs, _ := filepath.Abs(dir)
			fmt.Fprintf(a.out, "created workflow %s in %s:\n", slug, abs)
			for _, f := range files {
				if rel, err := filepath.Rel(abs, f); err == nil {
					f = rel
				}
				fmt.Fprintf(a.out, "  %s\n", f)
			}
			fmt.Fprintln(a.out, "next:")
			if wd, err := os.Getwd(); err != nil || wd != abs {
				fmt.Fprintf(a.out, "  cd %s\n", relativeToWD(abs))
			}
			if !opts.Tidy {
				fmt.Fprintln(a.out, "  go mod tidy")
			}
			fmt.Fprintf(a.out, "  go run . -cluster %s     (a direct runner: needs Redis and the cluster)\n", cmp.Or(opts.Cluster, "dev"))
			fmt.Fprintf(a.out, "  runfleet workflow build  (a release: dist/%s.tar.zst)\n", slug)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", ".", "directory to create the project in")
	f.StringVar(&opts.Module, "module", "", "Go module path (default: the slug)")
	f.StringVar(&opts.Cluster, "cluster", "", `cluster of the example deploy target "dev" (default "dev")`)
	f.StringVar(&opts.SDKDir, "sdk", "", "directory of the runfleet SDK source for go.mod's replace directive (default: found from this runfleet)")
	f.BoolVar(&opts.Tidy, "tidy", false, "run go mod tidy in the new project")
	return cmd
}

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
			fmt.Fprintf(tw, "Size:\t%s (%s bytes)\n", byteSize(res.Size), commas(res.Size))
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

// relativeToWD shows path relative to the working directory when it is
// below it, else as is.
func relativeToWD(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return path
	}
	return rel
}
