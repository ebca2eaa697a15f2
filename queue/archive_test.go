package queue

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// completedJob runs job to completion: its root commits n children (staged
// when n > InlineSubtasks), which all commit too.
func (b *bundle) completedJob(t *testing.T, job string, n int) {
	t.Helper()
	c := b.rootClaimed(t, job, "r-"+job)
	comp := Completion{JobID: job, Seq: c.Seq, Attempt: c.Attempt, Subtasks: b.children(n),
		Progress: []byte(`[["tiles",1,1]]`)}
	require.NoError(t, b.q.Stage(b.ctx, "r-"+job, &comp))
	res, err := b.q.Complete(b.ctx, "r-"+job, []Completion{comp})
	require.NoError(t, err)
	require.NoError(t, res[0])
	for {
		held := b.claimAs(t, "r-"+job, b.stream(b.child))
		if len(held) == 0 {
			break
		}
		cs := make([]Completion, len(held))
		for i, h := range held {
			cs[i] = Completion{JobID: h.JobID, Seq: h.Seq, Attempt: h.Attempt}
		}
		_, err := b.q.Complete(b.ctx, "r-"+job, cs)
		require.NoError(t, err)
	}
	j, err := b.q.GetJob(b.ctx, job)
	require.NoError(t, err)
	require.Equal(t, JobCompleted, j.State)
}

// jobKeys lists every key of job's hash tag.
func (b *bundle) jobKeys(t *testing.T, job string) []string {
	t.Helper()
	keys, err := b.rdb.Keys(b.ctx, "rf:{j:"+job+"}:*").Result()
	require.NoError(t, err)
	return keys
}

// record writes the archive record of job as an archiver would, with the
// job's current version.
func (b *bundle) record(t *testing.T, job string) {
	t.Helper()
	v, err := b.q.JobVersion(b.ctx, job)
	require.NoError(t, err)
	require.NoError(t, b.q.RecordArchive(b.ctx, job, ArchiveRecord{URL: "file:///archive", Key: "jobs/" + job + ".json.zst",
		ArchivedAt: time.Now(), Updated: v}))
}

func TestPurgeRemovesEveryKeyOfAnArchivedJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 2*dropChunk + 7 // three rf_purge calls
	b.completedJob(t, "j", n)
	b.completedJob(t, "other", 1)
	buckets := 0
	for _, k := range b.jobKeys(t, "j") {
		if strings.Contains(k, ":tb:") {
			buckets++
		}
	}
	require.Equal(t, n/taskBucketSize+1, buckets, "its computed leaves are in buckets, which go too")

	b.record(t, "j")
	purged, err := b.q.PurgeArchivedJob(b.ctx, "j")
	require.NoError(t, err)
	require.True(t, purged)
	require.Empty(t, b.jobKeys(t, "j"))
	require.ErrorIs(t, b.rdb.ZScore(b.ctx, keyJobs, "j").Err(), redis.Nil, "the index entry goes too")
	_, err = b.q.GetJob(b.ctx, "j")
	require.ErrorIs(t, err, ErrJobNotFound)
	rec, ok, err := b.q.ArchiveRecordOf(b.ctx, "j")
	require.NoError(t, err)
	require.True(t, ok, "readers still find where the job went")
	require.Equal(t, "jobs/j.json.zst", rec.Key)

	_, err = b.q.GetJob(b.ctx, "other")
	require.NoError(t, err, "other jobs are untouched")

	again, err := b.q.PurgeArchivedJob(b.ctx, "j")
	require.NoError(t, err)
	require.True(t, again, "purging again is harmless")
}

func TestPurgeCutShortIsResumedAndFreezesTheJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")
	comp := Completion{JobID: "j", Seq: c.Seq, Attempt: c.Attempt, Subtasks: b.children(StageChunk + 1)}
	require.NoError(t, b.q.Stage(b.ctx, "r1", &comp))
	_, err := b.q.Complete(b.ctx, "r1", []Completion{comp})
	require.NoError(t, err)
	_, err = b.q.CancelJob(b.ctx, "j")
	require.NoError(t, err)
	b.record(t, "j")

	// An archiver that dies after its first purge call.
	rec, _, err := b.q.ArchiveRecordOf(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, "more", b.rdb.FCall(b.ctx, "rf_purge", []string{jobKey("j")}, rec.Updated, 50).Val())

	// Half deleted, the job can no longer be changed.
	require.ErrorIs(t, b.q.RetryJob(b.ctx, "j"), ErrJobArchived)
	_, err = b.q.CancelJob(b.ctx, "j")
	require.ErrorIs(t, err, ErrJobArchived)

	purged, err := b.q.PurgeArchivedJob(b.ctx, "j")
	require.NoError(t, err)
	require.True(t, purged)
	require.Empty(t, b.jobKeys(t, "j"))
}

func TestPurgeLeavesAJobThatChangedSinceItsExport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.rootClaimed(t, "j", "r1")
	_, err := b.q.Fail(b.ctx, "r1", []Failure{{JobID: "j", Seq: c.Seq, Attempt: c.Attempt, Error: "boom"}})
	require.NoError(t, err)
	// It failed long ago, was exported, then someone retried it.
	require.NoError(t, b.rdb.HSet(b.ctx, jobKey("j"), "updated", 1000).Err())
	b.record(t, "j")
	require.NoError(t, b.q.RetryJob(b.ctx, "j"))

	purged, err := b.q.PurgeArchivedJob(b.ctx, "j")
	require.NoError(t, err)
	require.False(t, purged)
	j, err := b.q.GetJob(b.ctx, "j")
	require.NoError(t, err)
	require.Equal(t, JobRunning, j.State)
	_, ok, err := b.q.ArchiveRecordOf(b.ctx, "j")
	require.NoError(t, err)
	require.False(t, ok, "the stale record is dropped")
	tasks, err := b.q.JobTasks(b.ctx, "j")
	require.NoError(t, err)
	require.Len(t, tasks, 1)
}

func TestArchivableJobsAreFinishedBeforeTheCutoffAndIdle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.completedJob(t, "done", 0)
	b.completedJob(t, "recent", 0)
	b.completedJob(t, "notifying", 0)
	b.rootClaimed(t, "running", "r1")
	// "resumed" was archived by a sweep that died before its last step.
	b.completedJob(t, "resumed", 0)
	b.record(t, "resumed")
	require.NoError(t, b.rdb.Del(b.ctx, jobKey("resumed")).Err())
	// "busy" is canceled with its root still running: a result may yet
	// come in, so it waits.
	b.rootClaimed(t, "busy", "r2")
	_, err := b.q.CancelJob(b.ctx, "busy")
	require.NoError(t, err)

	cutoff := time.Now().Add(time.Hour)
	require.NoError(t, b.rdb.HSet(b.ctx, jobKey("recent"), "finished", cutoff.Add(time.Minute).UnixMilli()).Err())
	require.NoError(t, b.rdb.HSet(b.ctx, jobKey("notifying"), "npend", "completed|1").Err())

	ids, err := b.q.ArchivableJobs(b.ctx, cutoff, 100)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"done", "resumed"}, ids)

	ids, err = b.q.ArchivableJobs(b.ctx, cutoff, 1)
	require.NoError(t, err)
	require.Len(t, ids, 1)

	ids, err = b.q.ArchivableJobs(b.ctx, time.Now().Add(-time.Hour), 100)
	require.NoError(t, err)
	require.Empty(t, ids, "no job was created before the cutoff")
}
