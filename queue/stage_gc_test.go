package queue

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// children returns n independent subtask specs: more than InlineSubtasks,
// so Stage writes them in chunks before the commit.
func (b *bundle) children(n int) []SubtaskSpec {
	specs := make([]SubtaskSpec, n)
	for i := range specs {
		specs[i] = SubtaskSpec{Task: b.child, Cluster: "c", Input: []byte("{}")}
	}
	return specs
}

// taskHashes counts the task hashes of job that exist among seqs
// first .. first+n-1.
func (b *bundle) taskHashes(t *testing.T, job string, first, n int64) int {
	t.Helper()
	pipe := b.rdb.Pipeline()
	for seq := first; seq < first+n; seq++ {
		pipe.Exists(b.ctx, taskKey(job, seq))
	}
	cmds, err := pipe.Exec(b.ctx)
	require.NoError(t, err)
	found := 0
	for _, c := range cmds {
		if c.(interface{ Val() int64 }).Val() == 1 {
			found++
		}
	}
	return found
}

// staged runs Stage for c with n children and returns the completion.
func (b *bundle) staged(t *testing.T, owner string, c Claimed, n int) Completion {
	t.Helper()
	comp := Completion{JobID: c.JobID, Seq: c.Seq, Attempt: c.Attempt, Subtasks: b.children(n)}
	require.NoError(t, b.q.Stage(b.ctx, owner, &comp))
	require.True(t, comp.staged)
	return comp
}

func TestAbandonedStageIsDroppedOnceItsAttemptEnds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")
	const n = 3*StageChunk + 50
	comp := b.staged(t, "r1", c, n)
	require.Equal(t, n, b.taskHashes(t, "j", comp.base, n))

	// The attempt still runs: it may yet commit, so nothing is dropped.
	dropped, err := b.q.DropAbandonedStages(b.ctx, "j")
	require.NoError(t, err)
	require.Zero(t, dropped)
	require.Equal(t, n, b.taskHashes(t, "j", comp.base, n))

	// The execution is handed back: that attempt can never commit.
	out, err := b.q.Fail(b.ctx, "r1", []Failure{{JobID: "j", Seq: c.Seq, Attempt: c.Attempt, Error: "stop", HandBack: true}})
	require.NoError(t, err)
	require.Equal(t, []string{OutcomeRetry}, out)
	dropped, err = b.q.DropAbandonedStages(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, n, dropped)
	require.Zero(t, b.taskHashes(t, "j", comp.base, n))
	require.Zero(t, b.rdb.Exists(b.ctx, stagedKey("j")).Val(), "the record goes with the range")

	again, err := b.q.DropAbandonedStages(b.ctx, "j")
	require.NoError(t, err)
	require.Zero(t, again)
	j, err := b.q.GetJob(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, int64(1), j.TaskCounts[TaskQueued], "staged tasks never counted, so dropping them changes no count")
}

func TestCommittedStageIsNeverDropped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")
	const n = 2*StageChunk + 1
	comp := b.staged(t, "r1", c, n)
	res, err := b.q.Complete(b.ctx, "r1", []Completion{comp})
	require.NoError(t, err)
	require.NoError(t, res[0])
	require.Zero(t, b.rdb.Exists(b.ctx, stagedKey("j")).Val(), "the commit clears the record")

	dropped, err := b.q.DropAbandonedStages(b.ctx, "j")
	require.NoError(t, err)
	require.Zero(t, dropped)
	require.Equal(t, n, b.taskHashes(t, "j", comp.base, n))
	tasks, err := b.q.JobTasks(b.ctx, "j")
	require.NoError(t, err)
	require.Len(t, tasks, 1+n)
}

func TestStageOfACommitRefusedAsLostIsDroppedAndTheNewAttemptsKept(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: "j", Name: "j", Cluster: "c", Task: b.parent, Input: []byte("{}")}))
	held := b.claimAs(t, "r1", b.stream(b.parent))
	require.Len(t, held, 1)
	const n = StageChunk + 1
	first := b.staged(t, "r1", held[0], n)

	// r1 dies with the task; another runner reclaims it and runs it again.
	require.NoError(t, b.q.Stopped(b.ctx, "c", "r1"))
	rep, err := b.q.ReclaimDead(b.ctx, "c", "r2", nil, 10)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Requeued)
	retry := b.claimAs(t, "r2", b.stream(b.parent))
	require.Len(t, retry, 1)
	require.Equal(t, 2, retry[0].Attempt)
	second := b.staged(t, "r2", retry[0], n)

	// r1's late commit is refused, so its set will never be linked.
	res, err := b.q.Complete(b.ctx, "r1", []Completion{first})
	require.NoError(t, err)
	require.ErrorIs(t, res[0], ErrLost)

	dropped, err := b.q.DropAbandonedStages(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, n, dropped)
	require.Zero(t, b.taskHashes(t, "j", first.base, n))
	require.Equal(t, n, b.taskHashes(t, "j", second.base, n), "the running attempt's set stays")

	res, err = b.q.Complete(b.ctx, "r2", []Completion{second})
	require.NoError(t, err)
	require.NoError(t, res[0])
	tasks, err := b.q.JobTasks(b.ctx, "j")
	require.NoError(t, err)
	require.Len(t, tasks, 1+n)
}

func TestDropStageDeletesInBoundedResumableChunks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")
	const n = 3 * StageChunk
	comp := b.staged(t, "r1", c, n)
	_, err := b.q.Fail(b.ctx, "r1", []Failure{{JobID: "j", Seq: c.Seq, Attempt: c.Attempt, Error: "boom", HandBack: true}})
	require.NoError(t, err)

	fields, err := b.rdb.HKeys(b.ctx, stagedKey("j")).Result()
	require.NoError(t, err)
	require.Len(t, fields, 1)
	// One call deletes at most its chunk and keeps the rest on record, as
	// a sweep cut short after its first call would leave it.
	res, err := b.rdb.FCall(b.ctx, "rf_drop_stage", []string{jobKey("j")}, fields[0], 250).Slice()
	require.NoError(t, err)
	require.Equal(t, []any{"more", int64(250)}, res)
	require.Equal(t, n-250, b.taskHashes(t, "j", comp.base, n))
	require.Equal(t, "350", b.rdb.HGet(b.ctx, stagedKey("j"), fields[0]).Val())

	dropped, err := b.q.DropAbandonedStages(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, n-250, dropped)
	require.Zero(t, b.taskHashes(t, "j", comp.base, n))
}

func TestDropAllAbandonedStagesCoversEveryJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = StageChunk + 10
	for _, job := range []string{"a", "b"} {
		c := b.rootClaimed(t, job, "r-"+job)
		b.staged(t, "r-"+job, c, n)
		_, err := b.q.Fail(b.ctx, "r-"+job, []Failure{{JobID: job, Seq: c.Seq, Attempt: c.Attempt, Error: "boom"}})
		require.NoError(t, err)
	}
	live := b.rootClaimed(t, "live", "r-live")
	b.staged(t, "r-live", live, n)

	dropped, err := b.q.DropAllAbandonedStages(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 2*n, dropped)
	require.Equal(t, int64(1), b.rdb.Exists(b.ctx, stagedKey("live")).Val(), "a running attempt keeps its set")
}
