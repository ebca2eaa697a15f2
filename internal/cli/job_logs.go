package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/workflows"
)

// How job logs --follow reads.
const (
	// followBlock is how long one read waits for new records.
	followBlock = time.Second
	// followQuiet is how long a finished job must bring no new record
	// before --follow ends: runners store records within about 100 ms
	// (their log sink's flush), which may be after the job finished.
	followQuiet = time.Second
	// logPage is how many records one read returns.
	logPage = 1000
)

func (a *app) jobLogsCmd() *cobra.Command {
	var (
		task   int64
		follow bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "logs ID [--task T] [--follow] [--json]",
		Short: "Show what a job's tasks logged",
		Long: `Show the records a job's tasks wrote to workflows.Logger(ctx), oldest first:
time, level, task id and name, attempt, runner, message and attributes.
Runners store them with the job in Redis, up to a cap per execution and per
job (runfleet runner start --task-log-bytes, --job-log-bytes); a record saying
"not stored" marks where a cap was reached. An archived job's records come
from its archive.

--task T shows task T's records only (its id, as job tasks shows it), plus
job-wide markers. --follow keeps printing records as they are stored and
ends once the job is finished and its last records have arrived. --json
prints one JSON object per record and line, with every field (trace and span
ids too).

Reads Redis even with --api.`,
		Example: `  runfleet job logs 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d
  runfleet job logs 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --task 12
  runfleet job logs 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --follow
  runfleet job logs 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --json | jq -r 'select(.level == "ERROR") | .msg'`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("task") {
				task = -1
			} else if task < 0 {
				return usageErrorf("--task must be a task id (0 or more), got %d", task)
			}
			write := writeLogText
			if asJSON {
				write = writeLogJSON
			}
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				l := &logPrinter{jobs: c.Jobs(), id: args[0], task: task, out: a.out, write: write}
				if err := l.printStored(cmd.Context()); err != nil {
					return jobErr(err)
				}
				if !follow {
					return nil
				}
				return l.follow(cmd.Context())
			})
		},
	}
	cmd.Flags().Int64Var(&task, "task", 0, "show only this task's records (its id)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records until the job is finished")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per record and line")
	return cmd
}

// logPrinter prints one job's records from a cursor on.
type logPrinter struct {
	jobs   *workflows.JobClient
	id     string
	task   int64 // -1: every task
	out    io.Writer
	write  func(io.Writer, workflows.LogRecord) error
	cursor string // id of the last record printed
}

// printStored prints every record stored after the cursor.
func (l *logPrinter) printStored(ctx context.Context) error {
	for {
		recs, err := l.jobs.Logs(ctx, l.id, workflows.LogQuery{Task: l.task, After: l.cursor, Limit: logPage})
		if err != nil {
			return err
		}
		if err := l.print(recs); err != nil {
			return err
		}
		if len(recs) < logPage {
			return nil
		}
	}
}

func (l *logPrinter) print(recs []workflows.LogRecord) error {
	for _, r := range recs {
		l.cursor = r.ID
		if l.task >= 0 && r.TaskID != l.task && r.TaskID != -1 {
			continue
		}
		if err := l.write(l.out, r); err != nil {
			return err
		}
	}
	return nil
}

// follow prints records as they are stored until the job is finished and a
// read of followQuiet after that brings nothing, or ctx ends.
func (l *logPrinter) follow(ctx context.Context) error {
	for ctx.Err() == nil {
		// The state is read before the wait: a job finished then has
		// stored its last records when a whole wait brings none.
		job, err := l.jobs.Get(ctx, l.id)
		if err != nil {
			return jobErr(err)
		}
		finished := workflows.Finished(job.State)
		block := followBlock
		if finished {
			block = followQuiet
		}
		recs, err := l.jobs.WaitLogs(ctx, l.id, l.cursor, block)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		if err := l.print(recs); err != nil {
			return err
		}
		if finished && len(recs) == 0 {
			return nil
		}
	}
	return nil // interrupted: what was stored so far is printed
}

func writeLogJSON(w io.Writer, r workflows.LogRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// writeLogText prints a record on one line (a message of several lines
// continues indented):
//
//	2025-06-01T12:00:00.123Z INFO  [task 3 Resize, attempt 1, runner host-1-ab12] resized w=640
func writeLogText(w io.Writer, r workflows.LogRecord) error {
	var b strings.Builder
	b.WriteString(r.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	fmt.Fprintf(&b, " %-5s ", r.Level)
	if r.TaskID < 0 {
		b.WriteString("[job")
	} else {
		fmt.Fprintf(&b, "[task %d", r.TaskID)
		if r.Task != "" {
			b.WriteString(" " + r.Task)
		}
		if r.Attempt > 0 {
			fmt.Fprintf(&b, ", attempt %d", r.Attempt)
		}
	}
	if r.Runner != "" {
		b.WriteString(", runner " + r.Runner)
	}
	b.WriteString("] ")
	b.WriteString(strings.ReplaceAll(strings.TrimRight(r.Message, "\n"), "\n", "\n    "))
	writeAttrs(&b, "", r.Attrs)
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// writeAttrs appends " key=value" per attribute, sorted, groups as
// dotted keys.
func writeAttrs(b *strings.Builder, prefix string, attrs map[string]any) {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if sub, ok := attrs[k].(map[string]any); ok {
			writeAttrs(b, prefix+k+".", sub)
			continue
		}
		b.WriteString(" " + prefix + k + "=" + attrText(attrs[k]))
	}
}

// attrText is a value as logfmt writes it: bare when it can be, else
// quoted.
func attrText(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return "null"
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return strconv.Quote(fmt.Sprint(x))
		}
		s = string(b)
	}
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r == '"' || r == '=' || unicode.IsSpace(r) || !unicode.IsPrint(r)
	}) {
		return strconv.Quote(s)
	}
	return s
}
