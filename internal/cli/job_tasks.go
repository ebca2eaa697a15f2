package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/internal/jobgraph"
	"github.com/runfleet/runfleet/workflows"
)

func (a *app) jobTasksCmd() *cobra.Command {
	var (
		all      bool
		asJSON   bool
		attempts bool
		page     pageFlags
	)
	cmd := &cobra.Command{
		Use:   "tasks ID",
		Short: "Show a job's task tree",
		Long: fmt.Sprintf(`Show the tasks of a job as a tree: each task with its id, name@version, state,
attempts, display name and, for failed tasks, the first line of its error;
subtasks are indented under their parent.

A parent with more than %d subtasks shows the first %d, any that are running or
failed, and one summary line for the rest, counted per state. --all lists
every task; --json prints every task with all its fields.

--limit N (with --cursor C from the previous page, and --state S) lists one
page of tasks in id order instead of the whole tree, for jobs too big to read
at once; --state failed reads the job's failed set rather than every task.

--attempts lists every execution of every task that started instead: attempt
number, outcome, runner, host, release, start, duration and error (see
runfleet task get for one task's attempts in full, with panic stacks).`, elideOver, showFirst),
		Example: `  runfleet job tasks 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d
  runfleet job tasks 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --all | grep failed
  runfleet job tasks 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --json | jq '.[] | select(.state == "failed") | .error'
  runfleet job tasks 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --attempts
  runfleet job tasks 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d --state failed --limit 50`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				if attempts {
					return a.writeAttempts(cmd, c, args[0], asJSON)
				}
				if page.set(cmd) {
					return a.writeTasksPage(cmd, c, args[0], page, asJSON)
				}
				tasks, err := c.Jobs().Tasks(cmd.Context(), args[0])
				if err != nil {
					return jobErr(err)
				}
				if asJSON {
					if tasks == nil {
						tasks = []workflows.TaskInfo{}
					}
					return writeJSON(a.out, tasks)
				}
				return writeTaskTree(a.out, tasks, all)
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "list every subtask, however many a parent has")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print every task as a JSON array, parents before children")
	cmd.Flags().BoolVar(&attempts, "attempts", false, "list every attempt of every task: outcome, runner, host, release, times, error")
	cmd.Flags().IntVar(&page.limit, "limit", 0, "list one page of at most N tasks, in id order, instead of the tree")
	cmd.Flags().StringVar(&page.cursor, "cursor", "", "the page after this cursor (printed at the end of the previous page)")
	cmd.Flags().StringVar(&page.state, "state", "", "only tasks in this state: "+strings.Join(workflows.TaskStates, ", "))
	cmd.MarkFlagsMutuallyExclusive("attempts", "limit")
	cmd.MarkFlagsMutuallyExclusive("attempts", "state")
	cmd.MarkFlagsMutuallyExclusive("all", "limit")
	return cmd
}

// pageFlags are job tasks' paging flags.
type pageFlags struct {
	limit  int
	cursor string
	state  string
}

func (p pageFlags) set(cmd *cobra.Command) bool {
	return cmd.Flags().Changed("limit") || cmd.Flags().Changed("cursor") || cmd.Flags().Changed("state")
}

// tasksPageView is job tasks --limit --json.
type tasksPageView struct {
	Tasks []workflows.TaskInfo `json:"tasks"`
	// Next is the --cursor of the next page, "" after the last.
	Next string `json:"next_cursor"`
}

