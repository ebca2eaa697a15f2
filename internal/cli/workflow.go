package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/internal/project"
	"github.com/runfleet/runfleet/rftype"
)

func (a *app) workflowCmd() *cobra.Command {
	so := &storeOptions{}
	cmd := &cobra.Command{
		Use:   "workflow",
		Short: "Publish, inspect, deploy and undeploy workflow releases",
		Long: `A workflow is a Go program built with the workflows SDK. Each build is packed
into a release: a deterministic .tar.zst artifact whose id is its SHA-256.
Releases are published to an object store (--store) and deployed to clusters,
one active release per workflow per cluster; the cluster's release runners
start it within moments.

Commands that need the workflow read it from --workflow, else from the
runfleet.workflow.toml of the current directory or its parents.`,
		Example: `  runfleet workflow publish dist/tiles.tar.zst --sign-key release.key
  runfleet workflow deploy --cluster dev --latest
  runfleet workflow releases tiles
  runfleet --redis redis://10.0.0.5:6379/0 workflow list --store s3://releases/prod`,
		Args: groupArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(a.workflowInitCmd(), a.workflowBuildCmd(), a.workflowPublishCmd(so), a.workflowKeygenCmd(), a.workflowDeployCmd(so),
		a.workflowUndeployCmd(), a.workflowListCmd(so), a.workflowReleasesCmd(so), a.workflowInspectCmd())
	return cmd
}

// maxArgs allows at most n positional arguments.
func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usageErrorf("unexpected argument %q", args[n])
		}
		return nil
	}
}

// findProject loads the runfleet.workflow.toml of the current directory or
// a parent. found is false when there is none.
func findProject() (cfg project.Config, found bool, err error) {
	cfg, err = project.Find(".")
	if errors.Is(err, project.ErrNoConfig) {
		return project.Config{}, false, nil
	}
	if err != nil {
		return project.Config{}, false, err
	}
	return cfg, true, nil
}

// resolveWorkflow is the --workflow flag, else the project's workflow.
func resolveWorkflow(flag string) (string, error) {
	if flag != "" {
		if err := rftype.ValidateSlug("workflow", flag); err != nil {
			return "", usageErrorf("--workflow: %v", err)
		}
		return flag, nil
	}
	cfg, found, err := findProject()
	if err != nil {
		return "", err
	}
	if !found {
		return "", usageErrorf("missing --workflow: no %s in this directory or its parents names one", project.ConfigFile)
	}
	return cfg.Workflow, nil
}

// resolveCluster is --cluster, else the cluster of --target in the project.
func resolveCluster(cluster, target string) (string, error) {
	switch {
	case cluster != "" && target != "":
		return "", usageErrorf("--cluster and --target are mutually exclusive; name the cluster one way")
	case cluster != "":
		return cluster, nil
	case target == "":
		return "", usageErrorf("missing --cluster (or --target, a deploy target of %s)", project.ConfigFile)
	}
	cfg, found, err := findProject()
	if err != nil {
		return "", err
	}
	if !found {
		return "", usageErrorf("--target %s needs a %s in this directory or its parents; give --cluster instead", target, project.ConfigFile)
	}
	return cfg.Cluster(target)
}

// taskList is "Crop@v0.1, Resize@v1.2".
func taskList[T fmt.Stringer](ts []T) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
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
