package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/internal/jobgraph"
	"github.com/runfleet/runfleet/internal/telemetry"
	"github.com/runfleet/runfleet/workflows"
)

func (a *app) jobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Submit, inspect, wait for, retry and cancel jobs",
		Long: `A job is a named submission of one root task to a cluster. Its tasks may fan
out into subtasks; the job completes when its whole task tree is complete.

With --api URL (or $RUNFLEET_API_URL) submit, get, list, cancel, retry and
wait go through the HTTP API with a token (--token or $RUNFLEET_API_TOKEN)
instead of Redis; job tasks always reads Redis.`,
		Example: `  runfleet job submit --cluster dev --name nightly --task Render --version v1.2 --input '{"scene":"a"}'
  runfleet job list --cluster dev --state running
  runfleet job wait 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --timeout 10m
  RUNFLEET_API_TOKEN=rf_... runfleet --api https://runfleet.example.com job list`,
		Args: groupArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(a.jobSubmitCmd(), a.jobGetCmd(), a.jobListCmd(), a.jobTasksCmd(), a.jobGraphCmd(),
		a.jobWaitCmd(), a.jobRetryCmd(), a.jobCancelCmd())
	cmd.AddCommand(a.jobLogsCmd())
	cmd.AddCommand(a.jobCacheCmd())
	return cmd
}

func (a *app) jobSubmitCmd() *cobra.Command {
	var (
		req       workflows.SubmitRequest
		input     string
		inputFile string
		wait      bool
		wo        waitOptions
	)
	cmd := &cobra.Command{
		Use:   "submit --cluster C --name N --task NAME --version vX.Y [--input JSON | --input-file F]",
		Short: "Submit a job and print its id",
		Long: `Submit a job whose root task is NAME at version vX.Y, with a JSON object as its
input (default {}). Only tasks that some runner of the cluster has registered
are accepted, so start a runner before the first submission.

The job id is printed on stdout, alone on one line. With --wait the command
then waits like "runfleet job wait" and exits the same way: 0 completed,
1 failed or canceled, 3 timed out.

With --idempotency-key K the submission happens once: submitting again with
the same key within 24 hours prints the job the first submission created
(and says so on stderr) instead of creating another. With --api every
submission carries a key (a random one per invocation when none is given),
so the client's retries after a lost answer never create a second job.
With --notify URL the job's final state is POSTed to URL when it finishes.`,
		Example: `  runfleet job submit --cluster dev --name hello --task Noop --version v1.0
  runfleet job submit --cluster dev --name tiles --task Render --version v2.1 --input '{"zoom":12}' --max-retries 3
  jq -n '{scene:"b"}' | runfleet job submit --cluster dev --name b --task Render --version v2.1 --input-file - --wait --timeout 30m
  runfleet --api https://runfleet.example.com job submit --cluster dev --name nightly-2025-06-01 --task Render --version v2.1 \
    --idempotency-key nightly-2025-06-01 --notify https://hooks.example.com/runfleet`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range []struct{ flag, val string }{
				{"cluster", req.Cluster}, {"name", req.Name}, {"task", req.Task.Name}, {"version", req.Task.Version},
			} {
				if f.val == "" {
					return usageErrorf("missing required flag --%s", f.flag)
				}
			}
			if cmd.Flags().Changed("input") && cmd.Flags().Changed("input-file") {
				return usageErrorf("--input and --input-file are mutually exclusive; give the input one way")
			}
			if err := wo.validate(); err != nil {
				return err
			}
			req.Input = json.RawMessage(input)
			if inputFile != "" && a.apiMode() {
				b, err := a.readInput(inputFile, apiMaxInput)
				if err != nil {
					return err
				}
				req.Input = b
			}
			if a.apiMode() {
				return a.apiSubmit(cmd.Context(), req, wait, wo)
			}
			if inputFile != "" {
				// The SDK streams a regular file: a large input is never
				// held whole. Anything else is read once into a spool.
				b, path, spooled, err := a.inputSource(inputFile)
				if err != nil {
					return err
				}
				if spooled {
					defer os.Remove(path)
				}
				req.Input, req.InputFile = b, path
			}
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				j, created, err := c.Jobs().SubmitOnce(cmd.Context(), req)
				if err != nil {
					return err
				}
				if !created {
					fmt.Fprintf(a.err, "job %s was already submitted with idempotency key %q; not submitted again\n", j.ID, req.IdempotencyKey)
				}
				fmt.Fprintln(a.out, j.ID)
				if !wait {
					return nil
				}
				return a.waitJob(cmd.Context(), c.Jobs(), j.ID, wo)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Cluster, "cluster", "", "cluster slug to submit to (required)")
	f.StringVar(&req.Name, "name", "", "job name (required)")
	f.StringVar(&req.Task.Name, "task", "", "root task name (required)")
	f.StringVar(&req.Task.Version, "version", "", "root task version, vMAJOR.MINOR (required)")
	f.StringVar(&input, "input", "", "root task input, a JSON object (default {})")
	f.StringVar(&inputFile, "input-file", "", "read the input from a file, streamed (up to 256 MiB; inputs over 64 KiB go to the payload store, RUNFLEET_PAYLOADS); - reads stdin")
	f.IntVar(&req.MaxRetries, "max-retries", 0, "how often the root task is retried after it fails")
	f.StringVar(&req.Notify, "notify", "", "URL that receives a POST of the job's final state when it finishes")
	f.StringVar(&req.IdempotencyKey, "idempotency-key", "",
		"submit at most once per key: a repeat within 24 h returns the first job (with --api default: random per invocation)")
	f.BoolVar(&wait, "wait", false, "wait for the job to finish, like runfleet job wait")
	wo.flags(cmd, "with --wait: ")
	return cmd
}

