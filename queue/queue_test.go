package queue

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
)

type bundle struct {
	ctx    context.Context
	rdb    *redis.Client
	q      *Queue
	parent Identifier
	child  Identifier
}

func setup(t *testing.T) *bundle {
	t.Helper()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	q, err := New(ctx, rdb)
	require.NoError(t, err)
	_, err = q.CreateCluster(ctx, "c", "")
	require.NoError(t, err)
	b := &bundle{ctx: ctx, rdb: rdb, q: q}
	b.parent, _ = ParseIdentifier("Parent", "v1.0")
	b.child, _ = ParseIdentifier("Child", "v1.0")
	require.NoError(t, q.EnsureGroups(ctx, []string{b.stream(b.parent), b.stream(b.child)}))
	return b
}

func (b *bundle) stream(id Identifier) string { return StreamKey("c", id) }

// rootClaimed submits a job and claims its root as owner.
func (b *bundle) rootClaimed(t *testing.T, job, owner string) Claimed {
	t.Helper()
	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: job, Name: job, Cluster: "c", Task: b.parent, Input: []byte("{}")}))
	hints, err := b.q.Read(b.ctx, owner, []string{b.stream(b.parent)}, 10, -1)
	require.NoError(t, err)
	claimed, err := b.q.Claim(b.ctx, owner, hints)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	return claimed[0]
}

func (b *bundle) pending(t *testing.T, stream string) int64 {
	t.Helper()
	p, err := b.rdb.XPending(b.ctx, stream, Group).Result()
	require.NoError(t, err)
	return p.Count
}

func TestClaimedHintStaysPendingUntilAcked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")
	require.Equal(t, int64(1), b.pending(t, b.stream(b.parent)), "the hint shows what r1 holds")
	res, err := b.q.Complete(b.ctx, "r1", []Completion{{JobID: "j", Seq: c.Seq, Attempt: c.Attempt}})
	require.NoError(t, err)
	require.NoError(t, res[0])
	require.NoError(t, b.q.Ack(b.ctx, []Hint{c.Hint}))
	require.Equal(t, int64(0), b.pending(t, b.stream(b.parent)))
}

func TestFailedClaimKeepsItsHints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: "j", Name: "j", Cluster: "c", Task: b.parent, Input: []byte("{}")}))
	hints, err := b.q.Read(b.ctx, "r1", []string{b.stream(b.parent)}, 10, -1)
	require.NoError(t, err)
	require.Len(t, hints, 1)

	// A server without the function library refuses rf_claim (as a new
	// Cluster master would); the hint must stay pending, not be acked.
	require.NoError(t, b.rdb.FunctionDelete(b.ctx, "runfleet").Err())
	claimed, err := b.q.Claim(b.ctx, "r1", hints)
	require.Error(t, err)
	require.Empty(t, claimed)
	require.Equal(t, int64(1), b.pending(t, b.stream(b.parent)))

	q, err := New(b.ctx, b.rdb)
	require.NoError(t, err)
	again, err := q.ReadPending(b.ctx, "r1", []string{b.stream(b.parent)}, 10)
	require.NoError(t, err)
	require.Equal(t, hints, again)
	claimed, err = q.Claim(b.ctx, "r1", again)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.Equal(t, 1, claimed[0].Attempt)
}

func TestClaimIsIdempotentForItsOwner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")

	// A retried claim (its first reply lost) hands the task out again, at
	// the same attempt; nobody else gets it.
	again, err := b.q.Claim(b.ctx, "r1", []Hint{c.Hint})
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, c.Attempt, again[0].Attempt)
	other, err := b.q.Claim(b.ctx, "r2", []Hint{c.Hint})
	require.NoError(t, err)
	require.Empty(t, other)
	j, err := b.q.GetJob(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, int64(1), j.TaskCounts[TaskRunning])
}

func TestDuplicateHintsInOneBatchClaimOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: "j", Name: "j", Cluster: "c", Task: b.parent, Input: []byte("{}")}))
	require.NoError(t, b.q.Republish(b.ctx, "j")) // nothing left in the outbox: no-op
	require.NoError(t, b.rdb.XAdd(b.ctx, &redis.XAddArgs{Stream: b.stream(b.parent), Values: []string{"j", "j", "t", "0"}}).Err())
	hints, err := b.q.Read(b.ctx, "r1", []string{b.stream(b.parent)}, 10, -1)
	require.NoError(t, err)
	require.Len(t, hints, 2)
	claimed, err := b.q.Claim(b.ctx, "r1", hints)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.Equal(t, int64(1), b.pending(t, b.stream(b.parent)), "the duplicate hint is acknowledged")
}

func TestPublishKeepsANewerOutboxEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")
	// The task is made ready again (a retry) while an older publish of it
	// is still clearing its outbox entry: the older one must not clear it.
	out, err := b.q.Fail(b.ctx, "r1", []Failure{{JobID: "j", Seq: c.Seq, Attempt: c.Attempt, Error: "x", HandBack: true}})
	require.NoError(t, err)
	require.Equal(t, []string{OutcomeRetry}, out)
	require.NoError(t, b.rdb.HSet(b.ctx, jobPrefix("j")+"outbox", "0", b.stream(b.parent)+"|999").Err())
	require.NoError(t, b.q.Publish(b.ctx, "j", []string{b.stream(b.parent) + "|1", "0"}))
	v, err := b.rdb.HGet(b.ctx, jobPrefix("j")+"outbox", "0").Result()
	require.NoError(t, err)
	require.Equal(t, b.stream(b.parent)+"|999", v)
	require.NoError(t, b.q.Publish(b.ctx, "j", []string{v, "0"}))
	require.Zero(t, b.rdb.HLen(b.ctx, jobPrefix("j")+"outbox").Val())
}

func TestLongDependentListIsReleasedInChunks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 3000
	c := b.rootClaimed(t, "j", "r1")
	// Subtask 0 is a setup step every other subtask depends on.
	specs := make([]SubtaskSpec, n+1)
	for i := range specs {
		specs[i] = SubtaskSpec{Task: b.child, Cluster: "c", Input: []byte("{}")}
		if i > 0 {
			specs[i].Deps = []int{0}
		}
	}
	comp := Completion{JobID: "j", Seq: c.Seq, Attempt: c.Attempt, Subtasks: specs}
	require.NoError(t, b.q.Stage(b.ctx, "r1", &comp))
	res, err := b.q.Complete(b.ctx, "r1", []Completion{comp})
	require.NoError(t, err)
	require.NoError(t, res[0])
	require.Equal(t, int64(1), b.rdb.XLen(b.ctx, b.stream(b.child)).Val(), "only the setup step is ready")

	hints, err := b.q.Read(b.ctx, "r1", []string{b.stream(b.child)}, 10, -1)
	require.NoError(t, err)
	setupTask, err := b.q.Claim(b.ctx, "r1", hints)
	require.NoError(t, err)
	require.Len(t, setupTask, 1)
	res, err = b.q.Complete(b.ctx, "r1", []Completion{{JobID: "j", Seq: setupTask[0].Seq, Attempt: 1}})
	require.NoError(t, err)
	require.NoError(t, res[0])
	require.Equal(t, int64(1+n), b.rdb.XLen(b.ctx, b.stream(b.child)).Val())
	require.Zero(t, b.rdb.HLen(b.ctx, jobPrefix("j")+"outbox").Val(), "nothing left to publish")
}

