package workflows_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// cacheClient is a second client on b's Redis with its job cache at url.
func cacheClient(t *testing.T, b *testBundle, url string) *workflows.Client {
	t.Helper()
	c, err := workflows.NewClient(b.ctx, workflows.WithRedisURL(b.redis.URL()), workflows.WithJobCache(url),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// minioCacheURL is an s3:// cache URL on a fresh bucket of m, reached at
// endpoint (m itself or a fault proxy in front of it). The root credentials
// go in the environment, as the AWS chain reads them: callers are not
// parallel.
func minioCacheURL(t *testing.T, m *testenv.MinIO, endpoint string) string {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	return "s3://" + m.NewBucket(t) + "/team?endpoint=" + endpoint
}

// idleJob submits a job nobody runs: its cache is writable while it waits.
func idleJob(t *testing.T, b *testBundle) workflows.Job {
	t.Helper()
	b.runner(t, b.cluster) // registers the task in the cluster
	return b.submit(t, &Progressing{})
}

// cacheBytes is n bytes that do not compress.
func cacheBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

func cacheKeys(t *testing.T, c *workflows.Cache) []string {
	t.Helper()
	var keys []string
	for k, err := range c.Keys(t.Context()) {
		require.NoError(t, err)
		keys = append(keys, k)
	}
	return keys
}

// testCache is the conformance suite every job cache backend passes. c is
// an empty cache of a job in Redis; large says values above 1 MiB fit.
func testCache(t *testing.T, c *workflows.Cache, large bool) {
	ctx := t.Context()
	t.Run("missing", func(t *testing.T) {
		_, err := c.Get(ctx, "none/here")
		require.ErrorIs(t, err, workflows.ErrCacheMiss)
		require.ErrorContains(t, err, `none/here"`)
		_, err = c.Reader(ctx, "none/here")
		require.ErrorIs(t, err, workflows.ErrCacheMiss)
		ok, err := c.Exists(ctx, "none/here")
		require.NoError(t, err)
		require.False(t, ok)
		require.Empty(t, cacheKeys(t, c))
		require.NoError(t, c.Delete(ctx, "none/here"), "deleting a missing key is no error")
	})
	t.Run("put get exists overwrite delete", func(t *testing.T) {
		require.NoError(t, c.Put(ctx, "stats/tile-1", []byte("one")))
		got, err := c.Get(ctx, "stats/tile-1")
		require.NoError(t, err)
		require.Equal(t, "one", string(got))
		ok, err := c.Exists(ctx, "stats/tile-1")
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = c.Exists(ctx, "stats")
		require.NoError(t, err)
		require.False(t, ok, "a prefix is no key")
		require.NoError(t, c.Put(ctx, "stats/tile-1", []byte("two")))
		got, err = c.Get(ctx, "stats/tile-1")
		require.NoError(t, err)
		require.Equal(t, "two", string(got))
		require.NoError(t, c.Put(ctx, "empty", nil))
		got, err = c.Get(ctx, "empty")
		require.NoError(t, err)
		require.Empty(t, got)
		require.NoError(t, c.Delete(ctx, "stats/tile-1"))
		_, err = c.Get(ctx, "stats/tile-1")
		require.ErrorIs(t, err, workflows.ErrCacheMiss)
		require.NoError(t, c.Delete(ctx, "empty"))
		require.Empty(t, cacheKeys(t, c))
	})
	t.Run("keys and groups", func(t *testing.T) {
		for _, k := range []string{"b", "a/2", "a/10", "ab", "é/x", "tiles/7"} {
			require.NoError(t, c.Put(ctx, k, []byte("v:"+k)))
		}
		g := c.Group("tiles")
		require.NoError(t, g.Put(ctx, "8", []byte("eight")))
		require.NoError(t, g.Group("deep").Put(ctx, "x", []byte("deep")))
		require.Equal(t, []string{"a/10", "a/2", "ab", "b", "tiles/7", "tiles/8", "tiles/deep/x", "é/x"}, cacheKeys(t, c))
		require.Equal(t, []string{"7", "8", "deep/x"}, cacheKeys(t, g))
		require.Equal(t, []string{"x"}, cacheKeys(t, c.Group("tiles/deep")))
		require.Empty(t, cacheKeys(t, c.Group("til")), "a group is a whole segment, not a string prefix")
		got, err := c.Get(ctx, "tiles/8")
		require.NoError(t, err)
		require.Equal(t, "eight", string(got), "a group's key is its path in the parent")
		got, err = g.Get(ctx, "7")
		require.NoError(t, err)
		require.Equal(t, "v:tiles/7", string(got))
		_, err = g.Get(ctx, "b")
		require.ErrorIs(t, err, workflows.ErrCacheMiss)
		require.ErrorContains(t, err, `tiles/b"`)

		// Stopping early is fine.
		for k, err := range c.Keys(ctx) {
			require.NoError(t, err)
			require.Equal(t, "a/10", k)
			break
		}
		for _, k := range cacheKeys(t, c) {
			require.NoError(t, c.Delete(ctx, k))
		}
		require.Empty(t, cacheKeys(t, c))
	})
	t.Run("invalid keys", func(t *testing.T) {
		long := strings.Repeat("k", workflows.MaxCacheKeyBytes+1)
		for key, rule := range map[string]string{
			"":                       "is empty",
			"/abs":                   `starts with "/"`,
			"../escape":              `".." segment`,
			"a/../../other-job/x":    `".." segment`,
			"a/./b":                  `"." segment`,
			"a//b":                   "empty segment",
			"dir/":                   `ends with "/"`,
			`a\b`:                    "backslash",
			"tab\there":              "control character",
			"nul\x00":                "control character",
			"bad\xffutf8":            "not valid UTF-8",
			long:                     "at most 512 allowed",
			strings.Repeat("s", 256): "segment of 256 bytes",
		} {
			err := c.Put(ctx, key, []byte("x"))
			require.ErrorIs(t, err, workflows.ErrInvalidCacheKey, "key %q", key)
			require.ErrorContains(t, err, rule, "key %q", key)
			_, err = c.Get(ctx, key)
			require.ErrorIs(t, err, workflows.ErrInvalidCacheKey, "key %q", key)
			_, err = c.Writer(ctx, key)
			require.ErrorIs(t, err, workflows.ErrInvalidCacheKey, "key %q", key)
		}
		err := c.Group("..").Put(ctx, "x", []byte("x"))
		require.ErrorIs(t, err, workflows.ErrInvalidCacheKey)
		require.ErrorContains(t, err, `group ".."`)
		err = c.Group(strings.Repeat("g", 300)).Group("h").Put(ctx, strings.Repeat("k", 250), []byte("x"))
		require.ErrorIs(t, err, workflows.ErrInvalidCacheKey)
		require.Empty(t, cacheKeys(t, c), "nothing was stored")
	})
	t.Run("streams", func(t *testing.T) {
		size := 600 << 10
		if large {
			size = 20 << 20 // above the S3 store's 16 MiB multipart threshold
		}
		want := cacheBytes(size, 1)
		w, err := c.Writer(ctx, "big")
		require.NoError(t, err)
		for chunk := range slices.Chunk(want, 1<<20) {
			_, err := w.Write(chunk)
			require.NoError(t, err)
		}
		require.NoError(t, w.Close())
		r, err := c.Reader(ctx, "big")
		require.NoError(t, err)
		got, err := io.ReadAll(r)
		require.NoError(t, err)
		require.NoError(t, r.Close())
		require.True(t, bytes.Equal(want, got), "streamed value reads back (%d of %d bytes)", len(got), len(want))

		// An aborted writer leaves the old value.
		w, err = c.Writer(ctx, "big")
		require.NoError(t, err)
		_, err = w.Write([]byte("partial"))
		require.NoError(t, err)
		w.Abort()
		require.ErrorContains(t, w.Close(), "aborted")
		got, err = c.Get(ctx, "big")
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got), "an aborted write leaves the previous value")

		// A writer whose context ends stores nothing.
		wctx, cancel := context.WithCancel(ctx)
		w, err = c.Writer(wctx, "canceled")
		require.NoError(t, err)
		_, _ = w.Write([]byte("partial"))
		cancel()
		require.Error(t, w.Close())
		ok, err := c.Exists(ctx, "canceled")
		require.NoError(t, err)
		require.False(t, ok, "a canceled writer leaves no value")
		require.NoError(t, c.Delete(ctx, "big"))
	})
	if !large {
		t.Run("value limit", func(t *testing.T) {
			err := c.Put(ctx, "huge", make([]byte, workflows.MaxRedisCacheValue+1))
			require.ErrorIs(t, err, workflows.ErrCacheValueTooLarge)
			require.ErrorContains(t, err, "object-store cache")
			w, err := c.Writer(ctx, "huge")
			require.NoError(t, err)
			_, err = w.Write(make([]byte, workflows.MaxRedisCacheValue))
			require.NoError(t, err)
			_, err = w.Write([]byte("1"))
			require.ErrorIs(t, err, workflows.ErrCacheValueTooLarge)
			require.ErrorIs(t, w.Close(), workflows.ErrCacheValueTooLarge, "a failed write fails Close")
			ok, err := c.Exists(ctx, "huge")
			require.NoError(t, err)
			require.False(t, ok)
		})
	}
}