// apiMaxInput is the largest input the HTTP API takes in a submission's
// body (which is at most controlplane.MaxBodyBytes).
const apiMaxInput = controlplane.MaxBodyBytes - 64<<10

// readInput reads a task input for the HTTP API from a file, or from stdin
// for "-".
func (a *app) readInput(path string, limit int) ([]byte, error) {
	var r io.Reader = a.in
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read input: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read input from %s: %w", path, err)
	}
	if len(b) > limit {
		return nil, &hintError{err: fmt.Errorf("input from %s is over the %d bytes the HTTP API takes", inputName(path), limit),
			hint: "submit larger inputs (up to 256 MiB) without --api: they go to the payload store (RUNFLEET_PAYLOADS)"}
	}
	return b, nil
}

// inputSource is where an --input-file input comes from: a regular file
// as it is; stdin ("-"), a pipe or a device read once, in memory up to
// 1 MiB, else into a temporary file (spooled: the caller removes it) for
// the SDK to stream. More than MaxInputBytes is refused before anything
// is submitted.
func (a *app) inputSource(path string) (data []byte, file string, spooled bool, err error) {
	var r io.Reader = a.in
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, "", false, fmt.Errorf("read input: %w", err)
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			return nil, path, false, nil
		}
		r = f
	}
	const inMemory = 1 << 20
	b, err := io.ReadAll(io.LimitReader(r, inMemory+1))
	if err != nil {
		return nil, "", false, fmt.Errorf("read input from %s: %w", inputName(path), err)
	}
	if len(b) <= inMemory {
		return b, "", false, nil
	}
	f, err := os.CreateTemp("", "runfleet-input-*.json")
	if err != nil {
		return nil, "", false, fmt.Errorf("read input from %s: %w", inputName(path), err)
	}
	defer f.Close()
	const limit = workflows.MaxInputBytes
	n, err := io.Copy(f, io.MultiReader(bytes.NewReader(b), io.LimitReader(r, limit+1-int64(len(b)))))
	if err == nil && n > limit {
		err = fmt.Errorf("input from %s is over the %d byte limit; nothing was submitted", inputName(path), limit)
	} else if err != nil {
		err = fmt.Errorf("read input from %s: %w", inputName(path), err)
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return nil, "", false, err
	}
	return nil, f.Name(), true, nil
}

func inputName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

// jobErr adds a hint to errors about jobs.
func jobErr(err error) error {
	if errors.Is(err, workflows.ErrJobNotFound) {
		return &hintError{err: err, hint: "list recent jobs with: runfleet job list"}
	}
	return err
}

func (a *app) jobGetCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show a job: state, task counts and progress",
		Example: `  runfleet job get 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d
  runfleet job get 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --json | jq .task_counts`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.apiMode() {
				return a.apiGet(cmd.Context(), args[0], asJSON)
			}
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				j, err := c.Jobs().Get(cmd.Context(), args[0])
				if err != nil {
					return jobErr(err)
				}
				if asJSON {
					return writeJSON(a.out, (j))
				}
				return writeJob(a.out, j)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the job as JSON (id, name, cluster, state, task_counts, progress, times)")
	return cmd
}

func writeJob(w io.Writer, j workflows.Job) error {
	done, total := taskTotals(j)
	tw := newTable(w)
	fmt.Fprintf(tw, "ID:\t%s\n", j.ID)
	fmt.Fprintf(tw, "Name:\t%s\n", j.Name)
	fmt.Fprintf(tw, "Cluster:\t%s\n", j.Cluster)
	state := j.State
	if j.Archived {
		state += " (archived, read-only)"
	}
	fmt.Fprintf(tw, "State:\t%s\n", state)
	fmt.Fprintf(tw, "Created:\t%s\n", timestamp(j.CreatedAt))
	fmt.Fprintf(tw, "Started:\t%s\n", timestamp(j.StartedAt))
	fmt.Fprintf(tw, "Finished:\t%s\n", timestamp(j.FinishedAt))
	if !j.FinishedAt.IsZero() {
		fmt.Fprintf(tw, "Duration:\t%s\n", shortDuration(j.FinishedAt.Sub(j.CreatedAt)))
	}
	fmt.Fprintf(tw, "Tasks:\t%s/%s done (%s)\n", jobgraph.Commas(done), jobgraph.Commas(total), countsSummary(j))
	if sc, ok := telemetry.ParseTraceParent(j.TraceParent); ok {
		// The id to search for in an OTLP backend.
		fmt.Fprintf(tw, "Trace:\t%s\n", sc.TraceID())
	}
	for i, p := range j.Progress {
		label := ""
		if i == 0 {
			label = "Progress:"
		}
		pct := ""
		if p.Total > 0 {
			pct = fmt.Sprintf(" (%d%%)", p.Done*100/p.Total)
		}
		fmt.Fprintf(tw, "%s\t%s %s/%s%s\n", label, p.Label, jobgraph.Commas(p.Done), jobgraph.Commas(p.Total), pct)
	}
	return tw.Flush()
}

