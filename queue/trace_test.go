package queue

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A job keeps the traceparent it was submitted with; one submitted without
// stores no field.
func TestJobKeepsItsTraceParent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: "traced", Name: "traced", Cluster: "c", Task: b.parent,
		Input: []byte("{}"), TraceParent: tp}))
	j, err := b.q.GetJob(b.ctx, "traced")
	require.NoError(t, err)
	require.Equal(t, tp, j.TraceParent)
	jobs, err := b.q.ListJobs(b.ctx, ListJobsParams{})
	require.NoError(t, err)
	require.Equal(t, tp, jobs[0].TraceParent)

	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: "plain", Name: "plain", Cluster: "c", Task: b.parent, Input: []byte("{}")}))
	j, err = b.q.GetJob(b.ctx, "plain")
	require.NoError(t, err)
	require.Empty(t, j.TraceParent)
	exists, err := b.rdb.HExists(b.ctx, jobKey("plain"), "tp").Result()
	require.NoError(t, err)
	require.False(t, exists)
}

// SpanLineage reads the job's traceparent and the attempt that committed a
// parent task, in one trip; what is gone reads as empty.
func TestSpanLineageReadsTheParentsCommittingAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: "j", Name: "j", Cluster: "c", Task: b.parent,
		Input: []byte("{}"), TraceParent: tp}))
	hints, err := b.q.Read(b.ctx, "r1", []string{b.stream(b.parent)}, 10, -1)
	require.NoError(t, err)
	root, err := b.q.Claim(b.ctx, "r1", hints)
	require.NoError(t, err)
	require.Len(t, root, 1)
	require.Equal(t, int64(-1), root[0].Parent)
	// The first attempt is handed back; the second commits a subtask.
	_, err = b.q.Fail(b.ctx, "r1", []Failure{{JobID: "j", Seq: 0, Attempt: 1, Error: "stopping", HandBack: true}})
	require.NoError(t, err)
	require.NoError(t, b.q.Ack(b.ctx, []Hint{root[0].Hint}))
	hints, err = b.q.Read(b.ctx, "r2", []string{b.stream(b.parent)}, 10, -1)
	require.NoError(t, err)
	again, err := b.q.Claim(b.ctx, "r2", hints)
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, 2, again[0].Attempt)
	res, err := b.q.Complete(b.ctx, "r2", []Completion{{JobID: "j", Seq: 0, Attempt: 2,
		Subtasks: []SubtaskSpec{{Task: b.child, Cluster: "c", Input: []byte("{}")}}}})
	require.NoError(t, err)
	require.NoError(t, res[0])
	hints, err = b.q.Read(b.ctx, "r3", []string{b.stream(b.child)}, 10, -1)
	require.NoError(t, err)
	child, err := b.q.Claim(b.ctx, "r3", hints)
	require.NoError(t, err)
	require.Len(t, child, 1)
	require.Equal(t, int64(0), child[0].Parent)

	l, err := b.q.SpanLineage(b.ctx, "j", child[0].Parent, true)
	require.NoError(t, err)
	require.Equal(t, SpanLineage{TraceParent: tp, ParentAttempt: 2}, l)
	l, err = b.q.SpanLineage(b.ctx, "j", child[0].Parent, false)
	require.NoError(t, err)
	require.Equal(t, SpanLineage{ParentAttempt: 2}, l, "the traceparent only when asked")
	l, err = b.q.SpanLineage(b.ctx, "j", -1, true)
	require.NoError(t, err)
	require.Equal(t, SpanLineage{TraceParent: tp}, l)
	l, err = b.q.SpanLineage(b.ctx, "gone", 5, true)
	require.NoError(t, err)
	require.Equal(t, SpanLineage{}, l)
}
