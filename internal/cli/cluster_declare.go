package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/workflows"
)

func (a *app) clusterDeclareCmd() *cobra.Command {
	var name, version string
	cmd := &cobra.Command{
		Use:   "declare SLUG --task NAME --version vX.Y",
		Short: "Declare a task the cluster serves, so jobs are accepted before any runner exists",
		Long: `Submissions are refused for tasks no runner of the cluster has registered, so a
typo does not leave a job queued forever. A fleet that scales to zero (jobs
arrive from events at night, runners start when there is work) declares the
tasks it will serve instead; jobs for them wait queued until a runner that
can run them starts. Deploying a release declares its tasks too.`,
		Example: `  runfleet cluster declare dev --task tiles.Survey --version v1.2
  runfleet cluster tasks dev`,
		Args: exactArgs("SLUG"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" || version == "" {
				return usageErrorf("--task and --version are required")
			}
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				id := workflows.NewTaskIdentifier(name, version)
				if err := c.Clusters().Declare(cmd.Context(), args[0], id); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "cluster %s serves %s\n", args[0], id)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&name, "task", "", "task name (required)")
	cmd.Flags().StringVar(&version, "version", "", "task version vMAJOR.MINOR (required)")
	return cmd
}

func (a *app) clusterTasksCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "tasks SLUG",
		Short: "List the tasks a cluster serves (registered by runners, deployed or declared)",
		Example: `  runfleet cluster tasks dev
  runfleet cluster tasks dev --json`,
		Args: exactArgs("SLUG"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				ids, err := c.Clusters().Tasks(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.out, ids)
				}
				for _, id := range ids {
					fmt.Fprintln(a.out, id)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) notificationCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notification",
		Short: "Job notifications: the signing secret",
		Long: `A job submitted with --notify URL (or by an automation with one) gets a JSON
POST of its final state when it finishes, signed with HMAC-SHA256 in the
X-Runfleet-Signature header ("t=<unix>,v1=<hex of HMAC(secret, t + "." + body)>").
Receivers verify it with the fleet's secret.`,
		Example: `  runfleet notification secret`,
		Args:    groupArgs,
		RunE:    groupRunE,
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "secret",
		Short:   "Print the secret job notifications are signed with (created on first use)",
		Example: `  runfleet notification secret > /etc/receiver/runfleet-secret`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				s, err := c.Queue().NotifySecret(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintln(a.out, s)
				return nil
			})
		},
	})
	return cmd
}
