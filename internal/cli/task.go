package cli

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/workflows"
)

func (a *app) taskCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Inspect one task of a job: its attempts, where they ran, how they ended",
		Long: `Inspect one task of a job. task get shows the task and every execution of it
(an attempt): the runner and where it ran, its times, outcome, error and, for
a panic, the stack. runfleet job tasks ID --attempts lists the attempts of
every task of a job. Reads Redis, or the job's archive once it left Redis.`,
		Example: `  runfleet task get 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d 3
  runfleet job tasks 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --attempts`,
		Args: groupArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(a.taskGetCmd())
	return cmd
}

// taskView is task get --json: the task and every attempt.
type taskView struct {
	Job      string              `json:"job"`
	Task     workflows.TaskInfo  `json:"task"`
	Attempts []workflows.Attempt `json:"attempts"`
}

func (a *app) taskGetCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "get JOB TASK",
		Short: "Show a task and each of its attempts: runner, host, release, times, outcome, error, panic stack",
		Long: `Show one task of a job (TASK is its id, as job tasks lists it) and every
execution of it: the attempt number, the runner that ran it and where that runner
ran (host, pid, cluster, release, SDK version, OS/arch), when it was claimed,
started and finished, how it ended (running, computed, failed, lost, handed_back)
and its error; for a panic, the goroutine stack (capped at 16 KiB).`,
		Example: `  runfleet task get 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d 0
  runfleet task get 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d 17 --json | jq '.attempts[] | {number, outcome, host: .context.host}'`,
		Args: exactArgs("JOB", "TASK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil || seq < 0 {
				return fmt.Errorf("task id %q is not a task id: give the number job tasks lists in its TASK column", args[1])
			}
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				t, err := c.Jobs().Task(cmd.Context(), args[0], seq)
				if err != nil {
					return taskErr(err, args[0])
				}
				attempts, err := c.Jobs().Attempts(cmd.Context(), args[0], seq)
				if err != nil {
					return taskErr(err, args[0])
				}
				if attempts == nil {
					attempts = []workflows.Attempt{}
				}
				if asJSON {
					return writeJSON(a.out, taskView{Job: args[0], Task: t, Attempts: attempts})
				}
				return writeTask(a.out, args[0], t, attempts)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {job, task, attempts} as JSON")
	return cmd
}

func taskErr(err error, job string) error {
	if errors.Is(err, workflows.ErrTaskNotFound) {
		return &hintError{err: err, hint: "list the job's tasks with: runfleet job tasks " + job}
	}
	return jobErr(err)
}

func writeTask(w io.Writer, job string, t workflows.TaskInfo, attempts []workflows.Attempt) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "Job:\t%s\n", job)
	fmt.Fprintf(tw, "Task:\t%d %s@%s\n", t.Seq, oneLine(t.Name), t.Version)
	if t.Display != "" {
		fmt.Fprintf(tw, "Display:\t%s\n", oneLine(t.Display))
	}
	if t.Parent >= 0 {
		fmt.Fprintf(tw, "Parent:\t%d\n", t.Parent)
	}
	fmt.Fprintf(tw, "Cluster:\t%s\n", t.Cluster)
	if p := t.InputPayload; p != nil {
		fmt.Fprintf(tw, "Input:\tstored, %d bytes, sha256:%s\n", p.Bytes, p.SHA256)
	} else {
		fmt.Fprintf(tw, "Input:\t%d bytes inline\n", len(t.Input))
	}
	fmt.Fprintf(tw, "State:\t%s\n", t.State)
	fmt.Fprintf(tw, "Retries:\t%d failed of %d allowed retries; lost its runner %d times\n", t.Failures, t.MaxRetries, t.Losses)
	if len(t.Children) > 0 {
		fmt.Fprintf(tw, "Subtasks:\t%d\n", len(t.Children))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nAttempts (%d):\n", len(attempts))
	for _, at := range attempts {
		writeAttempt(w, at, "  ")
	}
	return nil
}

// writeAttempt prints one attempt as a few indented lines.
func writeAttempt(w io.Writer, at workflows.Attempt, indent string) {
	fmt.Fprintf(w, "%s#%d %s on runner %s\n", indent, at.Number, at.Outcome, orDash(at.Runner))
	in := indent + "   "
	if rc := at.Context; rc != nil {
		where := fmt.Sprintf("host %s, pid %d, %s/%s, cluster %s, sdk %s", rc.Host, rc.PID, rc.OS, rc.Arch, rc.Cluster, rc.SDKVersion)
		if rc.Release != "" {
			where += ", release " + rc.Release
		}
		fmt.Fprintf(w, "%s%s\n", in, where)
	}
	times := "claimed " + msTimestamp(at.Claimed)
	if !at.Started.IsZero() {
		times += ", started " + msTimestamp(at.Started)
	}
	if !at.Finished.IsZero() {
		times += ", finished " + msTimestamp(at.Finished)
		from := at.Started
		if from.IsZero() {
			from = at.Claimed
		}
		if !from.IsZero() {
			times += " (" + shortDuration(at.Finished.Sub(from)) + ")"
		}
	}
	fmt.Fprintf(w, "%s%s\n", in, times)
	if at.Error != "" {
		fmt.Fprintf(w, "%serror: %s\n", in, strings.ReplaceAll(strings.TrimRight(at.Error, "\n"), "\n", "\n"+in+"       "))
	}
	if at.Stack != "" {
		fmt.Fprintf(w, "%sstack:\n", in)
		for _, line := range strings.Split(strings.TrimRight(at.Stack, "\n"), "\n") {
			fmt.Fprintf(w, "%s  %s\n", in, line)
		}
	}
}

// msTimestamp is timestamp to the millisecond: attempts are often short.
func msTimestamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05.000")
}

// taskAttemptsView is one task of job tasks --attempts --json.
type taskAttemptsView struct {
	ID       int64               `json:"id"`
	Name     string              `json:"name"`
	State    string              `json:"state"`
	Attempts []workflows.Attempt `json:"attempts"`
}

// writeJobAttempts prints every attempt of every task that started, one row
// each: job tasks --attempts.
func writeJobAttempts(w io.Writer, tasks []workflows.TaskInfo, attempts map[int64][]workflows.Attempt) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "TASK\tNAME\tATTEMPT\tOUTCOME\tRUNNER\tHOST\tRELEASE\tSTARTED\tTOOK\tERROR")
	rows := 0
	for _, t := range tasks {
		for _, at := range attempts[t.Seq] {
			rows++
			host, release := "-", "-"
			if at.Context != nil {
				host = at.Context.Host
				if at.Context.Release != "" {
					release = shortID(at.Context.Release)
				}
			}
			start := at.Started
			if start.IsZero() {
				start = at.Claimed
			}
			took := "-"
			if !at.Finished.IsZero() && !start.IsZero() {
				took = shortDuration(at.Finished.Sub(start))
			}
			errText := ""
			if at.Error != "" {
				errText = oneLine(firstLine(at.Error, errorWidth))
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Seq, oneLine(t.Name), at.Number, at.Outcome,
				orDash(at.Runner), host, release, timestamp(start), took, errText)
		}
	}
	if rows == 0 {
		_, err := fmt.Fprintln(w, "no task has started yet")
		return err
	}
	return tw.Flush()
}
