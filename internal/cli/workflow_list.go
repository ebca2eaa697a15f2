package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/workflows"
)

func (a *app) workflowListCmd(so *storeOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the workflows in the store, their latest release and where they are deployed",
		Long: `List the workflows with releases in the store: the latest release, when it was
published, how many releases there are and, when Redis is reachable, the
clusters each workflow is deployed to (with the release, when it is not the
latest).`,
		Example: `  runfleet workflow list
  runfleet workflow list --store s3://releases/prod --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cat, storeURL, err := so.catalog(cmd.Context())
			if err != nil {
				return err
			}
			wfs, err := cat.Workflows(ctx)
			if err != nil {
				return err
			}
			type deployedTo struct {
				Cluster string `json:"cluster"`
				Release string `json:"release"`
			}
			type row struct {
				Workflow    string       `json:"workflow"`
				Latest      string       `json:"latest"`
				PublishedAt time.Time    `json:"published_at"`
				Releases    int          `json:"releases"`
				Deployments []deployedTo `json:"deployments"` // null when Redis was not reachable
			}
			rows := make([]row, 0, len(wfs))
			for _, wf := range wfs {
				rels, err := cat.Releases(ctx, wf)
				if err != nil {
					return err
				}
				r := row{Workflow: wf, Releases: len(rels)}
				latest, err := cat.Latest(ctx, wf)
				switch {
				case err == nil:
					r.Latest, r.PublishedAt = latest.ID, latest.PublishedAt
				case errors.Is(err, artifacts.ErrReleaseNotFound) && len(rels) > 0:
					r.Latest, r.PublishedAt = rels[0].ID, rels[0].PublishedAt
				case !errors.Is(err, artifacts.ErrReleaseNotFound):
					return err
				}
				rows = append(rows, r)
			}
			deployed, derr := a.deploymentsByWorkflow(ctx)
			if derr == nil {
				for i := range rows {
					rows[i].Deployments = []deployedTo{}
					for _, d := range deployed[rows[i].Workflow] {
						rows[i].Deployments = append(rows[i].Deployments, deployedTo{d.cluster, d.release})
					}
				}
			} else {
				fmt.Fprintf(a.err, "runfleet: deployments not shown: %v\n", derr)
			}
			if asJSON {
				return writeJSON(a.out, rows)
			}
			if len(rows) == 0 {
				fmt.Fprintf(a.err, "no workflow releases in %s yet; publish one with: runfleet workflow publish ARTIFACT\n", storeURL)
				return nil
			}
			tw := newTable(a.out)
			fmt.Fprintln(tw, "WORKFLOW\tLATEST\tPUBLISHED\tRELEASES\tDEPLOYED")
			for _, r := range rows {
				where := "?"
				if r.Deployments != nil {
					parts := make([]string, 0, len(r.Deployments))
					for _, d := range r.Deployments {
						if d.Release == r.Latest {
							parts = append(parts, d.Cluster)
						} else {
							parts = append(parts, d.Cluster+" ("+shortID(d.Release)+")")
						}
					}
					where = strings.Join(parts, ", ")
					if where == "" {
						where = "-"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Workflow, shortID(r.Latest), timestamp(r.PublishedAt), r.Releases, where)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the workflows as a JSON array")
	so.register(cmd.Flags())
	return cmd
}

type clusterRelease struct{ cluster, release string }

// deploymentsByWorkflow reads every cluster's deployments, giving Redis a
// couple of seconds to answer.
func (a *app) deploymentsByWorkflow(ctx context.Context) (map[string][]clusterRelease, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out := map[string][]clusterRelease{}
	err := a.withClient(ctx, func(c *workflows.Client) error {
		cls, err := c.Clusters().List(ctx)
		if err != nil {
			return err
		}
		for _, cl := range cls {
			_, deps, err := c.Deployments().List(ctx, cl.Slug)
			if err != nil {
				return err
			}
			for _, d := range deps {
				out[d.Workflow] = append(out[d.Workflow], clusterRelease{cl.Slug, d.Release})
			}
		}
		return nil
	})
	return out, err
}
