package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/workflows"
)

// deployErr adds a hint to deployment errors.
func deployErr(err error, cluster string) error {
	switch {
	case errors.Is(err, workflows.ErrNotDeployed):
		return &hintError{err: err, hint: "see what is deployed with: runfleet cluster deployments " + cluster}
	case errors.Is(err, artifacts.ErrReleaseNotFound):
		return &hintError{err: err, hint: "list the releases with: runfleet workflow releases WORKFLOW, or publish one with: runfleet workflow publish"}
	}
	return err
}

func (a *app) workflowDeployCmd(so *storeOptions) *cobra.Command {
	var (
		cluster, target, release, workflow string
		latest, asJSON                     bool
	)
	cmd := &cobra.Command{
		Use:   "deploy (--cluster C | --target T) (--release ID | --latest) [--workflow SLUG]",
		Short: "Make a published release the active release of its workflow in a cluster",
		Long: `Deploy a published release to a cluster: it becomes the workflow's one active
release there, replacing the previous one, and the cluster's release runners
start it within moments (the old release drains its running tasks, then
stops). Its task identifiers are registered at once, so jobs can be submitted
right away.

The release must be in the store (--release takes its id or a unique prefix
of at least 8 digits; --latest the release published last). A deployment is
refused when another workflow deployed to the cluster has a task of the same
name and major version, since both would claim those tasks.

The workflow comes from --workflow, else runfleet.workflow.toml; --target
names a deploy target of that file instead of --cluster.`,
		Example: `  runfleet workflow deploy --cluster dev --latest
  runfleet workflow deploy --target prod --release 3f2a9c1d
  runfleet workflow deploy --cluster gpu --workflow tiles --release 3f2a9c1d0e4b --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			switch {
			case release != "" && latest:
				return usageErrorf("--release and --latest are mutually exclusive; pick the release one way")
			case release == "" && !latest:
				return usageErrorf("missing --release ID or --latest")
			}
			wf, err := resolveWorkflow(workflow)
			if err != nil {
				return err
			}
			cl, err := resolveCluster(cluster, target)
			if err != nil {
				return err
			}
			cat, _, err := so.catalog(cmd.Context())
			if err != nil {
				return err
			}
			var rel artifacts.Release
			if latest {
				rel, err = cat.Latest(ctx, wf)
			} else {
				rel, err = cat.Release(ctx, wf, release)
			}
			if err != nil {
				return deployErr(err, cl)
			}
			tasks := make([]workflows.TaskIdentifier, len(rel.Manifest.Tasks))
			for i, t := range rel.Manifest.Tasks {
				tasks[i] = workflows.TaskIdentifier{Name: t.Name, Version: t.Version}
			}
			return a.withClient(ctx, func(c *workflows.Client) error {
				prev, err := c.Deployments().Deploy(ctx, cl, workflows.Deployment{Workflow: wf, Release: rel.ID, Tasks: tasks})
				if err != nil {
					return deployErr(err, cl)
				}
				if asJSON {
					return writeJSON(a.out, map[string]any{"cluster": cl, "workflow": wf, "release": rel.ID,
						"previous": prev, "changed": prev != rel.ID, "tasks": tasks})
				}
				switch prev {
				case rel.ID:
					fmt.Fprintf(a.out, "workflow %s release %s is already deployed to cluster %s; nothing changed\n", wf, shortID(rel.ID), cl)
				case "":
					fmt.Fprintf(a.out, "deployed workflow %s release %s to cluster %s\n", wf, shortID(rel.ID), cl)
				default:
					fmt.Fprintf(a.out, "deployed workflow %s release %s to cluster %s, replacing release %s\n", wf, shortID(rel.ID), cl, shortID(prev))
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cluster, "cluster", "", "cluster slug to deploy to")
	f.StringVar(&target, "target", "", "deploy target of runfleet.workflow.toml naming the cluster, instead of --cluster")
	f.StringVar(&release, "release", "", "release id, or a unique prefix of at least 8 of its digits")
	f.BoolVar(&latest, "latest", false, "deploy the workflow's release published last")
	f.StringVar(&workflow, "workflow", "", "workflow slug (default: the project's)")
	f.BoolVar(&asJSON, "json", false, "print the outcome as JSON (cluster, workflow, release, previous, changed, tasks)")
	so.register(cmd.Flags())
	return cmd
}

func (a *app) workflowUndeployCmd() *cobra.Command {
	var (
		cluster, target, workflow string
		asJSON                    bool
	)
	cmd := &cobra.Command{
		Use:   "undeploy (--cluster C | --target T) [--workflow SLUG]",
		Short: "Remove a workflow's deployment from a cluster",
		Long: `Remove the workflow's deployment from a cluster: its release runners drain the
release's running tasks and stop it. Jobs for its tasks can still be
submitted; they wait until a runner serves them again.`,
		Example: `  runfleet workflow undeploy --cluster dev
  runfleet workflow undeploy --cluster gpu --workflow tiles`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			wf, err := resolveWorkflow(workflow)
			if err != nil {
				return err
			}
			cl, err := resolveCluster(cluster, target)
			if err != nil {
				return err
			}
			return a.withClient(ctx, func(c *workflows.Client) error {
				rel, err := c.Deployments().Undeploy(ctx, cl, wf)
				if err != nil {
					return deployErr(err, cl)
				}
				if asJSON {
					return writeJSON(a.out, map[string]string{"cluster": cl, "workflow": wf, "release": rel})
				}
				fmt.Fprintf(a.out, "undeployed workflow %s (release %s) from cluster %s\n", wf, shortID(rel), cl)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cluster, "cluster", "", "cluster slug")
	f.StringVar(&target, "target", "", "deploy target of runfleet.workflow.toml naming the cluster, instead of --cluster")
	f.StringVar(&workflow, "workflow", "", "workflow slug (default: the project's)")
	f.BoolVar(&asJSON, "json", false, "print the outcome as JSON (cluster, workflow, release)")
	return cmd
}

func (a *app) clusterDeploymentsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "deployments SLUG",
		Short: "List the workflow releases deployed to a cluster",
		Example: `  runfleet cluster deployments dev
  runfleet cluster deployments dev --json | jq -r '.deployments[].release'`,
		Args: exactArgs("SLUG"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return a.withClient(ctx, func(c *workflows.Client) error {
				rev, deps, err := c.Deployments().List(ctx, args[0])
				if err != nil {
					return err
				}
				if asJSON {
					if deps == nil {
						deps = []workflows.Deployment{}
					}
					return writeJSON(a.out, map[string]any{"cluster": args[0], "revision": rev, "deployments": deps})
				}
				if len(deps) == 0 {
					fmt.Fprintf(a.err, "nothing is deployed to cluster %s; deploy with: runfleet workflow deploy --cluster %s --latest --workflow SLUG\n", args[0], args[0])
					return nil
				}
				tw := newTable(a.out)
				fmt.Fprintln(tw, "WORKFLOW\tRELEASE\tTASKS\tDEPLOYED\tBY")
				for _, d := range deps {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Workflow, shortID(d.Release), firstLine(taskList(d.Tasks), 80),
						timestamp(d.DeployedAt), d.By)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the cluster's revision and deployments as JSON")
	return cmd
}
