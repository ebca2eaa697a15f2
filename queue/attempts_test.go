package queue

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// A task lost with its runner, failed once, handed back once and finally
// computed keeps one attempt per execution, each with its runner's context
// where that runner recorded one.
func TestAttemptsKeepEveryExecution(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: "j", Name: "j", Cluster: "c", Task: b.parent,
		Input: []byte("{}"), MaxRetries: 3}))
	ctxOf := func(id string) RunnerContext {
		return RunnerContext{ID: id, Host: "host-" + id, PID: 42, Cluster: "c", SDKVersion: "v1.2.3", OS: "linux", Arch: "arm64"}
	}

	// Attempt 1: its runner dies.
	held := b.claimAs(t, "dead", b.stream(b.parent))
	require.Len(t, held, 1)
	require.Equal(t, int64(-1), held[0].Parent, "the root has no parent")
	require.NoError(t, b.recordContext("j", ctxOf("dead")))
	require.NoError(t, b.q.Stopped(b.ctx, "c", "dead"))
	_, err := b.q.ReclaimDead(b.ctx, "c", "live", nil, 10)
	require.NoError(t, err)

	// Attempt 2 fails with a panic; attempt 3 is handed back.
	held = b.claimAs(t, "r2", b.stream(b.parent))
	require.Len(t, held, 1)
	require.NoError(t, b.recordContext("j", ctxOf("r2")))
	started := time.Now()
	out, err := b.q.Fail(b.ctx, "r2", []Failure{{JobID: "j", Seq: 0, Attempt: 2, Error: "task panicked: boom",
		Stack: "goroutine 7 [running]:\nmain.boom()", Claimed: held[0].Claimed, Started: started}})
	require.NoError(t, err)
	require.Equal(t, []string{OutcomeRetry}, out)
	held = b.claimAs(t, "r2", b.stream(b.parent))
	require.Len(t, held, 1)
	_, err = b.q.Fail(b.ctx, "r2", []Failure{{JobID: "j", Seq: 0, Attempt: 3, Error: "stopping", HandBack: true,
		Claimed: held[0].Claimed}})
	require.NoError(t, err)

	// Attempt 4 computes, 250 ms after its claim.
	held = b.claimAs(t, "r4", b.stream(b.parent))
	require.Len(t, held, 1)
	require.Equal(t, 4, held[0].Attempt)
	running, err := b.q.TaskAttempts(b.ctx, "j", 0)
	require.NoError(t, err)
	require.Equal(t, AttemptRunning, running[3].Outcome)
	res, err := b.q.Complete(b.ctx, "r4", []Completion{{JobID: "j", Seq: 0, Attempt: 4, StartDelay: 250 * time.Millisecond}})
	require.NoError(t, err)
	require.Equal(t, []error{nil}, res)

	as, err := b.q.TaskAttempts(b.ctx, "j", 0)
	require.NoError(t, err)
	require.Len(t, as, 4)
	outcomes := []string{}
	for i, a := range as {
		require.Equal(t, i+1, a.Number)
		require.False(t, a.Claimed.IsZero(), "attempt %d has its claim time", a.Number)
		require.False(t, a.Finished.IsZero(), "attempt %d has its end", a.Number)
		outcomes = append(outcomes, a.Outcome)
	}
	require.Equal(t, []string{AttemptLost, AttemptFailed, AttemptHandedBack, AttemptComputed}, outcomes)

	require.Equal(t, "dead", as[0].Runner)
	require.Equal(t, ctxOf("dead"), *as[0].Context)
	require.Contains(t, as[0].Error, "runner dead was lost")

	require.Equal(t, "r2", as[1].Runner)
	require.Equal(t, "host-r2", as[1].Context.Host)
	require.Equal(t, "task panicked: boom", as[1].Error)
	require.Equal(t, "goroutine 7 [running]:\nmain.boom()", as[1].Stack)
	require.WithinDuration(t, started, as[1].Started, time.Millisecond)

	require.Equal(t, "stopping", as[2].Error)
	require.Empty(t, as[2].Stack)

	require.Equal(t, "r4", as[3].Runner)
	require.Nil(t, as[3].Context, "r4 never recorded a context")
	require.Equal(t, 250*time.Millisecond, as[3].Started.Sub(as[3].Claimed))
	require.Empty(t, as[3].Error, "a computed attempt shows no earlier attempt's error")

	tasks, err := b.q.JobTasks(b.ctx, "j")
	require.NoError(t, err)
	all, err := b.q.JobAttempts(b.ctx, "j", tasks)
	require.NoError(t, err)
	require.Equal(t, map[int64][]Attempt{0: as}, all)

	runners, err := b.q.JobRunners(b.ctx, "j")
	require.NoError(t, err)
	require.Len(t, runners, 2)
	// A second record of the same runner changes nothing.
	again := ctxOf("r2")
	again.Host = "elsewhere"
	require.NoError(t, b.recordContext("j", again))
	runners, err = b.q.JobRunners(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, "host-r2", runners["r2"].Host)
}

