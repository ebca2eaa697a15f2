package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/workflows"
)

func (a *app) automationCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "automation",
		Short: "Submit jobs on a schedule or when objects arrive in a bucket",
		Long: `An automation submits a job from a prototype (cluster, task, version, input)
whenever its trigger fires: a cron schedule (--cron) or an object created under
an S3 prefix (--storage, reported by S3 notifications or MinIO webhooks to the
API). Exactly one job is submitted per cron tick and per object version, however
often an event is delivered. A storage job's input is the prototype input with
"object" added: {"bucket","key","size","etag","version_id","event_time"}.

These commands talk to Redis (--redis), never to the API. The gateway or the
submit function fires the triggers.`,
		Example: `  runfleet automation create --name nightly --cluster dev --task Render --version v2.1 --cron "0 2 * * *" --timezone Europe/Berlin
  runfleet automation create --name tiles --cluster gpu --task Tile --version v1.0 --storage s3://scans/incoming/ --glob '*.tif'
  runfleet automation list
  runfleet automation pause nightly`,
		Args: groupArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(a.automationCreateCmd(), a.automationListCmd(), a.automationGetCmd(),
		a.automationPauseCmd(true), a.automationPauseCmd(false), a.automationDeleteCmd())
	return cmd
}

func (a *app) automationCreateCmd() *cobra.Command {
	var (
		au    controlplane.Automation
		input string
	)
	cmd := &cobra.Command{
		Use:   "create --name N --cluster C --task T --version V (--cron EXPR [--timezone TZ] | --storage s3://BUCKET/PREFIX [--glob G])",
		Short: "Create an automation",
		Long: `Create an automation that submits jobs of task T at version V to cluster C,
with --input (a JSON object, default {}) as the root task's input.

Give exactly one trigger:
  --cron EXPR        a cron expression: 5 fields (minute hour day month
                     weekday), 6 with seconds first, or @hourly, @daily,
                     @every 10m; evaluated in --timezone (an IANA name,
                     default UTC)
  --storage URL      s3://bucket/prefix: every object created under the
                     prefix whose key matches --glob (path.Match syntax; a
                     glob without "/" matches the last path element, so
                     '*.tif' matches at any depth; default every key)

The cluster must serve the task (a runner registered it, or the cluster
declared it), so the automation never submits jobs nobody can run.`,
		Example: `  runfleet automation create --name nightly --cluster dev --task Render --version v2.1 --input '{"scene":"all"}' --cron "0 2 * * *" --timezone Europe/Berlin
  runfleet automation create --name every-5m --cluster dev --task Noop --version v1.0 --cron "@every 5m"
  runfleet automation create --name tiles --cluster gpu --task Tile --version v1.0 --storage s3://scans/incoming/ --glob '*.tif' \
    --max-retries 2 --notify https://hooks.example.com/runfleet`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range []struct{ flag, val string }{
				{"name", au.Name}, {"cluster", au.Cluster}, {"task", au.Task}, {"version", au.Version},
			} {
				if f.val == "" {
					return usageErrorf("missing required flag --%s", f.flag)
				}
			}
			switch {
			case au.Cron != "" && au.Storage != "":
				return usageErrorf("--cron and --storage are mutually exclusive; give one trigger")
			case au.Cron == "" && au.Storage == "":
				return usageErrorf("missing the trigger: give --cron EXPR or --storage s3://BUCKET/PREFIX")
			case au.Timezone != "" && au.Cron == "":
				return usageErrorf("--timezone needs --cron")
			case au.Glob != "" && au.Storage == "":
				return usageErrorf("--glob needs --storage")
			case au.MaxRetries < 0:
				return usageErrorf("--max-retries must not be negative, got %d", au.MaxRetries)
			}
			if cmd.Flags().Changed("input") {
				in := bytes.TrimSpace([]byte(input))
				var obj map[string]json.RawMessage
				if err := json.Unmarshal(in, &obj); err != nil {
					return usageErrorf("--input must be a JSON object: %v", err)
				} else if obj == nil {
					return usageErrorf("--input must be a JSON object, got %s", in)
				}
				au.Input = in
			}
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				created, err := controlplane.CreateAutomation(cmd.Context(), c, au)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "created automation %s (id %s): %s submits %s %s to cluster %s\n",
					created.Name, created.ID, trigger(created), created.Task, created.Version, created.Cluster)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&au.Name, "name", "", "automation name, unique (required)")
	f.StringVar(&au.Cluster, "cluster", "", "cluster slug the jobs are submitted to (required)")
	f.StringVar(&au.Task, "task", "", "root task name of the jobs (required)")
	f.StringVar(&au.Version, "version", "", "root task version, vMAJOR.MINOR (required)")
	f.StringVar(&input, "input", "", "root task input of every job, a JSON object (default {})")
	f.StringVar(&au.Cron, "cron", "", `cron schedule: "MIN HOUR DOM MON DOW", 6 fields with seconds, or @hourly, @every 10m`)
	f.StringVar(&au.Timezone, "timezone", "", "with --cron: IANA time zone the schedule is read in (default UTC)")
	f.StringVar(&au.Storage, "storage", "", "s3://bucket/prefix whose new objects each submit a job")
	f.StringVar(&au.Glob, "glob", "", `with --storage: only keys that match (path.Match syntax; without "/" the last path element)`)
	f.StringVar(&au.Notify, "notify", "", "URL that receives a POST of each job's final state")
	f.IntVar(&au.MaxRetries, "max-retries", 0, "how often each job's root task is retried after it fails")
	return cmd
}