func TestJobCacheConformance(t *testing.T) {
	b := setup(t)
	m := testenv.NewMinIO(t)
	backends := []struct {
		name  string
		url   func(t *testing.T) string
		large bool
	}{
		{"redis", func(*testing.T) string { return "" }, false},
		{"directory", func(t *testing.T) string { return "file://" + t.TempDir() }, true},
		{"minio", func(t *testing.T) string { return minioCacheURL(t, m, m.Endpoint()) }, true},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			c := cacheClient(t, b, be.url(t))
			j := idleJob(t, b)
			testCache(t, c.Jobs().Cache(j.ID), be.large)
		})
	}
	t.Run("minio behind faults", func(t *testing.T) {
		p := testenv.NewFaultProxy(t, m.Endpoint())
		c := cacheClient(t, b, minioCacheURL(t, m, p.URL))
		j := idleJob(t, b)
		jc := c.Jobs().Cache(j.ID)
		ctx := t.Context()
		value := cacheBytes(256<<10, 2)
		// Bursts of errors and resets the retries absorb.
		for i, inject := range []func(){
			func() { p.FailNext(3, 503) },
			func() { p.ResetNext(2) },
			func() { p.CutNext(2, 64<<10) },
		} {
			key := fmt.Sprintf("faulty/%d", i)
			inject()
			require.NoError(t, jc.Put(ctx, key, value))
			inject()
			got, err := jc.Get(ctx, key)
			require.NoError(t, err)
			require.True(t, bytes.Equal(value, got))
			inject()
			ok, err := jc.Exists(ctx, key)
			require.NoError(t, err)
			require.True(t, ok)
			p.Clear()
		}
		require.Equal(t, []string{"faulty/0", "faulty/1", "faulty/2"}, cacheKeys(t, jc))

		// A stream whose parts keep failing fails, and leaves no value.
		p.FailNext(1000, 500)
		w, err := jc.Writer(ctx, "broken")
		require.NoError(t, err)
		var werr error
		for chunk := range slices.Chunk(cacheBytes(20<<20, 3), 1<<20) {
			if _, werr = w.Write(chunk); werr != nil {
				break
			}
		}
		cerr := w.Close()
		require.Error(t, cmpErr(werr, cerr), "the upload fails")
		require.ErrorContains(t, cmpErr(cerr, werr), `"broken"`)
		p.Clear()
		ok, err := jc.Exists(ctx, "broken")
		require.NoError(t, err)
		require.False(t, ok, "a failed upload leaves no partial value")
		testCache(t, jc.Group("suite"), true)
	})
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Two jobs' caches never see each other's keys, whatever the key.
func TestJobCacheIsolation(t *testing.T) {
	b := setup(t)
	for _, url := range []string{"", "file://" + t.TempDir()} {
		c := cacheClient(t, b, url)
		j1, j2 := idleJob(t, b), idleJob(t, b)
		c1, c2 := c.Jobs().Cache(j1.ID), c.Jobs().Cache(j2.ID)
		require.NoError(t, c1.Put(t.Context(), "k", []byte("one")))
		require.NoError(t, c2.Put(t.Context(), "k", []byte("two")))
		got, err := c1.Get(t.Context(), "k")
		require.NoError(t, err)
		require.Equal(t, "one", string(got))
		require.Equal(t, []string{"k"}, cacheKeys(t, c2))
		_, err = c1.Get(t.Context(), "../"+j2.ID+"/k")
		require.ErrorIs(t, err, workflows.ErrInvalidCacheKey)
		_, err = c.Jobs().Cache("../"+j2.ID).Get(t.Context(), "k")
		require.ErrorContains(t, err, "is not a job id")
		require.ErrorContains(t, c.Jobs().Cache("no-such-job").Put(t.Context(), "k", nil), "not found")
	}
	_, err := workflows.NewClient(b.ctx, workflows.WithRedisURL(b.redis.URL()), workflows.WithJobCache("ftp://x/y"))
	require.ErrorContains(t, err, `unsupported scheme "ftp"`)
	require.ErrorIs(t, workflows.JobCache(t.Context()).Put(t.Context(), "k", nil), workflows.ErrNotInTask)
}