// writeTasksPage is job tasks with paging flags: one page, flat, in id order.
func (a *app) writeTasksPage(cmd *cobra.Command, c *workflows.Client, job string, p pageFlags, asJSON bool) error {
	if p.limit < 0 || p.limit > 10_000 {
		return fmt.Errorf("--limit %d is out of range: give 1 to 10000 (0 for 100)", p.limit)
	}
	if p.state != "" && !slices.Contains(workflows.TaskStates, p.state) {
		return fmt.Errorf("--state %q is not a task state: one of %s", p.state, strings.Join(workflows.TaskStates, ", "))
	}
	after := int64(-1)
	if p.cursor != "" {
		n, err := strconv.ParseInt(p.cursor, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("--cursor %q is not a cursor: pass the one the previous page printed", p.cursor)
		}
		after = n
	}
	tasks, next, err := c.Jobs().TasksPage(cmd.Context(), job, after, p.limit, p.state)
	if err != nil {
		return jobErr(err)
	}
	nextCursor := ""
	if next >= 0 {
		nextCursor = strconv.FormatInt(next, 10)
	}
	if asJSON {
		if tasks == nil {
			tasks = []workflows.TaskInfo{}
		}
		return writeJSON(a.out, tasksPageView{Tasks: tasks, Next: nextCursor})
	}
	tw := newTable(a.out)
	fmt.Fprintln(tw, "TASK\tPARENT\tNAME\tSTATE\tATTEMPTS\tDISPLAY\tERROR")
	for _, t := range tasks {
		errText := ""
		if t.Error != "" && t.State != workflows.TaskComputed {
			errText = oneLine(firstLine(t.Error, errorWidth))
		}
		parent := "-"
		if t.Parent >= 0 {
			parent = strconv.FormatInt(t.Parent, 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s@%s\t%s\t%d\t%s\t%s\n", t.Seq, parent, oneLine(t.Name), t.Version, t.State,
			t.Attempts, oneLine(t.Display), errText)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if nextCursor != "" {
		_, err := fmt.Fprintf(a.out, "(more: --cursor %s)\n", nextCursor)
		return err
	}
	return nil
}

// writeAttempts is job tasks --attempts.
func (a *app) writeAttempts(cmd *cobra.Command, c *workflows.Client, job string, asJSON bool) error {
	tasks, attempts, err := c.Jobs().JobAttempts(cmd.Context(), job)
	if err != nil {
		return jobErr(err)
	}
	if !asJSON {
		return writeJobAttempts(a.out, tasks, attempts)
	}
	out := []taskAttemptsView{}
	for _, t := range tasks {
		if as := attempts[t.Seq]; len(as) > 0 {
			out = append(out, taskAttemptsView{ID: t.Seq, Name: t.Name, State: t.State, Attempts: as})
		}
	}
	return writeJSON(a.out, out)
}

// How job tasks shortens big fan-outs.
const (
	elideOver   = 20 // a parent with more children than this is shortened
	showFirst   = 10 // children shown first
	showNotable = 10 // running or failed children shown beyond the first ones
	errorWidth  = 120
)

// treeRow is one line of the tree: a task, or a summary of hidden siblings.
type treeRow struct {
	depth   int
	seq     int64
	summary string
}

// writeTaskTree prints tasks (parents before children, as JobClient.Tasks
// returns them) as an indented table.
func writeTaskTree(w io.Writer, tasks []workflows.TaskInfo, all bool) error {
	if len(tasks) == 0 {
		_, err := fmt.Fprintln(w, "no tasks")
		return err
	}
	byID := make(map[int64]int, len(tasks))
	for i, t := range tasks {
		byID[t.Seq] = i
	}
	// Subtree sizes, children before parents.
	size := make([]int64, len(tasks))
	for i := len(tasks) - 1; i >= 0; i-- {
		size[i]++
		if p, ok := byID[tasks[i].Parent]; ok && tasks[i].Parent != tasks[i].Seq {
			size[p] += size[i]
		}
	}
	var stack []treeRow
	for i := len(tasks) - 1; i >= 0; i-- {
		if _, ok := byID[tasks[i].Parent]; !ok { // the root, or an orphan
			stack = append(stack, treeRow{seq: tasks[i].Seq})
		}
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "TASK\tNAME\tSTATE\tATTEMPTS\tDISPLAY\tERROR")
	hidden := false
	printed := make(map[int64]bool, len(tasks))
	for len(stack) > 0 {
		row := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		indent := strings.Repeat("  ", row.depth)
		if row.summary != "" {
			fmt.Fprintf(tw, "%s%s\n", indent, row.summary)
			continue
		}
		if printed[row.seq] { // defends against a malformed cycle
			continue
		}
		printed[row.seq] = true
		t := tasks[byID[row.seq]]
		errText := ""
		if t.Error != "" && t.State != workflows.TaskComputed {
			errText = oneLine(firstLine(t.Error, errorWidth))
		}
		fmt.Fprintf(tw, "%s%d\t%s@%s\t%s\t%d\t%s\t%s\n", indent, t.Seq, oneLine(t.Name), t.Version, t.State,
			t.Attempts, oneLine(t.Display), errText)

		var kids []int
		for _, c := range t.Children {
			if i, ok := byID[c]; ok {
				kids = append(kids, i)
			}
		}
		shown, rest := kids, []int(nil)
		if !all && len(kids) > elideOver {
			shown, rest = pickChildren(tasks, kids)
		}
		if len(rest) > 0 {
			hidden = true
			stack = append(stack, treeRow{depth: row.depth + 1, summary: hiddenSummary(tasks, size, rest)})
		}
		for k := len(shown) - 1; k >= 0; k-- {
			stack = append(stack, treeRow{depth: row.depth + 1, seq: tasks[shown[k]].Seq})
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if hidden {
		_, err := fmt.Fprintf(w, "(%s tasks in all; --all lists every one)\n", jobgraph.Commas(int64(len(tasks))))
		return err
	}
	return nil
}

// pickChildren splits a big set of children into the ones to show (the first
// few and, after them, running or failed ones) and the rest, both in order.
func pickChildren(tasks []workflows.TaskInfo, kids []int) (shown, rest []int) {
	notable := 0
	for n, i := range kids {
		st := tasks[i].State
		switch {
		case n < showFirst:
			shown = append(shown, i)
		case notable < showNotable && (st == workflows.TaskRunning || st == workflows.TaskFailed || st == workflows.TaskFailedOptional):
			shown = append(shown, i)
			notable++
		default:
			rest = append(rest, i)
		}
	}
	return shown, rest
}

// hiddenSummary is "… 99,990 more (99,990 computed)", plus how many tasks
// sit below the hidden ones.
func hiddenSummary(tasks []workflows.TaskInfo, size []int64, rest []int) string {
	counts := map[string]int64{}
	var below int64
	for _, i := range rest {
		counts[tasks[i].State]++
		below += size[i] - 1
	}
	var parts []string
	for _, st := range taskStates {
		if n := counts[st]; n > 0 {
			parts = append(parts, jobgraph.Commas(n)+" "+st)
		}
	}
	s := fmt.Sprintf("… %s more (%s)", jobgraph.Commas(int64(len(rest))), strings.Join(parts, ", "))
	if below > 0 {
		s += fmt.Sprintf(" with %s subtasks below them", jobgraph.Commas(below))
	}
	return s
}

// oneLine keeps a display name on its row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
