package queue

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A computed task without children or dependents moves into its bucket;
// every reader sees it as it was in its hash: fields, times, attempts
// (including the error and first start of an earlier failed attempt).
func TestPackedTaskReadsLikeItsHash(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start := time.Now().Truncate(time.Millisecond)
	root := b.rootClaimed(t, "j", "r1")
	specs := b.children(3)
	specs[0].Input = []byte(`{"tile":"a"}`)
	specs[1].MaxRetries, specs[1].Optional = 2, true
	specs[2].Input = []byte(`{"tile":"c"}`)
	_, err := b.q.Complete(b.ctx, "r1", []Completion{{JobID: "j", Seq: root.Seq, Attempt: root.Attempt, Subtasks: specs}})
	require.NoError(t, err)

	kids := b.claimAs(t, "r2", b.stream(b.child))
	require.Len(t, kids, 3)
	// Task 2 fails once, then computes on its second attempt.
	_, err = b.q.Fail(b.ctx, "r2", []Failure{{JobID: "j", Seq: 2, Attempt: 1, Error: "flaky", Display: "try 1"}})
	require.NoError(t, err)
	again := b.claimAs(t, "r3", b.stream(b.child))
	require.Len(t, again, 1)
	res, err := b.q.Complete(b.ctx, "r2", []Completion{
		{JobID: "j", Seq: 1, Attempt: 1, Display: "tile a", StartDelay: 7 * time.Millisecond},
		{JobID: "j", Seq: 3, Attempt: 1, Display: "has \x1f inside"}, // keeps its hash
	})
	require.NoError(t, err)
	require.Equal(t, []error{nil, nil}, res)
	res, err = b.q.Complete(b.ctx, "r3", []Completion{{JobID: "j", Seq: 2, Attempt: 2}})
	require.NoError(t, err)
	require.Equal(t, []error{nil}, res)
	end := time.Now()

	require.Equal(t, 1, b.taskHashes(t, "j", 1, 3), "tasks 1 and 2 left their hashes; 3 kept its")
	n, err := b.rdb.HLen(b.ctx, bucketKey("j", 1)).Result()
	require.NoError(t, err)
	require.Equal(t, int64(3), n, "two records and the count of their identifier")

	one, err := b.q.GetTask(b.ctx, "j", 1)
	require.NoError(t, err)
	require.Equal(t, TaskComputed, one.State)
	require.Equal(t, "Child", one.Name)
	require.Equal(t, "v1.0", one.Version)
	require.Equal(t, "c", one.Cluster)
	require.Equal(t, `{"tile":"a"}`, one.Input)
	require.Equal(t, "tile a", one.Display)
	require.Equal(t, int64(0), one.Parent)
	require.Equal(t, 1, one.Attempts)
	require.Equal(t, "r2", one.Runner)
	require.True(t, one.Complete)
	require.Equal(t, 7*time.Millisecond, one.startDelay)
	for _, tm := range []time.Time{one.QueuedAt, one.StartedAt, one.EndedAt, one.FirstStartedAt} {
		require.False(t, tm.Before(start), "%v before %v", tm, start)
		require.False(t, tm.After(end))
	}
	require.False(t, one.StartedAt.Before(one.QueuedAt))
	require.False(t, one.EndedAt.Before(one.StartedAt))
	require.Equal(t, one.StartedAt, one.FirstStartedAt)

	two, err := b.q.GetTask(b.ctx, "j", 2)
	require.NoError(t, err)
	require.Equal(t, TaskComputed, two.State)
	require.Equal(t, "try 1", two.Display, "an earlier attempt's display stays")
	require.Equal(t, "flaky", two.Error, "the earlier attempt's error stays")
	require.Equal(t, 2, two.Attempts)
	require.Equal(t, 2, two.MaxRetries)
	require.Equal(t, 1, two.Failures)
	require.True(t, two.Optional)
	require.Equal(t, "r3", two.Runner)
	require.True(t, two.FirstStartedAt.Before(two.StartedAt) || two.FirstStartedAt.Equal(two.StartedAt))

	three, err := b.q.GetTask(b.ctx, "j", 3)
	require.NoError(t, err)
	require.Equal(t, "has \x1f inside", three.Display)

	// Listings agree with GetTask.
	all, err := b.q.JobTasks(b.ctx, "j")
	require.NoError(t, err)
	require.Len(t, all, 4)
	require.Equal(t, one, all[1])
	require.Equal(t, two, all[2])
	some, err := b.q.Tasks(b.ctx, "j", []int64{2, 1, 9})
	require.NoError(t, err)
	require.Equal(t, []Task{two, one}, some)
	graph, err := b.q.GraphTasks(b.ctx, "j")
	require.NoError(t, err)
	require.Len(t, graph, 4)
	for _, g := range graph[1:] {
		require.Equal(t, TaskComputed, g.State)
		require.Equal(t, "Child", g.Name)
	}
	atts, err := b.q.TaskAttempts(b.ctx, "j", 2)
	require.NoError(t, err)
	require.Len(t, atts, 2)
	require.Equal(t, "failed", atts[0].Outcome)
	require.Equal(t, "computed", atts[1].Outcome)
	require.Equal(t, "r3", atts[1].Runner)

	// A stale completion of a packed task is refused, not written back.
	res, err = b.q.Complete(b.ctx, "r2", []Completion{{JobID: "j", Seq: 1, Attempt: 1}})
	require.NoError(t, err)
	require.ErrorIs(t, res[0], ErrLost)
	require.Equal(t, 1, b.taskHashes(t, "j", 1, 3))
}

