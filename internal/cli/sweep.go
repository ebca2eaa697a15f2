package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/workflows"
)

func (a *app) sweepCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sweep",
		Short: "Reclaim dead runners' tasks and republish stalled work, once",
		Long: `Run the fleet's periodic backstop once. Tasks held by runners whose heartbeat
expired go back to the queue (not counted as retries; the 11th loss of one task
fails it), and work that crashed processes left unpublished is published.

Live runners already reclaim the dead runners of their own cluster every
second; sweep is for operators, cron and the sweep function.`,
		Example: `  runfleet sweep
  runfleet --redis redis://10.0.0.5:6379/0 sweep --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return a.withClient(ctx, func(c *workflows.Client) error {
				rep, err := c.Sweep(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.out, map[string]int{"dead_runners": rep.Runners, "requeued": rep.Requeued,
						"failed": rep.Failed, "republished": rep.Republish})
				}
				fmt.Fprintf(a.out, "swept: %d dead runners, %d tasks queued again, %d failed after too many losses, %d hints republished\n",
					rep.Runners, rep.Requeued, rep.Failed, rep.Republish)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the counts as JSON")
	return cmd
}
