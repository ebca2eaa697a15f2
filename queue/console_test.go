package queue

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func seqsOf(ts []Task) []int64 {
	out := make([]int64, len(ts))
	for i, t := range ts {
		out[i] = t.Seq
	}
	return out
}

// TestConsoleReadsSkipUncommittedSubtasks: subtasks staged by an attempt
// that has not committed them are no part of the job yet, for the console's
// task pages and graph as for JobTasks.
func TestConsoleReadsSkipUncommittedSubtasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")
	const n = StageChunk + 10
	comp := b.staged(t, "r1", c, n)
	require.Equal(t, n, b.taskHashes(t, "j", comp.base, n), "the staged hashes exist")

	page, next, err := b.q.TasksPage(b.ctx, "j", -1, 50, "")
	require.NoError(t, err)
	require.Equal(t, []int64{0}, seqsOf(page))
	require.Equal(t, int64(-1), next)
	queued, _, err := b.q.TasksPage(b.ctx, "j", -1, 50, TaskQueued)
	require.NoError(t, err)
	require.Empty(t, queued)
	graph, err := b.q.GraphTasks(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, []int64{0}, seqsOf(graph))

	res, err := b.q.Complete(b.ctx, "r1", []Completion{comp})
	require.NoError(t, err)
	require.NoError(t, res[0])

	page, next, err = b.q.TasksPage(b.ctx, "j", -1, 50, "")
	require.NoError(t, err)
	require.Len(t, page, 50)
	require.Equal(t, int64(49), next)
	var all []int64
	for after := int64(-1); ; {
		page, next, err := b.q.TasksPage(b.ctx, "j", after, 50, "")
		require.NoError(t, err)
		all = append(all, seqsOf(page)...)
		after = next
		if next < 0 {
			break
		}
	}
	require.Len(t, all, n+1, "every task once, in pages")
	for i, seq := range all {
		require.Equal(t, int64(i), seq)
	}
	queued, next, err = b.q.TasksPage(b.ctx, "j", -1, 1000, TaskQueued)
	require.NoError(t, err)
	require.Len(t, queued, n)
	require.Equal(t, int64(-1), next)
	graph, err = b.q.GraphTasks(b.ctx, "j")
	require.NoError(t, err)
	require.Len(t, graph, n+1)
	require.Equal(t, int64(0), graph[1].Parent)
	require.Equal(t, "Child", graph[1].Name)
	require.Empty(t, graph[1].Version, "text is left to Tasks")

	_, _, err = b.q.TasksPage(b.ctx, "nope", -1, 10, "")
	require.ErrorIs(t, err, ErrJobNotFound)
	_, err = b.q.GraphTasks(b.ctx, "nope")
	require.ErrorIs(t, err, ErrJobNotFound)
	_, _, err = b.q.TasksPage(b.ctx, "j", -1, 10, "exploded")
	require.ErrorContains(t, err, `task state "exploded" is not one of`)
}

func TestFailedTasksPageReadsTheFailedSet(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hints := b.fanOut(t, "j", "r1", 5)
	claimed, err := b.q.Claim(b.ctx, "r1", hints)
	require.NoError(t, err)
	require.Len(t, claimed, 5)
	for _, c := range []Claimed{claimed[1], claimed[3]} {
		out, err := b.q.Fail(b.ctx, "r1", []Failure{{JobID: "j", Seq: c.Seq, Attempt: c.Attempt, Error: "boom"}})
		require.NoError(t, err)
		require.Len(t, out, 1)
	}
	failed, next, err := b.q.TasksPage(b.ctx, "j", -1, 1, TaskFailed)
	require.NoError(t, err)
	require.Equal(t, []int64{claimed[1].Seq}, seqsOf(failed))
	require.Equal(t, claimed[1].Seq, next)
	failed, next, err = b.q.TasksPage(b.ctx, "j", next, 1, TaskFailed)
	require.NoError(t, err)
	require.Equal(t, []int64{claimed[3].Seq}, seqsOf(failed))
	require.Equal(t, "boom", failed[0].Error)
	require.Equal(t, int64(-1), next)
}