func TestRepublishFinishesADeferredDependentList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")
	specs := make([]SubtaskSpec, 1001)
	for i := range specs {
		specs[i] = SubtaskSpec{Task: b.child, Cluster: "c", Input: []byte("{}")}
		if i > 0 {
			specs[i].Deps = []int{0}
		}
	}
	comp := Completion{JobID: "j", Seq: c.Seq, Attempt: c.Attempt, Subtasks: specs}
	require.NoError(t, b.q.Stage(b.ctx, "r1", &comp))
	_, err := b.q.Complete(b.ctx, "r1", []Completion{comp})
	require.NoError(t, err)
	hints, err := b.q.Read(b.ctx, "r1", []string{b.stream(b.child)}, 10, -1)
	require.NoError(t, err)
	setupTask, err := b.q.Claim(b.ctx, "r1", hints)
	require.NoError(t, err)

	// Commit the setup step as a runner would, but "crash" before walking
	// the deferred list: call the function directly and drop its reply.
	args := []any{"r1", nowMS(), 1, setupTask[0].Seq, 1, "", "", 0, "0", 0, 0, 0}
	require.NoError(t, b.rdb.FCall(b.ctx, "rf_complete", []string{jobKey("j")}, args...).Err())
	require.Equal(t, int64(1), b.rdb.XLen(b.ctx, b.stream(b.child)).Val())
	require.NoError(t, b.q.Republish(b.ctx, "j"))
	require.Equal(t, int64(1+1000), b.rdb.XLen(b.ctx, b.stream(b.child)).Val())
	require.Zero(t, b.rdb.HLen(b.ctx, jobPrefix("j")+"outbox").Val())
}

func TestTrimKeepsPendingAndUnreadEntries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.stream(b.child)
	for i := range 400 {
		require.NoError(t, b.rdb.XAdd(b.ctx, &redis.XAddArgs{Stream: s, Values: []string{"j", "x", "t", strconv.Itoa(i)}}).Err())
	}
	done, err := b.q.Read(b.ctx, "r1", []string{s}, 250, -1)
	require.NoError(t, err)
	require.NoError(t, b.q.Ack(b.ctx, done))
	held, err := b.q.Read(b.ctx, "r1", []string{s}, 1, -1) // stays pending
	require.NoError(t, err)
	require.NoError(t, b.q.TrimStreams(b.ctx, []string{s}))

	entries, err := b.rdb.XRange(b.ctx, s, "-", "+").Result()
	require.NoError(t, err)
	require.Less(t, len(entries), 400, "acknowledged entries are trimmed")
	ids := map[string]bool{}
	for _, e := range entries {
		ids[e.ID] = true
	}
	require.True(t, ids[held[0].ID], "the pending entry is kept")
	unread := 0
	for _, e := range entries {
		if lessID(held[0].ID, e.ID) {
			unread++
		}
	}
	require.Equal(t, 149, unread, "unread entries are kept")
}

// claimAs makes runner id hold the job's ready hints, as a runner would.
func (b *bundle) claimAs(t *testing.T, id string, streams ...string) []Claimed {
	t.Helper()
	require.NoError(t, b.q.Heartbeat(b.ctx, "c", RunnerInfo{ID: id, Streams: streams}, time.Minute, true))
	hints, err := b.q.Read(b.ctx, id, streams, 100, -1)
	require.NoError(t, err)
	claimed, err := b.q.Claim(b.ctx, id, hints)
	require.NoError(t, err)
	return claimed
}

func TestReclaimQueuesADeadRunnersTasksWithoutCountingRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: "j", Name: "j", Cluster: "c", Task: b.parent, Input: []byte("{}")}))
	held := b.claimAs(t, "dead", b.stream(b.parent))
	require.Len(t, held, 1)

	// Alive: nothing happens.
	rep, err := b.q.ReclaimDead(b.ctx, "c", "live", nil, 10)
	require.NoError(t, err)
	require.Equal(t, ReclaimReport{}, rep)

	require.NoError(t, b.q.Stopped(b.ctx, "c", "dead")) // as if its heartbeat expired
	rep, err = b.q.ReclaimDead(b.ctx, "c", "live", nil, 10)
	require.NoError(t, err)
	require.Equal(t, ReclaimReport{Runners: 1, Requeued: 1}, rep)
	require.Equal(t, int64(0), b.pending(t, b.stream(b.parent)))

	again := b.claimAs(t, "live", b.stream(b.parent))
	require.Len(t, again, 1)
	require.Equal(t, 2, again[0].Attempt)
	tasks, err := b.q.JobTasks(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, 0, tasks[0].Failures, "a lost runner is not a failed attempt")
	require.Contains(t, tasks[0].Error, "runner dead was lost")

	// The dead runner's registry entry and consumer are gone.
	require.Zero(t, b.rdb.Exists(b.ctx, runnerKey("c", "dead")).Val())
	consumers, err := b.rdb.XInfoConsumers(b.ctx, b.stream(b.parent), Group).Result()
	require.NoError(t, err)
	for _, c := range consumers {
		require.NotEqual(t, "dead", c.Name)
	}
}

