package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/workflows"
)

// logLines waits until job logs prints want lines (runners store records
// within about 100 ms, maybe after the job finished) and returns them.
func (f *fixture) logLines(want int, args ...string) []string {
	f.t.Helper()
	var lines []string
	require.Eventually(f.t, func() bool {
		out := strings.TrimRight(f.ok(append([]string{"job", "logs"}, args...)...).stdout, "\n")
		lines = nil
		if out != "" {
			lines = strings.Split(out, "\n")
		}
		return len(lines) >= want
	}, 10*time.Second, 20*time.Millisecond)
	require.Len(f.t, lines, want)
	return lines
}

func TestJobLogsText(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	id := f.submit("dev", "Log", `{"lines": 2, "attrs": {"k": "v w", "n": 7}, "message": "hello\nthere"}`)
	f.ok("job", "wait", id, "--interval", "20ms", "--timeout", "30s")

	lines := f.logLines(4, id)
	for _, l := range []string{lines[0] + "\n" + lines[1], lines[2] + "\n" + lines[3]} {
		require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  \[task 0 Log, attempt 1, runner \S+-\d+-[0-9a-f]{8}\] hello\n    there `+
			`\d i=\d k="v w" n=7$`, l)
	}
	require.Contains(t, lines[1], "there 0 i=0")
	require.Contains(t, lines[3], "there 1 i=1")
}

func TestJobLogsJSONAndTask(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	id := f.submit("dev", "FanOut", `{"n": 2, "child": "Log", "child_input": {"lines": 3}}`)
	f.ok("job", "wait", id, "--interval", "20ms", "--timeout", "30s")

	lines := f.logLines(6, id, "--json")
	seen := map[int64]int{}
	for _, l := range lines {
		var r workflows.LogRecord
		require.NoError(t, json.Unmarshal([]byte(l), &r), l)
		require.NotEmpty(t, r.ID)
		require.Equal(t, "Log", r.Task)
		require.Equal(t, "INFO", r.Level)
		require.Equal(t, 1, r.Attempt)
		require.NotEmpty(t, r.Runner)
		require.False(t, r.Time.IsZero())
		seen[r.TaskID]++
	}
	require.Len(t, seen, 2)

	var tasks []workflows.TaskInfo
	require.NoError(t, json.Unmarshal([]byte(f.ok("job", "tasks", id, "--json").stdout), &tasks))
	child := tasks[1].Seq
	only := f.logLines(3, id, "--task", jsonNumber(child))
	for _, l := range only {
		require.Contains(t, l, "[task "+jsonNumber(child)+" Log, attempt 1")
	}
	require.Empty(t, f.ok("job", "logs", id, "--task", "0").stdout, "the root logged nothing")

	r := f.run("job", "logs", id, "--task", "-2")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, "--task must be a task id")
}

func jsonNumber(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestJobLogsUnknownJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, args := range [][]string{{"job", "logs", "no-such-job"}, {"job", "logs", "no-such-job", "--follow"}} {
		r := f.run(args...)
		require.Equal(t, ExitFailure, r.code, "%v", args)
		require.Contains(t, r.stderr, `job not found: "no-such-job"`)
		require.Contains(t, r.stderr, "runfleet job list")
	}
}

// --follow prints records while the job runs and ends by itself once the
// job is finished and its last records are in.
func TestJobLogsFollow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	release := filepath.Join(t.TempDir(), "release")
	in, _ := json.Marshal(map[string]any{"lines": 3, "wait_for": release, "fail": "failed after logging"})
	id := f.submit("dev", "Log", string(in))

	a, out, errOut := testApp("")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- a.run(ctx, []string{"--redis", f.url, "job", "logs", id, "--follow"}) }()

	// The first record is printed while the task still runs (it waits for
	// the file).
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "] line 0 i=0") }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, "running", f.job(id)["state"])
	select {
	case code := <-done:
		t.Fatalf("--follow ended (code %d) while the job ran: %s", code, errOut.String())
	default:
	}
	require.NoError(t, os.WriteFile(release, nil, 0o644))

	select {
	case code := <-done:
		require.Equal(t, 0, code, errOut.String())
	case <-time.After(30 * time.Second):
		t.Fatal("--follow did not end after the job finished")
	}
	require.Equal(t, "failed", f.job(id)["state"])
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	require.Len(t, lines, 3, out.String())
	for i, l := range lines {
		require.Contains(t, l, "] line "+jsonNumber(int64(i))+" i=")
	}
}

func TestRunnerStartChecksLogCaps(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, flag := range []string{"--task-log-bytes", "--job-log-bytes"} {
		r := f.run("runner", "start", "--cluster", "dev", flag, "0")
		require.Equal(t, ExitUsage, r.code, r.stderr)
		require.Contains(t, r.stderr, "--task-log-bytes and --job-log-bytes must be at least 1")
	}
}
