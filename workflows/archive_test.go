package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// archiveStore wraps a real store: it counts Puts and fails them while
// failPuts is set.
type archiveStore struct {
	artifacts.Store
	puts     atomic.Int32
	failPuts atomic.Bool
}

var errStoreDown = errors.New("injected: store unavailable")

func (s *archiveStore) Put(ctx context.Context, key string, r io.Reader) error {
	if s.failPuts.Load() {
		return errStoreDown
	}
	s.puts.Add(1)
	return s.Store.Put(ctx, key, r)
}

// fileArchive is a file store in a fresh directory and its URL.
func fileArchive(t *testing.T) (*archiveStore, string) {
	t.Helper()
	dir := t.TempDir()
	fs, err := artifacts.NewFileStore(dir)
	require.NoError(t, err)
	return &archiveStore{Store: fs}, "file://" + dir
}

// finishedFanOut runs a FanOut of n Noops to completion and returns the
// job with its tasks.
func (b *testBundle) finishedFanOut(t *testing.T, n int) (workflows.Job, []workflows.TaskInfo) {
	t.Helper()
	r := b.runner(t, b.cluster)
	j := b.submit(t, &benchtask.FanOut{N: n, Child: "Noop", Merge: true})
	require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(16)))
	j = b.job(t, j.ID)
	require.Equal(t, workflows.JobCompleted, j.State)
	tasks, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	return j, tasks
}

// redisKeys lists every key of a job's hash tag.
func (b *testBundle) redisKeys(t *testing.T, jobID string) []string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.Addr})
	defer rdb.Close()
	keys, err := rdb.Keys(b.ctx, "rf:{j:"+jobID+"}:*").Result()
	require.NoError(t, err)
	return keys
}

// requireArchivedReadOnly checks a job left Redis and reads back as it was.
func (b *testBundle) requireArchivedReadOnly(t *testing.T, want workflows.Job, wantTasks []workflows.TaskInfo) {
	t.Helper()
	require.Empty(t, b.redisKeys(t, want.ID), "no key of the job is left in Redis")
	got, err := b.client.Jobs().Get(b.ctx, want.ID)
	require.NoError(t, err)
	require.True(t, got.Archived)
	want.Archived = true
	require.Equal(t, want, got)
	tasks, err := b.client.Jobs().Tasks(b.ctx, want.ID)
	require.NoError(t, err)
	// Compared as users see them (JSON): the archive keeps every field.
	wantJSON, err := json.Marshal(wantTasks)
	require.NoError(t, err)
	gotJSON, err := json.Marshal(tasks)
	require.NoError(t, err)
	require.JSONEq(t, string(wantJSON), string(gotJSON))

	require.ErrorIs(t, b.client.Jobs().Retry(b.ctx, want.ID), workflows.ErrJobArchived)
	err = b.client.Jobs().Cancel(b.ctx, want.ID)
	require.ErrorIs(t, err, workflows.ErrJobArchived)
	require.ErrorContains(t, err, "archived")
	listed, err := b.client.Jobs().List(b.ctx, workflows.ListOptions{})
	require.NoError(t, err)
	for _, j := range listed {
		require.NotEqual(t, want.ID, j.ID, "archived jobs are not listed")
	}
}

func TestArchivedJobIsReadBackReadOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	store, url := fileArchive(t)
	job, tasks := b.finishedFanOut(t, 250)  // a staged set: 252 tasks
	other := b.submit(t, &benchtask.Noop{}) // queued: never archived

	n, err := b.client.ArchiveJobs(b.ctx, store, url, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	b.requireArchivedReadOnly(t, job, tasks)
	require.Equal(t, workflows.JobSubmitted, b.job(t, other.ID).State)

	// The object is zstd-compressed JSON a person can read without runfleet.
	r, err := store.Get(b.ctx, "jobs/"+job.ID+".json.zst")
	require.NoError(t, err)
	defer r.Close()
	dec, err := zstd.NewReader(r)
	require.NoError(t, err)
	defer dec.Close()
	var doc map[string]json.RawMessage
	require.NoError(t, json.NewDecoder(dec).Decode(&doc))
	require.Contains(t, doc, "job")
	require.Contains(t, doc, "tasks")
	require.Contains(t, doc, "archived_at")

	again, err := b.client.ArchiveJobs(b.ctx, store, url, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Zero(t, again)
	require.Equal(t, int32(1), store.puts.Load())
}

func TestArchiveLeavesRecentAndUnfinishedJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	store, url := fileArchive(t)
	done, _ := b.finishedFanOut(t, 3)
	queued := b.submit(t, &benchtask.Noop{})

	n, err := b.client.ArchiveJobs(b.ctx, store, url, done.FinishedAt.Add(-time.Millisecond))
	require.NoError(t, err)
	require.Zero(t, n)
	require.Zero(t, store.puts.Load())
	for _, id := range []string{done.ID, queued.ID} {
		require.False(t, b.job(t, id).Archived)
	}
}

