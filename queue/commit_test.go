package queue

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// fanOut commits the root of job with n inline Child subtasks and returns
// their hints, read by owner.
func (b *bundle) fanOut(t *testing.T, job, owner string, n int) []Hint {
	t.Helper()
	root := b.rootClaimed(t, job, owner)
	subs := make([]SubtaskSpec, n)
	for i := range subs {
		subs[i] = SubtaskSpec{Task: b.child, Cluster: "c", Input: []byte(`{"i":1}`)}
	}
	res, err := b.q.Complete(b.ctx, owner, []Completion{{JobID: job, Seq: root.Seq, Attempt: root.Attempt, Subtasks: subs}})
	require.NoError(t, err)
	require.NoError(t, res[0])
	require.NoError(t, b.q.Ack(b.ctx, []Hint{root.Hint}))
	hints, err := b.q.Read(b.ctx, owner, []string{b.stream(b.child)}, 1000, -1)
	require.NoError(t, err)
	require.Len(t, hints, n)
	return hints
}

func TestCommitAndClaimInOneTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hints := b.fanOut(t, "j", "r1", 4)
	first, err := b.q.Claim(b.ctx, "r1", hints[:2])
	require.NoError(t, err)
	require.Len(t, first, 2)

	// The results of the first two and the claims of the other two go in
	// one call of the job; a stale hint (already claimed) is acknowledged.
	res, err := b.q.CommitAndClaim(b.ctx, "r1", Commit{
		Completions: []Completion{
			{JobID: "j", Seq: first[0].Seq, Attempt: first[0].Attempt},
			{JobID: "j", Seq: first[1].Seq, Attempt: 7}, // not the attempt r1 holds
		},
		Claims: append(append([]Hint(nil), hints[2:]...), hints[0]),
	})
	require.NoError(t, err)
	require.NoError(t, res.Completed[0])
	require.ErrorIs(t, res.Completed[1], ErrLost)
	require.Len(t, res.Claimed, 2)
	require.Empty(t, res.Unclaimed)
	tasks, err := b.q.JobTasks(b.ctx, "j")
	require.NoError(t, err)
	bySeq := map[int64]Task{}
	for _, task := range tasks {
		bySeq[task.Seq] = task
	}
	for i, c := range res.Claimed {
		require.Equal(t, hints[2+i], c.Hint, "each claimed task keeps its hint, pending")
		require.Equal(t, `{"i":1}`, string(c.Input))
		require.Equal(t, TaskRunning, bySeq[c.Seq].State)
		require.Equal(t, "r1", bySeq[c.Seq].Runner)
		require.Equal(t, bySeq[c.Seq].StartedAt, bySeq[c.Seq].FirstStartedAt)
	}
	require.True(t, bySeq[first[0].Seq].Complete, "a computed leaf is complete")
	// hints[0] is reported stale, for the caller to acknowledge; nothing
	// is acknowledged without being asked.
	require.Equal(t, []Hint{hints[0]}, res.Stale)
	require.Equal(t, int64(4), b.pending(t, b.stream(b.child)))

	j, err := b.q.GetJob(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, int64(2), j.TaskCounts[TaskComputed], "root and one child")
	require.Equal(t, int64(3), j.TaskCounts[TaskRunning])
	require.Equal(t, int64(0), j.TaskCounts[TaskQueued])

	// A result's hint is acknowledged by the trip after its commit.
	claimedNow := res.Claimed
	res, err = b.q.CommitAndClaim(b.ctx, "r1", Commit{
		Completions: []Completion{{JobID: "j", Seq: first[1].Seq, Attempt: first[1].Attempt}},
	})
	require.NoError(t, err)
	require.NoError(t, res.Completed[0])
	require.Equal(t, int64(4), b.pending(t, b.stream(b.child)))
	res, err = b.q.CommitAndClaim(b.ctx, "r1", Commit{
		Completions: []Completion{{JobID: "j", Seq: claimedNow[0].Seq, Attempt: claimedNow[0].Attempt}},
		Acks:        []Hint{first[1].Hint, hints[0]},
	})
	require.NoError(t, err)
	require.NoError(t, res.Completed[0])
	require.Equal(t, int64(2), b.pending(t, b.stream(b.child)))
}

func TestCommitAndClaimAcrossJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ha := b.fanOut(t, "a", "r1", 2)
	hb := b.fanOut(t, "b", "r1", 1)
	ca, err := b.q.Claim(b.ctx, "r1", ha[:1])
	require.NoError(t, err)
	require.Len(t, ca, 1)
	// a's result with a's next claim in one rf_complete; b's claim alone.
	res, err := b.q.CommitAndClaim(b.ctx, "r1", Commit{
		Completions: []Completion{{JobID: "a", Seq: ca[0].Seq, Attempt: ca[0].Attempt}},
		Claims:      []Hint{hb[0], ha[1]},
	})
	require.NoError(t, err)
	require.NoError(t, res.Completed[0])
	require.Len(t, res.Claimed, 2)
	jobs := map[string]bool{}
	for _, c := range res.Claimed {
		jobs[c.JobID] = true
	}
	require.Equal(t, map[string]bool{"a": true, "b": true}, jobs)
}