func TestReclaimRepublishesHintsReadButNeverClaimed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: "j", Name: "j", Cluster: "c", Task: b.parent, Input: []byte("{}")}))
	require.NoError(t, b.q.Heartbeat(b.ctx, "c", RunnerInfo{ID: "dead", Streams: []string{b.stream(b.parent)}}, time.Minute, true))
	_, err := b.q.Read(b.ctx, "dead", []string{b.stream(b.parent)}, 10, -1) // then it dies
	require.NoError(t, err)
	require.NoError(t, b.q.Stopped(b.ctx, "c", "dead"))

	rep, err := b.q.ReclaimDead(b.ctx, "c", "live", nil, 10)
	require.NoError(t, err)
	require.Equal(t, ReclaimReport{Runners: 1, Republish: 1}, rep)
	claimed := b.claimAs(t, "live", b.stream(b.parent))
	require.Len(t, claimed, 1)
	require.Equal(t, 1, claimed[0].Attempt)
}

func TestEleventhLossFailsTheTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: "j", Name: "j", Cluster: "c", Task: b.parent, Input: []byte("{}"), MaxRetries: 5}))
	for i := 1; i <= 11; i++ {
		id := "crashy-" + strconv.Itoa(i)
		held := b.claimAs(t, id, b.stream(b.parent))
		require.Len(t, held, 1, "loss %d", i)
		require.NoError(t, b.q.Stopped(b.ctx, "c", id))
		rep, err := b.q.ReclaimDead(b.ctx, "c", "", nil, 10)
		require.NoError(t, err)
		if i <= 10 {
			require.Equal(t, 1, rep.Requeued, "loss %d", i)
		} else {
			require.Equal(t, 1, rep.Failed, "loss %d", i)
		}
	}
	j, err := b.q.GetJob(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, JobFailed, j.State)
	tasks, err := b.q.JobTasks(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, TaskFailed, tasks[0].State)
	require.Contains(t, tasks[0].Error, "lost its runner 11 times")
	require.Equal(t, 0, tasks[0].Failures)
}

func TestSweepRepublishesAnAbandonedOutbox(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A submitter that dies right after rf_submit, before its XADD.
	require.NoError(t, b.rdb.ZAdd(b.ctx, keyJobs, redis.Z{Score: 1, Member: "j"}).Err())
	require.NoError(t, b.rdb.FCall(b.ctx, "rf_submit", []string{jobKey("j")}, "j", "j", "c", nowMS(),
		b.parent.Name, b.parent.Version(), "{}", 0).Err())
	require.Zero(t, b.rdb.XLen(b.ctx, b.stream(b.parent)).Val())
	_, err := b.q.Sweep(b.ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), b.rdb.XLen(b.ctx, b.stream(b.parent)).Val())
	require.Len(t, b.claimAs(t, "r", b.stream(b.parent)), 1)
}

func TestSweepDropsOldIndexEntriesWithoutAJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	old := float64(time.Now().Add(-2 * orphanIndexAge).UnixMilli())
	// A submitter that died after indexing, long ago and just now; and a
	// real job as old.
	require.NoError(t, b.rdb.ZAdd(b.ctx, keyJobs, redis.Z{Score: old, Member: "gone"},
		redis.Z{Score: float64(nowMS()), Member: "in-flight"}, redis.Z{Score: old, Member: "real"}).Err())
	require.NoError(t, b.rdb.FCall(b.ctx, "rf_submit", []string{jobKey("real")}, "real", "real", "c", nowMS(),
		b.parent.Name, b.parent.Version(), "{}", 0).Err())
	_, err := b.q.Sweep(b.ctx)
	require.NoError(t, err)
	left, err := b.rdb.ZRange(b.ctx, keyJobs, 0, -1).Result()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"in-flight", "real"}, left)
}