// CachePipeline writes values in one subtask and reads them in another that
// depends on it; the reader records what it saw under "seen/".
type CachePipeline struct{ Size int }

func (p *CachePipeline) Execute(ctx context.Context) error {
	w, err := workflows.SubmitSubtask(ctx, &CacheWriteTask{Size: p.Size})
	if err != nil {
		return err
	}
	_, err = workflows.SubmitSubtask(ctx, &CacheReadTask{}, workflows.WithDependencies(w))
	return err
}

type CacheWriteTask struct{ Size int }

func (c *CacheWriteTask) Execute(ctx context.Context) error {
	jc := workflows.JobCache(ctx)
	if err := jc.Group("stats").Put(ctx, "count", []byte("42")); err != nil {
		return err
	}
	w, err := jc.Writer(ctx, "blob")
	if err != nil {
		return err
	}
	if _, err := w.Write(cacheBytes(c.Size, 9)); err != nil {
		return err
	}
	return w.Close()
}

type CacheReadTask struct{}

func (*CacheReadTask) Execute(ctx context.Context) error {
	jc := workflows.JobCache(ctx)
	count, err := jc.Get(ctx, "stats/count")
	if err != nil {
		return err
	}
	r, err := jc.Reader(ctx, "blob")
	if err != nil {
		return err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return err
	}
	var keys []string
	for k, err := range jc.Keys(ctx) {
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	seen := fmt.Sprintf("count=%s blob=%s keys=%s", count, hex.EncodeToString(h.Sum(nil)), strings.Join(keys, ","))
	return jc.Put(ctx, "seen", []byte(seen))
}

func cacheTasks() []workflows.Task {
	return []workflows.Task{&CachePipeline{}, &CacheWriteTask{}, &CacheReadTask{}}
}

func wantSeen(size int) string {
	sum := sha256.Sum256(cacheBytes(size, 9))
	return fmt.Sprintf("count=42 blob=%s keys=blob,stats/count", hex.EncodeToString(sum[:]))
}

// A task writes, a dependent task reads, through the SDK, in a direct runner
// and in a release worker (the Redis cache proxied over the worker
// protocol, a directory cache opened by the worker itself).
func TestJobCacheBetweenTasks(t *testing.T) {
	b := setup(t)
	for _, tc := range []struct {
		name, url string
		size      int
		remote    bool
	}{
		{"direct redis", "", 300 << 10, false},
		{"direct directory", "file://" + t.TempDir(), 3 << 20, false},
		{"worker redis", "", 300 << 10, true},
		{"worker directory", "file://" + t.TempDir(), 3 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cacheClient(t, b, tc.url)
			var r *workflows.Runner
			var err error
			if tc.remote {
				exec := &hostExec{h: pipeWorker(t, cacheTasks()...)}
				ids := []workflows.TaskIdentifier{}
				for _, task := range cacheTasks() {
					ids = append(ids, workflows.IdentifierOf(task))
				}
				r, err = c.NewRemoteRunner(b.ctx, b.cluster, ids, exec, "rel-cache")
			} else {
				r, err = c.NewRunner(b.ctx, b.cluster, cacheTasks()...)
			}
			require.NoError(t, err)
			j, err := c.Jobs().Submit(b.ctx, t.Name(), b.cluster, &CachePipeline{Size: tc.size})
			require.NoError(t, err)
			require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(2)))
			job, err := c.Jobs().Get(b.ctx, j.ID)
			require.NoError(t, err)
			require.Equal(t, workflows.JobCompleted, job.State, "%+v", job)
			seen, err := c.Jobs().Cache(j.ID).Get(b.ctx, "seen")
			require.NoError(t, err)
			require.Equal(t, wantSeen(tc.size), string(seen))
		})
	}
}

