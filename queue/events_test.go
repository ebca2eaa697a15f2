package queue

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// events returns the kinds of job's events after id ("state:<s>" for state
// events) and the id of the last one.
func (b *bundle) events(t *testing.T, job, after string) ([]string, string) {
	t.Helper()
	evs, err := b.q.JobEvents(b.ctx, job, after, 1000, time.Millisecond)
	require.NoError(t, err)
	var kinds []string
	for _, e := range evs {
		k := e.Kind
		if e.Kind == EventState {
			k += ":" + e.State
		}
		kinds = append(kinds, k)
		require.False(t, e.At.IsZero())
		after = e.ID
	}
	return kinds, after
}

func TestEveryJobChangeAddsOneEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")
	j, last, err := b.q.WatchJob(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, JobRunning, j.State)
	kinds, _ := b.events(t, "j", NoEvent)
	require.Equal(t, []string{"state:running"}, kinds, "the claim that started the job")

	// The root commits five children and progress: one progress event.
	res, err := b.q.Complete(b.ctx, "r1", []Completion{{JobID: "j", Seq: c.Seq, Attempt: c.Attempt,
		Subtasks: b.children(5), Progress: []byte(`[["items",5,0]]`)}})
	require.NoError(t, err)
	require.NoError(t, res[0])
	kinds, last = b.events(t, "j", last)
	require.Equal(t, []string{"progress"}, kinds)

	// Two children with progress committed in one call: one event, not two.
	kids := b.claimAs(t, "r1", b.stream(b.child))
	require.Len(t, kids, 5)
	done := func(k Claimed, pg string) Completion {
		comp := Completion{JobID: "j", Seq: k.Seq, Attempt: k.Attempt}
		if pg != "" {
			comp.Progress = []byte(pg)
		}
		return comp
	}
	_, err = b.q.Complete(b.ctx, "r1", []Completion{done(kids[0], `[["items",0,1]]`), done(kids[1], `[["items",0,1]]`)})
	require.NoError(t, err)
	kinds, last = b.events(t, "j", last)
	require.Equal(t, []string{"progress"}, kinds)

	// Without progress, a commit adds a tasks event unless the job had an
	// event in the last 250 ms.
	_, err = b.q.Complete(b.ctx, "r1", []Completion{done(kids[2], "")})
	require.NoError(t, err)
	kinds, _ = b.events(t, "j", last)
	require.Empty(t, kinds, "the progress event just before stands for it")
	b.ageLastEvent(t, "j")
	_, err = b.q.Complete(b.ctx, "r1", []Completion{done(kids[3], "")})
	require.NoError(t, err)
	kinds, last = b.events(t, "j", last)
	require.Equal(t, []string{"tasks"}, kinds)

	// Cancel and retry change the state.
	_, err = b.q.CancelJob(b.ctx, "j")
	require.NoError(t, err)
	require.NoError(t, b.q.RetryJob(b.ctx, "j"))
	kinds, last = b.events(t, "j", last)
	require.Equal(t, []string{"state:canceled", "state:running"}, kinds)

	// The last child finishes the job: the state event comes from that call.
	b.ageLastEvent(t, "j")
	_, err = b.q.Complete(b.ctx, "r1", []Completion{done(kids[4], "")})
	require.NoError(t, err)
	kinds, _ = b.events(t, "j", last)
	require.Equal(t, []string{"state:completed"}, kinds, "no tasks event beside it")

	j, newest, err := b.q.WatchJob(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, JobCompleted, j.State)
	kinds, _ = b.events(t, "j", newest)
	require.Empty(t, kinds, "WatchJob returns the newest event's id")
}

// ageLastEvent makes the job's last event a second old, as if time passed.
func (b *bundle) ageLastEvent(t *testing.T, job string) {
	t.Helper()
	require.NoError(t, b.rdb.HSet(b.ctx, jobKey(job), "ev", time.Now().Add(-time.Second).UnixMilli()).Err())
}

func TestEventStreamIsCapped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.rootClaimed(t, "j", "r1")
	for range 300 {
		_, err := b.q.CancelJob(b.ctx, "j")
		require.NoError(t, err)
		require.NoError(t, b.q.RetryJob(b.ctx, "j"))
	}
	n, err := b.rdb.XLen(b.ctx, eventsKey("j")).Result()
	require.NoError(t, err)
	require.LessOrEqual(t, n, int64(200), "MAXLEN ~ 64 trims whole stream nodes")
	kinds, _ := b.events(t, "j", NoEvent)
	require.Equal(t, "state:running", kinds[len(kinds)-1], "the newest events are kept")
}

func TestJobEventsOfAJobWithoutEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: "j", Name: "j", Cluster: "c", Task: b.parent, Input: []byte("{}")}))
	j, last, err := b.q.WatchJob(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, JobSubmitted, j.State)
	require.Equal(t, NoEvent, last)
	evs, err := b.q.JobEvents(b.ctx, "j", last, 10, 0)
	require.NoError(t, err, "a block of 0 is one millisecond, not forever")
	require.Empty(t, evs)
	_, _, err = b.q.WatchJob(b.ctx, "nope")
	require.ErrorIs(t, err, ErrJobNotFound)
}
