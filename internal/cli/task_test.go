package cli

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// task get and job tasks --attempts show each execution, where it ran and
// how it ended.
func TestTaskGetShowsAttempts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	id := f.submit("dev", "FanOut", `{"n": 2, "child": "Fail"}`)
	r := f.run("job", "wait", id, "--interval", "20ms", "--timeout", "30s")
	require.Equal(t, ExitFailure, r.code)

	host, _ := os.Hostname()
	r = f.ok("task", "get", id, "1")
	require.Regexp(t, `(?m)^Task:\s+1 Fail@v1\.0$`, r.stdout)
	require.Regexp(t, `(?m)^     claimed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}, started .*, finished .* \(\S+\)$`, r.stdout)
	require.Regexp(t, `(?m)^State:\s+failed$`, r.stdout)
	require.Contains(t, r.stdout, "Attempts (1):")
	require.Regexp(t, `(?m)^  #1 failed on runner \S+$`, r.stdout)
	require.Contains(t, r.stdout, "host "+host+", pid ")
	require.Contains(t, r.stdout, "error: bench task failed on purpose")

	var view struct {
		Job  string `json:"job"`
		Task struct {
			ID    int64  `json:"id"`
			State string `json:"state"`
		} `json:"task"`
		Attempts []struct {
			Number  int    `json:"number"`
			Outcome string `json:"outcome"`
			Runner  string `json:"runner"`
			Context struct {
				Host    string `json:"host"`
				Cluster string `json:"cluster"`
			} `json:"context"`
			Started  string `json:"started"`
			Finished string `json:"finished"`
		} `json:"attempts"`
	}
	require.NoError(t, json.Unmarshal([]byte(f.ok("task", "get", id, "1", "--json").stdout), &view))
	require.Equal(t, id, view.Job)
	require.Equal(t, "failed", view.Task.State)
	require.Len(t, view.Attempts, 1)
	require.Equal(t, "failed", view.Attempts[0].Outcome)
	require.Equal(t, host, view.Attempts[0].Context.Host)
	require.Equal(t, "dev", view.Attempts[0].Context.Cluster)
	require.NotEmpty(t, view.Attempts[0].Started)
	require.NotEmpty(t, view.Attempts[0].Finished)

	r = f.ok("job", "tasks", id, "--attempts")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	// The job fails with its first failed task, so the second Fail may
	// never start.
	require.GreaterOrEqual(t, len(lines), 1+2, r.stdout)
	require.Regexp(t, `^TASK\s+NAME\s+ATTEMPT\s+OUTCOME\s+RUNNER\s+HOST\s+RELEASE\s+STARTED\s+TOOK\s+ERROR$`, lines[0])
	require.Regexp(t, `^0\s+FanOut\s+1\s+computed\s+\S+\s+`+host+`\s+-\s+`, lines[1])
	require.Regexp(t, `^\d\s+Fail\s+1\s+failed\s+.*bench task failed on purpose$`, lines[2])

	var all []struct {
		ID       int64             `json:"id"`
		Attempts []json.RawMessage `json:"attempts"`
	}
	require.NoError(t, json.Unmarshal([]byte(f.ok("job", "tasks", id, "--attempts", "--json").stdout), &all))
	require.Len(t, all, len(lines)-1)
}

func TestTaskGetNamesWhatIsWrong(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	id := f.submit("dev", "Noop", `{}`)
	f.ok("job", "wait", id, "--interval", "20ms", "--timeout", "30s")

	// job get names the job's trace: the id to search for in a backend.
	got := f.ok("job", "get", id).stdout
	m := regexp.MustCompile(`(?m)^Trace:\s+([0-9a-f]{32})$`).FindStringSubmatch(got)
	require.NotNil(t, m, got)
	var j struct {
		TraceParent string `json:"traceparent"`
	}
	require.NoError(t, json.Unmarshal([]byte(f.ok("job", "get", id, "--json").stdout), &j))
	require.Equal(t, m[1], strings.Split(j.TraceParent, "-")[1])

	r := f.run("task", "get", id, "9")
	require.NotEqual(t, 0, r.code)
	require.Contains(t, r.stderr, "has no task 9")
	require.Contains(t, r.stderr, "runfleet job tasks "+id)

	r = f.run("task", "get", id, "first")
	require.NotEqual(t, 0, r.code)
	require.Contains(t, r.stderr, `task id "first" is not a task id`)

	r = f.run("task", "get", "no-such-job", "0")
	require.NotEqual(t, 0, r.code)
	require.Contains(t, r.stderr, "job not found")
}