func (a *app) jobListCmd() *cobra.Command {
	var (
		opts   workflows.ListOptions
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list [--cluster C] [--state S] [--limit N]",
		Short: "List jobs, newest first",
		Example: `  runfleet job list
  runfleet job list --cluster dev --state failed --limit 5
  runfleet job list --json | jq -r '.[].id'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Limit < 1 {
				return usageErrorf("--limit must be at least 1, got %d", opts.Limit)
			}
			if a.apiMode() {
				return a.apiList(cmd.Context(), opts, asJSON)
			}
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				if opts.Cluster != "" {
					// A deleted cluster's jobs stay listable; only a malformed
					// slug is an error.
					if _, err := c.Clusters().Get(cmd.Context(), opts.Cluster); err != nil &&
						!errors.Is(err, workflows.ErrClusterNotFound) {
						return err
					}
				}
				jobs, err := c.Jobs().List(cmd.Context(), opts)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.out, jobs)
				}
				if len(jobs) == 0 {
					fmt.Fprintln(a.err, "no jobs found")
					return nil
				}
				return writeJobTable(a.out, jobs, time.Now())
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Cluster, "cluster", "", "only jobs of this cluster")
	f.StringVar(&opts.State, "state", "", "only jobs in this state: "+strings.Join([]string{
		workflows.JobSubmitted, workflows.JobRunning, workflows.JobCompleted, workflows.JobFailed, workflows.JobCanceled}, ", "))
	f.IntVar(&opts.Limit, "limit", 50, "list at most this many jobs")
	f.BoolVar(&asJSON, "json", false, "print the jobs as a JSON array")
	return cmd
}

func writeJobTable(w io.Writer, jobs []workflows.Job, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tCLUSTER\tSTATE\tTASKS\tFAILED\tCREATED\tAGE")
	for _, j := range jobs {
		done, total := taskTotals(j)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%s\t%s\t%s\t%s\n", j.ID, j.Name, j.Cluster, j.State,
			jobgraph.Commas(done), jobgraph.Commas(total), jobgraph.Commas(j.TaskCounts[workflows.TaskFailed]),
			timestamp(j.CreatedAt), age(j.CreatedAt, now))
	}
	return tw.Flush()
}

func (a *app) jobRetryCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "retry ID",
		Short: "Re-queue the failed tasks of a failed or canceled job",
		Long: `Put every failed task of the job back to queued and the job back to running.
Computed work is kept and never runs again. Retrying a canceled job resumes it.`,
		Example: `  runfleet job retry 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d
  runfleet job retry 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d && runfleet job wait 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, id := cmd.Context(), args[0]
			if a.apiMode() {
				return a.apiRetry(ctx, id)
			}
			return a.withClient(ctx, func(c *workflows.Client) error {
				j, err := c.Jobs().Get(ctx, id)
				if err != nil {
					return jobErr(err)
				}
				if j.State == workflows.JobSubmitted || j.State == workflows.JobRunning {
					fmt.Fprintf(a.out, "job %s is %s; nothing to retry\n", id, j.State)
					return nil
				}
				if err := c.Jobs().Retry(ctx, id); err != nil {
					return jobErr(err)
				}
				if j, err = c.Jobs().Get(ctx, id); err != nil {
					return jobErr(err)
				}
				fmt.Fprintf(a.out, "retried job %s; it is %s (%s)\n", id, j.State, countsSummary(j))
				return nil
			})
		},
	}
}

func (a *app) jobCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Stop handing out a job's tasks",
		Long: `Cancel a job: no further task of it is handed to runners. Tasks already
running finish and their results are kept. "runfleet job retry" resumes it.`,
		Example: "  runfleet job cancel 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, id := cmd.Context(), args[0]
			if a.apiMode() {
				return a.apiCancel(ctx, id)
			}
			return a.withClient(ctx, func(c *workflows.Client) error {
				j, err := c.Jobs().Get(ctx, id)
				if err != nil {
					return jobErr(err)
				}
				if j.State == workflows.JobCanceled || j.State == workflows.JobFailed {
					fmt.Fprintf(a.out, "job %s is already %s; nothing to cancel\n", id, j.State)
					return nil
				}
				if err := c.Jobs().Cancel(ctx, id); err != nil {
					return jobErr(err)
				}
				fmt.Fprintf(a.out, "canceled job %s; running tasks finish (resume with: runfleet job retry %s)\n", id, id)
				return nil
			})
		},
	}
}
