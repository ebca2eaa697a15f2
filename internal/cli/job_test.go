package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestJobSubmitRefusesBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.register("dev")
	submit := func(extra ...string) result {
		base := map[string]string{"--cluster": "dev", "--name": "bad", "--task": "Noop", "--version": "v1.0"}
		args := []string{"job", "submit"}
		for i := 0; i+1 < len(extra); i += 2 {
			base[extra[i]] = extra[i+1]
		}
		for k, v := range base {
			args = append(args, k, v)
		}
		return f.run(args...)
	}
	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"unknown cluster", []string{"--cluster", "nope"},
			"runfleet: submit job \"bad\": cluster not found: \"nope\" (create it with `runfleet cluster create nope`)\n"},
		{"malformed cluster", []string{"--cluster", "No_Pe"}, "runfleet: submit job \"bad\": invalid cluster slug \"No_Pe\""},
		{"malformed version", []string{"--version", "1.0"},
			"runfleet: submit job \"bad\": invalid task identifier: version \"1.0\" of task \"Noop\" must look like v1.2 (vMAJOR.MINOR)\n"},
		{"version with patch", []string{"--version", "v1.0.3"}, "must look like v1.2 (vMAJOR.MINOR)"},
		{"non-JSON input", []string{"--input", "{ms: 5}"}, "runfleet: submit job \"bad\": input must be a JSON object: invalid character 'm'"},
		{"JSON array input", []string{"--input", "[1,2]"}, "input must be a JSON object"},
		{"JSON null input", []string{"--input", "null"}, "input must be a JSON object: got null"},
		{"unknown task", []string{"--task", "Nope"}, "unknown task \"Nope\" in cluster \"dev\": no runner of that cluster has registered it"},
		{"negative retries", []string{"--max-retries", "-1"}, "max retries -1 is negative"},
		{"missing input file", []string{"--input-file", filepath.Join(t.TempDir(), "missing.json")}, "runfleet: read input: open "},
	} {
		r := submit(tc.extra...)
		require.Equal(t, ExitFailure, r.code, "%s: %s", tc.name, r.stderr)
		require.Contains(t, r.stderr, tc.want, tc.name)
		require.Equal(t, 1, strings.Count(r.stderr, "runfleet:"), "%s: one error line: %s", tc.name, r.stderr)
		require.Empty(t, r.stdout, tc.name)
	}
	require.Equal(t, 0, f.jobCount(), "no job was written")
}

func TestJobSubmitAndGet(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.register("dev")

	id := f.submit("dev", "Sleep", `{"ms": 5}`, "--max-retries", "2")
	j := f.job(id)
	require.Equal(t, id, j["id"])
	require.Equal(t, "test-sleep", j["name"])
	require.Equal(t, "dev", j["cluster"])
	require.Equal(t, "submitted", j["state"])
	require.Equal(t, map[string]any{"queued": 1.0, "running": 0.0, "computed": 0.0, "failed": 0.0,
		"skipped": 0.0, "failed_optional": 0.0}, j["task_counts"])
	require.Equal(t, []any{}, j["progress"], "progress is present even when empty")
	require.NotEmpty(t, j["created_at"])

	r := f.ok("job", "get", id)
	for _, want := range []string{"ID:        " + id + "\n", "Name:      test-sleep\n", "Cluster:   dev\n",
		"State:     submitted\n", "Finished:  -\n", "Tasks:     0/1 done (1 queued)\n"} {
		require.Contains(t, r.stdout, want)
	}

	// The root task got the input and max retries.
	r = f.ok("job", "tasks", id, "--json")
	var tasks []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &tasks))
	require.Len(t, tasks, 1)
	require.JSONEq(t, `{"ms": 5}`, tasks[0]["input"].(string))
	require.Equal(t, 2.0, tasks[0]["max_retries"])

	r = f.run("job", "get", "0196a3c4-0000-7000-8000-000000000000")
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, "runfleet: job not found: \"0196a3c4-0000-7000-8000-000000000000\"\nhint: list recent jobs with: runfleet job list\n", r.stderr)
}

func TestJobSubmitInputFromFileAndStdin(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.register("dev")
	args := []string{"job", "submit", "--cluster", "dev", "--name", "n", "--task", "Sleep", "--version", "v1.0"}

	path := filepath.Join(t.TempDir(), "in.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"ms": 7}`+"\n"), 0o600))
	r := f.ok(append(args, "--input-file", path)...)
	fileJob := strings.TrimSpace(r.stdout)

	r = f.runStdin(`{"ms": 8}`, append(args, "--input-file", "-")...)
	require.Equal(t, 0, r.code, r.stderr)
	stdinJob := strings.TrimSpace(r.stdout)

	for id, want := range map[string]string{fileJob: `{"ms": 7}`, stdinJob: `{"ms": 8}`} {
		var tasks []map[string]any
		require.NoError(t, json.Unmarshal([]byte(f.ok("job", "tasks", id, "--json").stdout), &tasks))
		require.JSONEq(t, want, tasks[0]["input"].(string))
	}

	r = f.runStdin(`not json`, append(args, "--input-file", "-")...)
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "input must be a JSON object")
	require.Equal(t, 2, f.jobCount())
}

