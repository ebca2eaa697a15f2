package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/workflows"
)

func TestJobTasksTree(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")

	// A root fanning out to 3 FanOuts of 2 Noops each, plus a merge task.
	id := f.submit("dev", "FanOut", `{"n": 3, "child": "FanOut", "child_input": {"n": 2}, "merge": true}`)
	f.ok("job", "wait", id, "--interval", "20ms", "--timeout", "30s")

	r := f.ok("job", "tasks", id)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	require.Len(t, lines, 1+1+3*3+1, r.stdout)
	require.Regexp(t, `^TASK\s+NAME\s+STATE\s+ATTEMPTS\s+DISPLAY\s+ERROR$`, lines[0])
	require.Regexp(t, `^0\s+FanOut@v1\.0\s+computed\s+1\s*$`, lines[1])
	// Children are indented under their parent, grandchildren further.
	require.Regexp(t, `^  \d+\s+FanOut@v1\.0\s+computed\s+1`, lines[2])
	require.Regexp(t, `^    \d+\s+Noop@v1\.0\s+computed\s+1`, lines[3])
	require.Regexp(t, `^    \d+\s+Noop@v1\.0\s+computed\s+1`, lines[4])
	require.Regexp(t, `^  \d+\s+FanOut@v1\.0`, lines[5])
	require.Regexp(t, `^  \d+\s+Noop@v1\.0\s+computed`, lines[11], "the merge task comes last")

	var tasks []workflows.TaskInfo
	require.NoError(t, json.Unmarshal([]byte(f.ok("job", "tasks", id, "--json").stdout), &tasks))
	require.Len(t, tasks, 11)
	require.Equal(t, int64(-1), tasks[0].Parent)
}

func TestJobTasksShowsErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	id := f.submit("dev", "FanOut", `{"n": 2, "child": "Fail"}`)
	r := f.run("job", "wait", id, "--interval", "20ms", "--timeout", "30s")
	require.Equal(t, ExitFailure, r.code)

	r = f.ok("job", "tasks", id)
	require.Regexp(t, `(?m)^  \d+\s+Fail@v1\.0\s+failed\s+1\s+bench task failed on purpose$`, r.stdout)
}

func TestJobTasksElidesBigFanOuts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	id := f.submit("dev", "FanOut", `{"n": 30, "child": "FanOut", "child_input": {"n": 1}}`)
	f.ok("job", "wait", id, "--interval", "20ms", "--timeout", "30s")

	r := f.ok("job", "tasks", id)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	// header, root, 10 children with one grandchild each, summary, footer
	require.Len(t, lines, 1+1+10*2+1+1, r.stdout)
	require.Equal(t, "  … 20 more (20 computed) with 20 subtasks below them", lines[len(lines)-2])
	require.Equal(t, "(61 tasks in all; --all lists every one)", lines[len(lines)-1])

	r = f.ok("job", "tasks", id, "--all")
	lines = strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	require.Len(t, lines, 1+61)
	require.NotContains(t, r.stdout, "more (")
}

// TestTaskTreeBigFanOut renders a 100,000-subtask fan-out without Redis.
func TestTaskTreeBigFanOut(t *testing.T) {
	t.Parallel()
	const n = 100_000
	tasks := []workflows.TaskInfo{{Seq: 0, Parent: -1, Name: "FanOut", Version: "v1.0", State: "computed", Attempts: 1}}
	for i := int64(1); i <= n; i++ {
		tasks[0].Children = append(tasks[0].Children, i)
		st, errText := workflows.TaskComputed, ""
		switch i {
		case 500:
			st, errText = workflows.TaskFailed, "boom\n\tat line 3"
		case 501:
			st = workflows.TaskRunning
		}
		tasks = append(tasks, workflows.TaskInfo{Seq: i, Parent: 0, Name: "Tile", Version: "v2.3", State: st,
			Attempts: 1, Error: errText, Display: "tile\t" + string(rune('a'+i%26))})
	}
	var b bytes.Buffer
	require.NoError(t, writeTaskTree(&b, tasks, false))
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	require.Len(t, lines, 1+1+10+2+1+1)
	require.Regexp(t, `^  500\s+Tile@v2\.3\s+failed\s+1\s+tile \w\s+boom …$`, lines[12], "failed children are shown")
	require.Regexp(t, `^  501\s+Tile@v2\.3\s+running\s+1\s+tile \w\s*$`, lines[13], "running children are shown")
	require.Equal(t, "  … 99,988 more (99,988 computed)", lines[14])
	require.Equal(t, "(100,001 tasks in all; --all lists every one)", lines[15])

	b.Reset()
	require.NoError(t, writeTaskTree(&b, tasks, true))
	require.Equal(t, 1+1+n, strings.Count(b.String(), "\n"))
}

// --limit, --cursor and --state page through a job's tasks in id order.
func TestJobTasksPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	id := f.submit("dev", "FanOut", `{"n": 5, "child": "Noop"}`)
	f.ok("job", "wait", id, "--interval", "20ms", "--timeout", "30s")

	var seen []int64
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10, "paging ends")
		args := []string{"job", "tasks", id, "--limit", "2", "--json"}
		if cursor != "" {
			args = append(args, "--cursor", cursor)
		}
		var page struct {
			Tasks []workflows.TaskInfo `json:"tasks"`
			Next  string               `json:"next_cursor"`
		}
		require.NoError(t, json.Unmarshal([]byte(f.ok(args...).stdout), &page))
		require.LessOrEqual(t, len(page.Tasks), 2)
		for _, task := range page.Tasks {
			seen = append(seen, task.Seq)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	require.Equal(t, []int64{0, 1, 2, 3, 4, 5}, seen)

	r := f.ok("job", "tasks", id, "--limit", "2")
	require.Regexp(t, `^TASK\s+PARENT\s+NAME\s+STATE\s+ATTEMPTS\s+DISPLAY\s+ERROR\n0\s+-\s+FanOut@v1\.0\s+computed\s+1\s*\n1\s+0\s+Noop@v1\.0\s+computed`, r.stdout)
	require.Contains(t, r.stdout, "(more: --cursor 1)")

	r = f.ok("job", "tasks", id, "--state", "failed")
	require.Equal(t, "TASK  PARENT  NAME  STATE  ATTEMPTS  DISPLAY  ERROR\n", r.stdout, "no failed task")

	r = f.run("job", "tasks", id, "--state", "broken")
	require.NotEqual(t, 0, r.code)
	require.Contains(t, r.stderr, `--state "broken" is not a task state`)
	r = f.run("job", "tasks", id, "--limit", "2", "--cursor", "x")
	require.NotEqual(t, 0, r.code)
	require.Contains(t, r.stderr, `--cursor "x" is not a cursor`)
	r = f.run("job", "tasks", id, "--limit", "2", "--attempts")
	require.NotEqual(t, 0, r.code)
}