func TestUnpackRefusesMalformedRecords(t *testing.T) {
	idents := map[string]string{"#0": "A\x1fv1.0\x1fc"}
	good := "0\x1f\x1f{}\x1f1\x1f\x1f\x1f\x1f\x1fr\x1f5\x1f2\x1f3\x1f0\x1f\x1f\x1f"
	f, ok := unpack(good, 1000, idents)
	require.True(t, ok)
	require.Equal(t, map[string]string{"st": "computed", "nm": "A", "v": "v1.0", "cl": "c", "in": "{}", "att": "1",
		"own": "r", "p": "0", "tq": "1005", "ts": "1007", "te": "1010"}, f)
	for _, bad := range []string{"", "0", good + "\x1f", "1" + good[1:], "0\x1f\x1f{}\x1f1\x1f\x1f\x1f\x1f\x1fr\x1fx\x1f2\x1f3\x1f0\x1f\x1f\x1f"} {
		_, ok := unpack(bad, 1000, idents)
		require.False(t, ok, "%q", bad)
	}
}

// A task whose name holds the record separator keeps its hash, and reads
// whole.
func TestPackSkipsNamesWithTheSeparator(t *testing.T) {
	t.Parallel()
	b := setup(t)
	odd, err := ParseIdentifier("Odd\x1fName", "v1.0")
	require.NoError(t, err)
	require.NoError(t, b.q.EnsureGroups(b.ctx, []string{b.stream(odd)}))
	root := b.rootClaimed(t, "j", "r1")
	_, err = b.q.Complete(b.ctx, "r1", []Completion{{JobID: "j", Seq: root.Seq, Attempt: root.Attempt,
		Subtasks: []SubtaskSpec{{Task: odd, Cluster: "c", Input: []byte("{}")}}}})
	require.NoError(t, err)
	kids := b.claimAs(t, "r2", b.stream(odd))
	require.Len(t, kids, 1)
	res, err := b.q.Complete(b.ctx, "r2", []Completion{{JobID: "j", Seq: kids[0].Seq, Attempt: 1}})
	require.NoError(t, err)
	require.Equal(t, []error{nil}, res)
	require.Equal(t, 1, b.taskHashes(t, "j", 1, 1), "kept its hash")
	task, err := b.q.GetTask(b.ctx, "j", 1)
	require.NoError(t, err)
	require.Equal(t, "Odd\x1fName", task.Name)
	require.Equal(t, TaskComputed, task.State)
}
