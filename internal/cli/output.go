package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/runfleet/runfleet/internal/jobgraph"
	"github.com/runfleet/runfleet/workflows"
)

// taskStates lists the task states in display order.
var taskStates = workflows.TaskStates

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table aligns tab-separated columns; Flush writes the rows to w without the
// padding tabwriter leaves after a last, empty column.
type table struct {
	*tabwriter.Writer
	buf bytes.Buffer
	w   io.Writer
}

func newTable(w io.Writer) *table {
	t := &table{w: w}
	t.Writer = tabwriter.NewWriter(&t.buf, 0, 0, 2, ' ', 0)
	return t
}

func (t *table) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	var out []byte
	for line := range bytes.Lines(t.buf.Bytes()) {
		out = append(out, bytes.TrimRight(line, " \n")...)
		out = append(out, '\n')
	}
	t.buf.Reset()
	_, err := t.w.Write(out)
	return err
}

// timestamp formats t in local time, or "-" when unset.
func timestamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// age is a short "how long ago": 45s, 12m, 3h, 5d.
func age(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d/time.Second)))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// shortDuration rounds d for display: 830ms, 4.2s, 3m12s.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// taskTotals returns the tasks that are finished (computed, failed, skipped,
// failed optional) and all tasks of a job.
func taskTotals(j workflows.Job) (done, total int64) {
	for st, n := range j.TaskCounts {
		total += n
		if st != workflows.TaskQueued && st != workflows.TaskRunning {
			done += n
		}
	}
	return done, total
}

// countsSummary lists the non-zero task counts: "7 computed, 2 running".
func countsSummary(j workflows.Job) string {
	var parts []string
	for _, st := range taskStates {
		if n := j.TaskCounts[st]; n > 0 {
			parts = append(parts, jobgraph.Commas(n)+" "+st)
		}
	}
	if len(parts) == 0 {
		return "no tasks"
	}
	return strings.Join(parts, ", ")
}

// progressSummary lists a job's progress counters: "tiles 5/10".
func progressSummary(j workflows.Job) string {
	parts := make([]string, 0, len(j.Progress))
	for _, p := range j.Progress {
		parts = append(parts, fmt.Sprintf("%s %s/%s", p.Label, jobgraph.Commas(p.Done), jobgraph.Commas(p.Total)))
	}
	return strings.Join(parts, ", ")
}

// firstLine returns the first line of s, cut to limit runes.
func firstLine(s string, limit int) string {
	line, _, more := strings.Cut(strings.TrimSpace(s), "\n")
	line = strings.TrimSpace(line)
	if utf8.RuneCountInString(line) > limit {
		r := []rune(line)
		return string(r[:limit-1]) + "…"
	}
	if more {
		return line + " …"
	}
	return line
}