// A too-large value through the worker proxy fails the task with the
// Redis limit named.
func TestJobCacheWorkerLimit(t *testing.T) {
	b := setup(t)
	exec := &hostExec{h: pipeWorker(t, cacheTasks()...)}
	r := remoteRunner(t, b, cacheTasks(), exec)
	j := b.submit(t, &CacheWriteTask{Size: workflows.MaxRedisCacheValue + 1})
	require.NoError(t, r.RunAll(b.ctx))
	tasks, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.TaskFailed, tasks[0].State)
	require.Contains(t, tasks[0].Error, "value too large for the job cache")
	require.Contains(t, tasks[0].Error, `"blob"`)
}

// Archiving a job deletes its cache: the Redis one with the job's keys, the
// object-store one by the sweep, retried after a failure.
func TestJobCacheDeletedWithJob(t *testing.T) {
	b := setup(t)
	ctx := b.ctx
	dir := t.TempDir()
	m := testenv.NewMinIO(t)
	p := testenv.NewFaultProxy(t, m.Endpoint())
	s3URL := minioCacheURL(t, m, p.URL)
	t.Setenv("AWS_MAX_ATTEMPTS", "1")
	clients := map[string]*workflows.Client{
		"redis": cacheClient(t, b, ""), "dir": cacheClient(t, b, "file://"+dir), "s3": cacheClient(t, b, s3URL),
	}
	r, err := clients["dir"].NewRunner(ctx, b.cluster, cacheTasks()...)
	require.NoError(t, err)
	j, err := clients["dir"].Jobs().Submit(ctx, t.Name(), b.cluster, &CachePipeline{Size: 1000})
	require.NoError(t, err)
	require.NoError(t, r.RunAll(ctx))
	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	for name, c := range clients {
		require.NoError(t, c.Jobs().Cache(j.ID).Put(ctx, "from/"+name, []byte(name)))
	}
	other := idleJob(t, b) // not finished: not archived
	require.NoError(t, clients["dir"].Jobs().Cache(other.ID).Put(ctx, "keep", []byte("x")))
	require.NoError(t, clients["redis"].Jobs().Cache(other.ID).Put(ctx, "keep", []byte("x")))
	require.NotEmpty(t, cacheKeys(t, clients["dir"].Jobs().Cache(j.ID)))

	archive, archiveURL := fileArchive(t)
	p.FailNext(1000, 500) // the S3 cache cannot be deleted yet
	n, err := b.client.ArchiveJobs(ctx, archive, archiveURL, time.Now())
	require.NoError(t, err, "a cache that cannot be deleted does not hold up archiving")
	require.Equal(t, 1, n)
	p.Clear()

	_, err = clients["redis"].Jobs().Cache(j.ID).Get(ctx, "from/redis")
	require.ErrorIs(t, err, workflows.ErrCacheMiss, "the Redis cache left with the job")
	require.Empty(t, cacheKeys(t, clients["dir"].Jobs().Cache(j.ID)), "the directory cache is deleted")
	require.NoDirExists(t, filepath.Join(dir, "cache", j.ID))
	require.Equal(t, []string{"from/s3"}, cacheKeys(t, clients["s3"].Jobs().Cache(j.ID)), "the failed deletion waits")
	err = clients["dir"].Jobs().Cache(j.ID).Put(ctx, "late", []byte("x"))
	require.ErrorContains(t, err, "archived", "an archived job's cache takes no writes")
	require.Empty(t, cacheKeys(t, clients["dir"].Jobs().Cache(j.ID)))

	// The next sweep deletes what failed.
	_, err = b.client.ArchiveJobs(ctx, archive, archiveURL, time.Now())
	require.NoError(t, err)
	require.Empty(t, cacheKeys(t, clients["s3"].Jobs().Cache(j.ID)))

	// The unfinished job keeps its cache.
	require.Equal(t, []string{"keep"}, cacheKeys(t, clients["dir"].Jobs().Cache(other.ID)))
	require.Equal(t, []string{"keep"}, cacheKeys(t, clients["redis"].Jobs().Cache(other.ID)))
	var left []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, strings.TrimPrefix(p, dir))
		}
		return err
	}))
	require.Equal(t, []string{"/cache/" + other.ID + "/keep"}, left)
}
