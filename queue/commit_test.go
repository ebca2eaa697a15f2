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
	hints, err := b.q.Read(b.ctx, owner, []string{b.stream(b.child)}, 100, -1)
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
	// hints[0] was acknowledged as stale, hints[1] (its task still held)
	// and the two claimed ones stay pending.
	require.Equal(t, int64(3), b.pending(t, b.stream(b.child)))

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
	require.Equal(t, int64(3), b.pending(t, b.stream(b.child)))
	res, err = b.q.CommitAndClaim(b.ctx, "r1", Commit{
		Completions: []Completion{{JobID: "j", Seq: claimedNow[0].Seq, Attempt: claimedNow[0].Attempt}},
		Acks:        []Hint{first[1].Hint},
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