func TestCommitAndClaimFailureKeepsEverythingPending(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hints := b.fanOut(t, "j", "r1", 2)
	first, err := b.q.Claim(b.ctx, "r1", hints[:1])
	require.NoError(t, err)

	// Without the function library every call fails: the result is not
	// committed, the claim is returned unclaimed, and no hint is
	// acknowledged, so a reclaimer still sees all of them.
	require.NoError(t, b.rdb.FunctionDelete(b.ctx, "runfleet").Err())
	res, err := b.q.CommitAndClaim(b.ctx, "r1", Commit{
		Completions: []Completion{{JobID: "j", Seq: first[0].Seq, Attempt: first[0].Attempt}},
		Claims:      hints[1:],
	})
	require.Error(t, err)
	require.Error(t, res.Completed[0])
	require.NotErrorIs(t, res.Completed[0], ErrLost)
	require.Empty(t, res.Claimed)
	require.Equal(t, hints[1:], res.Unclaimed)
	require.Equal(t, int64(2), b.pending(t, b.stream(b.child)))

	// Committed again once the library is back, as the runner retries.
	q, err := New(b.ctx, b.rdb)
	require.NoError(t, err)
	res, err = q.CommitAndClaim(b.ctx, "r1", Commit{
		Completions: []Completion{{JobID: "j", Seq: first[0].Seq, Attempt: first[0].Attempt}},
		Claims:      res.Unclaimed,
	})
	require.NoError(t, err)
	require.NoError(t, res.Completed[0])
	require.Len(t, res.Claimed, 1)
}

func TestRunHintsNameSeveralTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	root := b.rootClaimed(t, "j", "r1")
	const n = InlineSubtasks + 40 // staged, so published in runs
	subs := make([]SubtaskSpec, n)
	for i := range subs {
		subs[i] = SubtaskSpec{Task: b.child, Cluster: "c", Input: []byte(`{}`)}
	}
	subs[20].Deps = []int{3} // not ready: splits the run around it
	c := Completion{JobID: "j", Seq: root.Seq, Attempt: root.Attempt, Subtasks: subs}
	require.NoError(t, b.q.Stage(b.ctx, "r1", &c))
	res, err := b.q.Complete(b.ctx, "r1", []Completion{c})
	require.NoError(t, err)
	require.NoError(t, res[0])

	hints, err := b.q.Read(b.ctx, "r1", []string{b.stream(b.child)}, 1000, -1)
	require.NoError(t, err)
	var named int64
	for _, h := range hints {
		require.LessOrEqual(t, h.N, int64(HintRun))
		require.True(t, h.Whole())
		require.False(t, h.Has(21), "the task with a dependency is not named")
		named += h.N
	}
	require.Equal(t, int64(n-1), named)
	require.Less(t, len(hints), n/HintRun+4, "runs, not one entry per task")

	// A part of an entry claims only its own tasks.
	first, rest := hints[0].Split(3)
	require.Equal(t, int64(3), first.N)
	require.False(t, first.Whole())
	claimed, err := b.q.Claim(b.ctx, "r2", []Hint{first})
	require.NoError(t, err)
	require.Len(t, claimed, 3)
	for _, cl := range claimed {
		require.True(t, first.Has(cl.Seq))
		require.Equal(t, hints[0].ID, cl.Hint.ID)
	}
	claimed, err = b.q.Claim(b.ctx, "r2", []Hint{rest})
	require.NoError(t, err)
	require.Len(t, claimed, int(rest.N))

	// A dead runner's entry is reclaimed task by task: what r1 claimed from
	// the second entry is queued again; the first entry's tasks, held by
	// r2, are left alone.
	_, err = b.q.Claim(b.ctx, "r1", hints[1:2])
	require.NoError(t, err)
	require.NoError(t, b.q.Stopped(b.ctx, "c", "r1"))
	rep, err := b.q.ReclaimOwn(b.ctx, "c", "r1", []string{b.stream(b.parent), b.stream(b.child)})
	require.NoError(t, err)
	require.Equal(t, int(hints[1].N), rep.Requeued)
}

// Claims beyond the call budget go in further calls of the same pipeline,
// each hint whole in one call.
func TestCommitAndClaimSplitsLargeClaims(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hints := b.fanOut(t, "j", "r1", 300)
	first, err := b.q.Claim(b.ctx, "r1", hints[:10])
	require.NoError(t, err)
	var comps []Completion
	for _, c := range first {
		comps = append(comps, Completion{JobID: "j", Seq: c.Seq, Attempt: c.Attempt})
	}
	require.NoError(t, b.rdb.ConfigResetStat(b.ctx).Err())
	res, err := b.q.CommitAndClaim(b.ctx, "r1", Commit{Completions: comps, Claims: hints[10:]})
	require.NoError(t, err)
	for _, e := range res.Completed {
		require.NoError(t, e)
	}
	require.Len(t, res.Claimed, 290)
	require.Empty(t, res.Stale)
	stats, err := b.rdb.Info(b.ctx, "commandstats").Result()
	require.NoError(t, err)
	// rf_complete with 10 results and 246 claims, then one rf_claim of 44.
	require.Contains(t, stats, "cmdstat_fcall:calls=2,")
}