// A refused failure (the task is no longer this runner's) writes no
// attempt record: the attempt that holds it now is the one that counts.
func TestAttemptRecordNeedsTheTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")
	out, err := b.q.Fail(b.ctx, "other", []Failure{{JobID: "j", Seq: c.Seq, Attempt: c.Attempt, Error: "not mine"}})
	require.NoError(t, err)
	require.Equal(t, []string{OutcomeLost}, out)
	require.Zero(t, b.rdb.Exists(b.ctx, attemptsKey("j")).Val())
	as, err := b.q.TaskAttempts(b.ctx, "j", c.Seq)
	require.NoError(t, err)
	require.Len(t, as, 1)
	require.Equal(t, AttemptRunning, as[0].Outcome)
	require.Equal(t, "r1", as[0].Runner)
}

func TestGetTaskNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.rootClaimed(t, "j", "r1")
	_, err := b.q.GetTask(b.ctx, "j", 7)
	require.ErrorIs(t, err, ErrTaskNotFound)
	require.ErrorContains(t, err, "job j has no task 7")
	_, err = b.q.TaskAttempts(b.ctx, "nope", 0)
	require.ErrorIs(t, err, ErrJobNotFound)
}

// Errors and stacks are capped at 16 KiB each, cut on a character
// boundary, saying how much was cut.
func TestAttemptTextIsCapped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")
	long := strings.Repeat("é", 40<<10) // 80 KiB of two-byte characters
	_, err := b.q.Fail(b.ctx, "r1", []Failure{{JobID: "j", Seq: c.Seq, Attempt: c.Attempt, Error: long, Stack: long}})
	require.NoError(t, err)
	as, err := b.q.TaskAttempts(b.ctx, "j", c.Seq)
	require.NoError(t, err)
	for _, s := range []string{as[0].Error, as[0].Stack} {
		require.LessOrEqual(t, len(s), AttemptTextLimit)
		require.Greater(t, len(s), AttemptTextLimit-64)
		require.True(t, utf8.ValidString(s))
		require.Contains(t, s, "…[truncated")
	}
	require.Equal(t, "short", CapText("short", 10))
}

// A runner context for a job that is gone (or never was) leaves no key.
func TestRunnerContextNeedsTheJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.recordContext("gone", RunnerContext{ID: "r1"}))
	require.Zero(t, b.rdb.Exists(b.ctx, jobRunnersKey("gone")).Val())
}

// recordContext records rc in job as a runner's commit does.
func (b *bundle) recordContext(job string, rc RunnerContext) error {
	ctxJSON, err := json.Marshal(rc)
	if err != nil {
		return err
	}
	res, err := b.q.CommitAndClaim(b.ctx, rc.ID, Commit{Contexts: []JobContext{{JobID: job, Context: ctxJSON}}})
	if err == nil {
		err = res.ContextErr
	}
	return err
}
