package cli

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/workflows"
)

func TestJobWaitExitCodes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.cluster("idle")
	f.register("idle") // accepts submissions, runs nothing
	f.runner("dev")

	t.Run("completed", func(t *testing.T) {
		id := f.submit("dev", "FanOut", `{"n": 5, "merge": true}`)
		r := f.run("job", "wait", id, "--interval", "20ms", "--timeout", "30s")
		require.Equal(t, ExitOK, r.code, r.stderr)
		require.Empty(t, r.stderr)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		require.Regexp(t, `^job `+id+` completed after \S+: 7/7 tasks done \(7 computed\)$`, lines[len(lines)-1])
		for _, l := range lines[:len(lines)-1] {
			require.Regexp(t, `^(submitted|running|completed): \d+/\d+ tasks done`, l)
		}
		require.Equal(t, "completed", f.job(id)["state"])
	})

	t.Run("failed", func(t *testing.T) {
		id := f.submit("dev", "Fail", `{}`)
		r := f.run("job", "wait", id, "--interval", "20ms", "--timeout", "30s")
		require.Equal(t, ExitFailure, r.code, r.stderr)
		require.Empty(t, r.stderr)
		require.Contains(t, r.stdout, "job "+id+" failed after ")
		require.Contains(t, r.stdout, "1/1 tasks done (1 failed); see the errors with: runfleet job tasks "+id+"\n")
	})

	t.Run("canceled", func(t *testing.T) {
		id := f.submit("idle", "Noop", `{}`)
		f.ok("job", "cancel", id)
		r := f.run("job", "wait", id, "--interval", "20ms")
		require.Equal(t, ExitFailure, r.code)
		require.Contains(t, r.stdout, "job "+id+" canceled")
	})

	t.Run("timeout", func(t *testing.T) {
		id := f.submit("idle", "Noop", `{}`)
		start := time.Now()
		r := f.run("job", "wait", id, "--interval", "20ms", "--timeout", "300ms")
		require.Equal(t, ExitTimeout, r.code)
		require.Less(t, time.Since(start), 10*time.Second)
		require.Contains(t, r.stdout, "job "+id+" is still submitted after 300ms: 0/1 tasks done (1 queued)\n")
		require.Equal(t, "runfleet: timed out after 300ms waiting for job "+id+"\n", r.stderr)
	})

	t.Run("unknown job", func(t *testing.T) {
		r := f.run("job", "wait", "no-such-job", "--interval", "20ms")
		require.Equal(t, ExitFailure, r.code)
		require.Contains(t, r.stderr, "runfleet: job not found: \"no-such-job\"")
	})

	t.Run("submit --wait", func(t *testing.T) {
		r := f.run("job", "submit", "--cluster", "dev", "--name", "w", "--task", "Sleep", "--version", "v1.0",
			"--input", `{"ms": 50}`, "--wait", "--interval", "20ms", "--timeout", "30s")
		require.Equal(t, ExitOK, r.code, r.stderr)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		require.Regexp(t, `^[0-9a-f-]{36}$`, lines[0], "the id comes first, alone")
		require.Regexp(t, `^job `+lines[0]+` completed after `, lines[len(lines)-1])

		r = f.run("job", "submit", "--cluster", "dev", "--name", "w", "--task", "Fail", "--version", "v1.0",
			"--wait", "--interval", "20ms", "--timeout", "30s")
		require.Equal(t, ExitFailure, r.code, r.stderr)

		r = f.run("job", "submit", "--cluster", "idle", "--name", "w", "--task", "Noop", "--version", "v1.0",
			"--wait", "--interval", "20ms", "--timeout", "200ms")
		require.Equal(t, ExitTimeout, r.code, r.stderr)
	})
}

func TestJobWaitDrawsBarOnTerminal(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	id := f.submit("dev", "FanOut", `{"n": 30, "child": "Sleep", "child_input": {"ms": 20}}`)

	a, out, errOut := testApp("")
	a.terminal = func(io.Writer) bool { return true }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := a.run(ctx, []string{"--redis", f.url, "job", "wait", id, "--interval", "10ms"})
	require.Equal(t, ExitOK, code, errOut.String())
	s := out.String()
	require.Regexp(t, `^\r(submitted|running|completed) \[`, s)
	require.Contains(t, s, "\x1b[K")
	require.Contains(t, s, "31/31 tasks │ 31 computed")
	// The bar is cleared before the final line, which stands alone.
	last := s[strings.LastIndex(s, "\r\x1b[K")+len("\r\x1b[K"):]
	require.Regexp(t, `^job `+id+` completed after \S+: 31/31 tasks done \(31 computed\)\n$`, last)
}

// TestJobWaitLearnsOfTheEndFromAnEvent: with a fallback read every minute,
// job wait still returns as soon as the job ends, so the end came as an event.
func TestJobWaitLearnsOfTheEndFromAnEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	id := f.submit("dev", "Sleep", `{"ms": 300}`)
	start := time.Now()
	r := f.run("job", "wait", id, "--interval", "1m", "--timeout", "50s")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Less(t, time.Since(start), time.Minute, "before the first fallback read")
	require.Regexp(t, `job `+id+` completed after \S+: 1/1 tasks done \(1 computed\)\n$`, r.stdout)
	require.Contains(t, r.stdout, "running: 0/1 tasks done (1 running)\n", "it saw the job run first")
}

func TestProgressBar(t *testing.T) {
	t.Parallel()
	j := workflows.Job{State: workflows.JobRunning,
		TaskCounts: map[string]int64{"queued": 3, "running": 2, "computed": 7, "failed": 0},
		Progress:   []workflows.ProgressInfo{{Label: "tiles", Total: 10, Done: 5}}}
	require.Equal(t, "running [███████████░░░░░░░░░] 7/12 tasks │ tiles 5/10 │ 3 queued 2 running 7 computed",
		progressBar(j, 0))
	cut := progressBar(j, 40)
	require.Equal(t, 39, len([]rune(cut)))
	require.True(t, strings.HasSuffix(cut, "…"))

	empty := workflows.Job{State: workflows.JobSubmitted, TaskCounts: map[string]int64{}}
	require.Equal(t, "submitted [░░░░░░░░░░░░░░░░░░░░] 0/0 tasks", progressBar(empty, 0))
}
