package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/internal/jobgraph"
	"github.com/runfleet/runfleet/workflows"
)

// waitOptions are the flags of job wait (and job submit --wait).
type waitOptions struct {
	timeout time.Duration // 0: wait forever
	// interval is how often the job is read when no event arrives; with
	// --api, which has no events, how often it is polled. 0: the default
	// of each (workflows.DefaultWaitFallback, defaultPollInterval).
	interval time.Duration
}

// defaultPollInterval is how often job wait polls through the HTTP API.
const defaultPollInterval = 500 * time.Millisecond

func (o *waitOptions) flags(cmd *cobra.Command, prefix string) {
	cmd.Flags().DurationVar(&o.timeout, "timeout", 0, prefix+"give up after this long and exit 3 (default: wait forever)")
	cmd.Flags().DurationVar(&o.interval, "interval", 0, prefix+"how often to read the job when no event arrives (default 5s); with --api, how often to poll it (default 500ms)")
}

func (o *waitOptions) validate() error {
	if o.timeout < 0 {
		return usageErrorf("--timeout must not be negative, got %s", o.timeout)
	}
	if o.interval != 0 && o.interval < 10*time.Millisecond {
		return usageErrorf("--interval must be at least 10ms, got %s", o.interval)
	}
	return nil
}

func (a *app) jobWaitCmd() *cobra.Command {
	var wo waitOptions
	cmd := &cobra.Command{
		Use:   "wait ID [--timeout D]",
		Short: "Wait for a job to finish, showing its progress",
		Long: `Wait until a job is completed, failed or canceled, then print its final
state. Changes arrive as they happen, from the job's event stream in Redis,
so job wait returns within milliseconds of the job's end; it reads the job
every --interval anyway in case an event was lost. With --api it polls the
job every --interval instead. On a terminal a live progress bar shows
done/total tasks, the tasks per state and the job's progress counters;
otherwise a line is printed whenever something changed.

Exit codes: 0 the job completed, 1 it failed or was canceled (or an error),
3 the timeout passed first.`,
		Example: `  runfleet job wait 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d
  runfleet job wait 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --timeout 15m || echo "not completed: $?"`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := wo.validate(); err != nil {
				return err
			}
			if a.apiMode() {
				return a.apiWait(cmd.Context(), args[0], wo)
			}
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				return a.waitJob(cmd.Context(), c.Jobs(), args[0], wo)
			})
		},
	}
	wo.flags(cmd, "")
	return cmd
}

var errWaitTimeout = errors.New("wait timeout")

// jobWaiter waits for a job to finish: *workflows.JobClient over Redis (from
// the job's events, reading it every interval as a fallback), or apiJobs
// polling the HTTP API every interval (api.go). An interval of 0 means the
// waiter's default.
type jobWaiter interface {
	Wait(ctx context.Context, id string, every time.Duration, onUpdate func(workflows.Job)) (workflows.Job, error)
}

// waitJob waits for a job to finish and returns the exit status for its
// final state: nil when completed, exit code 1 when failed or canceled, 3 when
// the timeout passed first.
func (a *app) waitJob(ctx context.Context, jobs jobWaiter, id string, o waitOptions) error {
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, o.timeout, errWaitTimeout)
		defer cancel()
	}
	p := &progressPrinter{w: a.out, live: a.terminal(a.out), width: terminalWidth()}
	j, err := jobs.Wait(ctx, id, o.interval, p.update)
	p.finish()
	if err != nil {
		if errors.Is(context.Cause(ctx), errWaitTimeout) {
			if p.seen {
				fmt.Fprintf(a.out, "job %s is still %s after %s: %s\n", id, p.last.State, o.timeout, taskLine(p.last))
			}
			return &exitError{code: ExitTimeout, err: fmt.Errorf("timed out after %s waiting for job %s", o.timeout, id)}
		}
		return jobErr(err)
	}
	fmt.Fprintln(a.out, finalLine(j))
	if j.State == workflows.JobCompleted {
		return nil
	}
	return &exitError{code: ExitFailure}
}

// finalLine describes a finished job.
func finalLine(j workflows.Job) string {
	var b strings.Builder
	fmt.Fprintf(&b, "job %s %s", j.ID, j.State)
	if !j.FinishedAt.IsZero() {
		fmt.Fprintf(&b, " after %s", shortDuration(j.FinishedAt.Sub(j.CreatedAt)))
	}
	fmt.Fprintf(&b, ": %s", taskLine(j))
	if n := j.TaskCounts[workflows.TaskFailed]; n > 0 {
		fmt.Fprintf(&b, "; see the errors with: runfleet job tasks %s", j.ID)
	}
	return b.String()
}

// taskLine is "7/12 tasks done (7 computed, 2 running, 3 queued); tiles 5/10".
func taskLine(j workflows.Job) string {
	done, total := taskTotals(j)
	s := fmt.Sprintf("%s/%s tasks done (%s)", jobgraph.Commas(done), jobgraph.Commas(total), countsSummary(j))
	if p := progressSummary(j); p != "" {
		s += "; " + p
	}
	return s
}

// progressPrinter shows the updates of job wait: a redrawn bar on a terminal,
// a line per change otherwise.
type progressPrinter struct {
	w     io.Writer
	live  bool
	width int // terminal columns; 0: do not cut lines

	seen bool
	last workflows.Job
	line string // last printed
	drew bool   // a live bar is on screen
}

func (p *progressPrinter) update(j workflows.Job) {
	p.seen, p.last = true, j
	if p.live {
		line := progressBar(j, p.width)
		if line != p.line {
			fmt.Fprintf(p.w, "\r%s\x1b[K", line)
			p.line, p.drew = line, true
		}
		return
	}
	line := j.State + ": " + taskLine(j)
	if line != p.line {
		fmt.Fprintln(p.w, line)
		p.line = line
	}
}

// finish clears the live bar so the final line starts on a clean line.
func (p *progressPrinter) finish() {
	if p.drew {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

const barWidth = 20

// progressBar renders one line, most important first since a narrow terminal
// cuts the end: "running [████░░] 7/12 tasks │ tiles 5/10 │ 3 queued 2 running 7 computed".
func progressBar(j workflows.Job, width int) string {
	done, total := taskTotals(j)
	filled := 0
	if total > 0 {
		filled = int(done * barWidth / total)
	}
	var b strings.Builder
	b.WriteString(j.State + " [")
	b.WriteString(strings.Repeat("█", filled))
	b.WriteString(strings.Repeat("░", barWidth-filled))
	fmt.Fprintf(&b, "] %s/%s tasks", jobgraph.Commas(done), jobgraph.Commas(total))
	if ps := progressSummary(j); ps != "" {
		b.WriteString(" │ " + ps)
	}
	var states []string
	for _, st := range taskStates {
		if n := j.TaskCounts[st]; n > 0 {
			states = append(states, jobgraph.Commas(n)+" "+st)
		}
	}
	if len(states) > 0 {
		b.WriteString(" │ " + strings.Join(states, " "))
	}
	line := b.String()
	// A line longer than the terminal would wrap, and \r only returns to the
	// start of the last row.
	if width > 1 && utf8.RuneCountInString(line) > width-1 {
		r := []rune(line)
		line = string(r[:width-2]) + "…"
	}
	return line
}

// terminalWidth is $COLUMNS when the shell exports it, else 80.
func terminalWidth() int {
	n, err := strconv.Atoi(os.Getenv("COLUMNS"))
	if err != nil || n <= 0 {
		return 80
	}
	return n
}
