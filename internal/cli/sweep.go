package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/workflows"
)

func (a *app) sweepCmd() *cobra.Command {
	var (
		asJSON, noArchive, metrics bool
		storeURL, retention        string
	)
	cmd := &cobra.Command{
		Use:   "sweep",
		Short: "Run the fleet's periodic upkeep once: reclaim, clean up, archive, notify, measure",
		Long: `Run the fleet's periodic upkeep once, as the sweep function and the gateway
do every minute:

  - tasks held by runners whose heartbeat expired go back to the queue (not
    counted as retries; the 11th loss of one task fails it), and work that
    crashed processes left unpublished is published;
  - subtasks staged by executions that can no longer commit are deleted;
  - finished jobs older than --retention are written to the store as
    jobs/<id>.json.zst and removed from Redis ("runfleet job get" and
    "runfleet job tasks" still find them there, read-only);
  - pending job notifications are delivered;
  - with --metrics, one CloudWatch embedded-metric-format line per cluster
    goes to stdout (ready tasks, running tasks, live runners, age of the
    oldest ready task), and the summary to stderr.

Live runners already reclaim the dead runners of their own cluster every
second; sweep is for operators, cron and fleets without the sweep function.`,
		Example: `  runfleet sweep
  runfleet sweep --store s3://runfleet-archive/prod --retention 30d
  runfleet --redis redis://10.0.0.5:6379/0 sweep --no-archive --metrics`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			keep, err := parseRetention(retention)
			if err != nil {
				return &usageError{err: err}
			}
			if noArchive && cmd.Flags().Changed("store") {
				return usageErrorf("--store names where to archive jobs; it cannot go with --no-archive")
			}
			return a.withClient(ctx, func(c *workflows.Client) error {
				cfg := controlplane.Config{Client: c, Retention: keep, Logger: a.logger}
				shownStore := ""
				if !noArchive {
					raw, err := effectiveStoreURL(storeURL)
					if err != nil {
						return err
					}
					st, shown, err := openStoreURL(ctx, storeURL)
					if err != nil {
						return err
					}
					cfg.Store, cfg.StoreURL, shownStore = st, raw, shown
				}
				summary := a.out
				if metrics {
					// stdout carries only the metric lines, for a log agent.
					cfg.Metrics, summary = a.out, a.err
				}
				srv, err := controlplane.New(cfg)
				if err != nil {
					return err
				}
				rep, err := srv.Sweep(ctx)
				r := rep.Reclaim
				if asJSON {
					if jerr := writeJSON(summary, map[string]int{"dead_runners": r.Runners, "requeued": r.Requeued,
						"failed": r.Failed, "republished": r.Republish, "stages_dropped": rep.StagesDropped,
						"archived": rep.Archived, "notified": rep.Notified, "notify_failed": rep.NotifyFailed}); jerr != nil {
						return jerr
					}
				} else {
					fmt.Fprintf(summary, "swept: %d dead runners, %d tasks queued again, %d failed after too many losses, %d hints republished\n",
						r.Runners, r.Requeued, r.Failed, r.Republish)
					fmt.Fprintf(summary, "       %d abandoned staged subtasks deleted\n", rep.StagesDropped)
					if noArchive {
						fmt.Fprintln(summary, "       archiving skipped (--no-archive)")
					} else {
						fmt.Fprintf(summary, "       %d jobs finished over %s ago archived to %s\n", rep.Archived, retention, shownStore)
					}
					fmt.Fprintf(summary, "       %d job notifications delivered, %d failed (retried later)\n", rep.Notified, rep.NotifyFailed)
				}
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&storeURL, "store", "",
		"object store receiving archived jobs: file:///abs/dir or s3://bucket/prefix (default $"+storeEnv+", else a file store in ~/.local/share/runfleet/store)")
	f.StringVar(&retention, "retention", "7d", "archive jobs finished longer ago than this: a number of days (7d, 1.5d) or a Go duration (36h, 90m)")
	f.BoolVar(&noArchive, "no-archive", false, "keep finished jobs in Redis; no store is opened")
	f.BoolVar(&metrics, "metrics", false, "print one CloudWatch embedded-metric-format line per cluster to stdout (the summary then goes to stderr)")
	f.BoolVar(&asJSON, "json", false, "print the counts as JSON")
	return cmd
}

// parseRetention reads --retention: "<n>d" days, or a Go duration.
func parseRetention(s string) (time.Duration, error) {
	d, err := controlplane.ParseRetention(s)
	if err != nil {
		return 0, fmt.Errorf("--%w", err)
	}
	return d, nil
}
