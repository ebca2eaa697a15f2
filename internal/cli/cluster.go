package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/workflows"
)

func (a *app) clusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Create, inspect and delete clusters",
		Long: `A cluster is a named pool of runners. Jobs are submitted to a cluster and only
its runners see their tasks. Slugs are 1 to 100 lowercase letters, digits and
dashes, starting with a letter or digit.`,
		Example: `  runfleet cluster create gpu --name "GPU hosts"
  runfleet cluster list`,
		Args: groupArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(a.clusterCreateCmd(), a.clusterGetCmd(), a.clusterListCmd(), a.clusterDeleteCmd(),
		a.clusterDeploymentsCmd(), a.clusterDeclareCmd(), a.clusterTasksCmd(), a.clusterRunnersCmd())
	return cmd
}

func (a *app) clusterCreateCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "create SLUG",
		Short: "Create a cluster",
		Long:  "Create a cluster. Runners and jobs can only use clusters that exist.",
		Example: `  runfleet cluster create dev
  runfleet cluster create gpu-eu --name "GPU hosts (eu-west-1)"`,
		Args: exactArgs("SLUG"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				cl, err := c.Clusters().Create(cmd.Context(), args[0], name)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "created cluster %s (%s)\n", cl.Slug, cl.Name)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "display name (default: the slug)")
	return cmd
}

func (a *app) clusterGetCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "get SLUG",
		Short: "Show one cluster",
		Example: `  runfleet cluster get dev
  runfleet cluster get dev --json`,
		Args: exactArgs("SLUG"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				cl, err := c.Clusters().Get(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.out, cl)
				}
				tw := newTable(a.out)
				fmt.Fprintf(tw, "Slug:\t%s\n", cl.Slug)
				fmt.Fprintf(tw, "Name:\t%s\n", cl.Name)
				fmt.Fprintf(tw, "Created:\t%s\n", timestamp(cl.CreatedAt))
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the cluster as JSON")
	return cmd
}

func (a *app) clusterListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List clusters, sorted by slug",
		Example: `  runfleet cluster list
  runfleet cluster list --json | jq -r '.[].slug'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				cls, err := c.Clusters().List(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					if cls == nil {
						cls = []workflows.Cluster{}
					}
					return writeJSON(a.out, cls)
				}
				if len(cls) == 0 {
					fmt.Fprintln(a.err, "no clusters yet; create one with: runfleet cluster create SLUG")
					return nil
				}
				now := time.Now()
				tw := newTable(a.out)
				fmt.Fprintln(tw, "SLUG\tNAME\tCREATED\tAGE")
				for _, cl := range cls {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cl.Slug, cl.Name, timestamp(cl.CreatedAt), age(cl.CreatedAt, now))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the clusters as a JSON array")
	return cmd
}

func (a *app) clusterDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete SLUG",
		Short: "Delete a cluster",
		Long: `Delete a cluster. Jobs submitted to it keep their records, but their queued
tasks are no longer handed out: no runner can join a deleted cluster.`,
		Example: "  runfleet cluster delete dev",
		Args:    exactArgs("SLUG"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				if err := c.Clusters().Delete(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "deleted cluster %s\n", args[0])
				return nil
			})
		},
	}
}

func (a *app) clusterRunnersCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "runners SLUG",
		Short: "List a cluster's live runners: host, version, concurrency, GPUs",
		Long: `List the runners of a cluster whose heartbeat is alive, sorted by host: their
id, host, process id, runfleet version, how many tasks each runs at once, the
GPUs it hands out (device indexes; --json has UUIDs, names and memory), when
it started and when its last heartbeat landed. A release runner (runnerd) has
one runner per deployed release and -n; runners of older runfleet versions
show "-" for what they did not record.`,
		Example: `  runfleet cluster runners gpu
  runfleet cluster runners gpu --json | jq '.[] | {host, devices}'`,
		Args: exactArgs("SLUG"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				rs, err := c.Clusters().Runners(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if asJSON {
					for i := range rs {
						if rs[i].Devices == nil {
							rs[i].Devices = []workflows.Device{}
						}
					}
					if rs == nil {
						rs = []workflows.RunnerInfo{}
					}
					return writeJSON(a.out, rs)
				}
				if len(rs) == 0 {
					fmt.Fprintf(a.err, "no live runners in cluster %s; start one with: runfleet runner start --cluster %s\n", args[0], args[0])
					return nil
				}
				now := time.Now()
				tw := newTable(a.out)
				fmt.Fprintln(tw, "ID\tHOST\tPID\tVERSION\tCONCURRENCY\tGPUS\tSTARTED\tLAST BEAT")
				for _, r := range rs {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Host, r.PID, orDash(r.Version),
						countOrDash(r.Concurrency), deviceIndexes(r.Devices), timestamp(r.Started), beatAge(r.LastBeat, now))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the runners as a JSON array")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func countOrDash(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// deviceIndexes writes the devices' indexes, "0,2"; "-" for none.
func deviceIndexes(devs []workflows.Device) string {
	if len(devs) == 0 {
		return "-"
	}
	parts := make([]string, len(devs))
	for i, d := range devs {
		parts[i] = strconv.Itoa(d.Index)
	}
	return strings.Join(parts, ",")
}

// beatAge is how long ago the last heartbeat landed, "1.2s ago".
func beatAge(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return shortDuration(max(0, now.Sub(t))) + " ago"
}
