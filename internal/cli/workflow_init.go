package cli

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/internal/project"
	"github.com/runfleet/runfleet/rftype"
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
			if err := rftype.ValidateSlug("workflow", slug); err != nil {
				return usageErrorf("%v", err)
			}
			if opts.Cluster != "" {
				if err := rftype.ValidateSlug("cluster", opts.Cluster); err != nil {
					return usageErrorf("--cluster: %v", err)
				}
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