// trigger describes what fires an automation: `cron "0 2 * * *" (UTC)` or
// `s3://scans/incoming/ *.tif`.
func trigger(au controlplane.Automation) string {
	if au.Cron != "" {
		tz := au.Timezone
		if tz == "" {
			tz = "UTC"
		}
		return fmt.Sprintf("cron %q (%s)", au.Cron, tz)
	}
	glob := au.Glob
	if glob == "" {
		glob = "*"
	}
	return au.Storage + " " + glob
}

func automationState(au controlplane.Automation) string {
	if au.Paused {
		return "paused"
	}
	return "active"
}

func (a *app) automationListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List automations by name",
		Example: `  runfleet automation list
  runfleet automation list --json | jq -r '.[] | select(.paused) | .name'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				all, err := controlplane.ListAutomations(cmd.Context(), c)
				if err != nil {
					return err
				}
				if asJSON {
					if all == nil {
						all = []controlplane.Automation{}
					}
					return writeJSON(a.out, all)
				}
				if len(all) == 0 {
					fmt.Fprintln(a.err, "no automations yet; create one with: runfleet automation create")
					return nil
				}
				return writeAutomationTable(a.out, all, time.Now())
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the automations as a JSON array")
	return cmd
}

func writeAutomationTable(w io.Writer, all []controlplane.Automation, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tCLUSTER\tTASK\tTRIGGER\tSTATE\tCREATED\tAGE")
	for _, au := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t%s\t%s\t%s\t%s\n", au.ID, au.Name, au.Cluster, au.Task, au.Version,
			trigger(au), automationState(au), timestamp(au.CreatedAt), age(au.CreatedAt, now))
	}
	return tw.Flush()
}

func (a *app) automationGetCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "get ID|NAME",
		Short: "Show one automation",
		Example: `  runfleet automation get nightly
  runfleet automation get nightly --json | jq .input`,
		Args: exactArgs("ID|NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				au, err := controlplane.GetAutomation(cmd.Context(), c, args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.out, au)
				}
				return writeAutomation(a.out, au)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the automation as JSON")
	return cmd
}

func writeAutomation(w io.Writer, au controlplane.Automation) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "ID:\t%s\n", au.ID)
	fmt.Fprintf(tw, "Name:\t%s\n", au.Name)
	fmt.Fprintf(tw, "State:\t%s\n", automationState(au))
	fmt.Fprintf(tw, "Cluster:\t%s\n", au.Cluster)
	fmt.Fprintf(tw, "Task:\t%s %s\n", au.Task, au.Version)
	in := string(au.Input)
	if in == "" {
		in = "{}"
	}
	fmt.Fprintf(tw, "Input:\t%s\n", in)
	fmt.Fprintf(tw, "Max retries:\t%d\n", au.MaxRetries)
	if au.Cron != "" {
		fmt.Fprintf(tw, "Cron:\t%s\n", au.Cron)
		tz := au.Timezone
		if tz == "" {
			tz = "UTC"
		}
		fmt.Fprintf(tw, "Timezone:\t%s\n", tz)
	} else {
		fmt.Fprintf(tw, "Storage:\t%s\n", au.Storage)
		glob := au.Glob
		if glob == "" {
			glob = "* (every key)"
		}
		fmt.Fprintf(tw, "Glob:\t%s\n", glob)
	}
	notify := au.Notify
	if notify == "" {
		notify = "-"
	}
	fmt.Fprintf(tw, "Notify:\t%s\n", notify)
	fmt.Fprintf(tw, "Created:\t%s\n", timestamp(au.CreatedAt))
	return tw.Flush()
}

// automationPauseCmd is automation pause (paused) or automation resume.
func (a *app) automationPauseCmd(paused bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pause ID|NAME",
		Short: "Stop an automation from submitting jobs until it is resumed",
		Long: `Pause an automation: its cron ticks and storage events submit nothing while it
is paused, and are not made up for after it is resumed.`,
		Example: "  runfleet automation pause nightly",
		Args:    exactArgs("ID|NAME"),
	}
	verb := "paused"
	if !paused {
		cmd.Use = "resume ID|NAME"
		cmd.Short = "Let a paused automation submit jobs again"
		cmd.Long = "Resume a paused automation: triggers from now on submit jobs again."
		cmd.Example = "  runfleet automation resume nightly"
		verb = "resumed"
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return a.withClient(cmd.Context(), func(c *workflows.Client) error {
			au, err := controlplane.PauseAutomation(cmd.Context(), c, args[0], paused)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%s automation %s (id %s)", verb, au.Name, au.ID)
			if paused {
				fmt.Fprintf(a.out, "; resume it with: runfleet automation resume %s", au.Name)
			}
			fmt.Fprintln(a.out)
			return nil
		})
	}
	return cmd
}

func (a *app) automationDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID|NAME",
		Short: "Delete an automation",
		Long: `Delete an automation. Jobs it already submitted are kept; events for it that
arrive later are ignored.`,
		Example: "  runfleet automation delete nightly",
		Args:    exactArgs("ID|NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				au, err := controlplane.DeleteAutomation(cmd.Context(), c, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "deleted automation %s (id %s)\n", au.Name, au.ID)
				return nil
			})
		},
	}
}