func TestArchiveThatFailsHalfwayIsFinishedByTheNextRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	store, url := fileArchive(t)
	job, tasks := b.finishedFanOut(t, 5)
	cutoff := time.Now().Add(time.Hour)

	// The store is down: nothing leaves Redis.
	store.failPuts.Store(true)
	_, err := b.client.ArchiveJobs(b.ctx, store, url, cutoff)
	require.ErrorIs(t, err, errStoreDown)
	require.False(t, b.job(t, job.ID).Archived)
	store.failPuts.Store(false)

	// The export lands and is recorded, then the purge fails: the job is
	// still whole in Redis, and the next run only finishes the purge.
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(&failFunction{name: "rf_purge", times: 1})
	faulty, err := workflows.NewClient(b.ctx, workflows.WithRedisClient(rdb), victimLog(t))
	require.NoError(t, err)
	_, err = faulty.ArchiveJobs(b.ctx, store, url, cutoff)
	require.ErrorIs(t, err, errInjectedCall)
	require.Equal(t, job, b.job(t, job.ID), "read from Redis while it is there")
	require.Equal(t, int32(1), store.puts.Load())

	n, err := b.client.ArchiveJobs(b.ctx, store, url, cutoff)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, int32(1), store.puts.Load(), "the recorded export is not written again")
	b.requireArchivedReadOnly(t, job, tasks)
}

// TestArchiveToMinIO archives to a real S3 API and reads the job back
// through the store URL recorded in Redis. It sets the AWS credential
// variables, so it is not parallel.
func TestArchiveToMinIO(t *testing.T) {
	m := testenv.NewMinIO(t)
	bucket := m.NewBucket(t)
	t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	t.Setenv("AWS_REGION", "us-east-1")
	url := "s3://" + bucket + "/fleet-a?endpoint=" + m.Endpoint()
	st, err := artifacts.OpenStore(url)
	require.NoError(t, err)

	b := setup(t)
	job, tasks := b.finishedFanOut(t, 3)
	n, err := b.client.ArchiveJobs(b.ctx, st, url, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	keys, err := st.List(b.ctx, "jobs/")
	require.NoError(t, err)
	require.Equal(t, []string{"jobs/" + job.ID + ".json.zst"}, keys)
	b.requireArchivedReadOnly(t, job, tasks)
}

func TestTwoSweepsArchivingAtOnceKeepEveryTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	store, url := fileArchive(t)
	job, tasks := b.finishedFanOut(t, 1200) // purged in several chunks
	var wg sync.WaitGroup
	var archived atomic.Int32
	for range 3 {
		wg.Go(func() {
			n, err := b.client.ArchiveJobs(b.ctx, store, url, time.Now().Add(time.Hour))
			require.NoError(t, err)
			archived.Add(int32(n))
		})
	}
	wg.Wait()
	if archived.Load() == 0 { // every sweep found the job leased by another
		n, err := b.client.ArchiveJobs(b.ctx, store, url, time.Now().Add(time.Hour))
		require.NoError(t, err)
		archived.Add(int32(n))
	}
	require.Equal(t, int32(1), archived.Load())
	b.requireArchivedReadOnly(t, job, tasks)
}

func TestIdempotentResubmitOfAnArchivedJobReturnsIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	store, url := fileArchive(t)
	req := workflows.SubmitRequest{Name: "once", Cluster: b.cluster, Task: workflows.NewTaskIdentifier("Noop", "v1.0"),
		IdempotencyKey: "event-1"}
	r := b.runner(t, b.cluster)
	first, created, err := b.client.Jobs().SubmitOnce(b.ctx, req)
	require.NoError(t, err)
	require.True(t, created)
	require.NoError(t, r.RunAll(b.ctx))
	n, err := b.client.ArchiveJobs(b.ctx, store, url, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)

	again, created, err := b.client.Jobs().SubmitOnce(b.ctx, req)
	require.NoError(t, err)
	require.False(t, created, "an event delivered again after its job was archived must not run it again")
	require.Equal(t, first.ID, again.ID)
	require.True(t, again.Archived)
	require.Empty(t, b.redisKeys(t, first.ID))
}