func TestJobList(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.cluster("gpu")
	f.register("dev")
	f.register("gpu")
	first := f.submit("dev", "Noop", "{}")
	second := f.submit("gpu", "Noop", "{}")
	third := f.submit("dev", "Noop", "{}")
	f.ok("job", "cancel", third)

	r := f.ok("job", "list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 4)
	require.Regexp(t, `^ID\s+NAME\s+CLUSTER\s+STATE\s+TASKS\s+FAILED\s+CREATED\s+AGE$`, lines[0])
	require.Regexp(t, `^`+third+`\s+test-noop\s+dev\s+canceled\s+0/1\s+0\s+\d{4}-`, lines[1], "newest first")
	require.True(t, strings.HasPrefix(lines[2], second))
	require.True(t, strings.HasPrefix(lines[3], first))

	ids := func(args ...string) []string {
		var jobs []map[string]any
		require.NoError(t, json.Unmarshal([]byte(f.ok(append([]string{"job", "list", "--json"}, args...)...).stdout), &jobs))
		var out []string
		for _, j := range jobs {
			out = append(out, j["id"].(string))
			require.Contains(t, j, "task_counts")
			require.Contains(t, j, "progress")
		}
		return out
	}
	require.Equal(t, []string{third, first}, ids("--cluster", "dev"))
	require.Equal(t, []string{first}, ids("--cluster", "dev", "--state", "submitted"))
	require.Equal(t, []string{third}, ids("--state", "canceled"))
	require.Equal(t, []string{third, second}, ids("--limit", "2"))
	require.Empty(t, ids("--cluster", "deleted-long-ago"))

	r = f.run("job", "list", "--state", "done")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, `runfleet: unknown job state "done" (want one of submitted, running, completed, failed, canceled)`)

	r = f.run("job", "list", "--cluster", "Bad_Slug")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "invalid cluster slug")

	r = f.run("job", "list", "--cluster", "gpu", "--state", "failed")
	require.Equal(t, 0, r.code)
	require.Empty(t, r.stdout)
	require.Equal(t, "no jobs found\n", r.stderr)
}

func TestJobCancelAndRetry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.register("dev")
	id := f.submit("dev", "Noop", "{}")

	r := f.ok("job", "cancel", id)
	require.Equal(t, "canceled job "+id+"; running tasks finish (resume with: runfleet job retry "+id+")\n", r.stdout)
	require.Equal(t, "canceled", f.job(id)["state"])

	r = f.ok("job", "cancel", id)
	require.Equal(t, "job "+id+" is already canceled; nothing to cancel\n", r.stdout)

	r = f.ok("job", "retry", id)
	require.Equal(t, "retried job "+id+"; it is submitted (1 queued)\n", r.stdout)
	require.Equal(t, "submitted", f.job(id)["state"])
	require.Equal(t, "job "+id+" is submitted; nothing to retry\n", f.ok("job", "retry", id).stdout)

	f.runner("dev")
	f.ok("job", "wait", id, "--interval", "20ms", "--timeout", "20s")
	r = f.run("job", "cancel", id)
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, "runfleet: job is already completed: \""+id+"\"\n", r.stderr)

	for _, verb := range []string{"cancel", "retry"} {
		r = f.run("job", verb, "no-such-job")
		require.Equal(t, ExitFailure, r.code)
		require.Contains(t, r.stderr, "runfleet: job not found: \"no-such-job\"\nhint: list recent jobs with: runfleet job list\n")
	}
}

func TestJobRetryRunsOnlyFailedTasks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	// Flaky fails its first attempt; without retries the job fails.
	id := f.submit("dev", "Flaky", `{"fail_times": 1}`)
	r := f.run("job", "wait", id, "--interval", "20ms", "--timeout", "20s")
	require.Equal(t, ExitFailure, r.code, r.stderr)

	r = f.ok("job", "retry", id)
	require.Regexp(t, `^retried job `+id+`; it is (running|completed) `, r.stdout)
	r = f.ok("job", "wait", id, "--interval", "20ms", "--timeout", "20s")
	require.Contains(t, r.stdout, "job "+id+" completed after ")

	var tasks []map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.ok("job", "tasks", id, "--json").stdout), &tasks))
	require.Equal(t, 2.0, tasks[0]["attempts"])
}
