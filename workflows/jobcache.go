package workflows

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/queue"
)

// The job cache: a key/value store per job, shared by the job's tasks, for
// results that are too large or too many for task inputs. Where it lives is
// the client's choice (WithJobCache, $RUNFLEET_CACHE):
//
//   - "redis" (the default): the client's own Redis, in the job's hash tag,
//     values up to MaxRedisCacheValue. Nothing to set up, but every byte is
//     Redis memory until the job is archived.
//   - an object store URL, as artifacts.OpenStore takes it
//     (s3://bucket/prefix?endpoint=..., file:///dir): values of any size,
//     streamed, under <prefix>/cache/<job id>/<key>.
//
// Either way a job's cache is deleted when the job is archived; the archive
// does not keep it.

// JobCacheRedis is the WithJobCache value for a cache in the client's Redis.
const JobCacheRedis = "redis"

// MaxRedisCacheValue is the largest value a Redis job cache holds (1 MiB):
// larger ones belong in an object-store cache.
const MaxRedisCacheValue = protocol.MaxCacheValue

// MaxCacheKeyBytes bounds a job cache key, group path included.
const MaxCacheKeyBytes = 512

// maxCacheSegment bounds one "/"-separated segment of a key: a file name in
// a local-directory cache.
const maxCacheSegment = 255

// cacheKeysPage is how many keys one listing request returns.
const cacheKeysPage = 1000

// ErrCacheMiss is wrapped by Cache.Get and Cache.Reader for a key with no value.
var ErrCacheMiss = queue.ErrCacheMiss

// ErrInvalidCacheKey is wrapped when a job cache key or group name breaks a
// rule; the error names the key and the rule.
var ErrInvalidCacheKey = errors.New("invalid job cache key")

// ErrCacheValueTooLarge is wrapped when a value is over the cache's limit.
var ErrCacheValueTooLarge = errors.New("value too large for the job cache")

// errWriterAborted is what an aborted CacheWriter's upload fails with.
var errWriterAborted = errors.New("cache writer aborted")

// Cache is one job's cache, or a group of it. Get it with JobCache(ctx)
// inside a task or Client.Jobs().Cache(jobID) anywhere. Its methods are safe
// for concurrent use; a value is replaced whole, so readers see the old or
// the new value, never a mix or a part.
//
// Keys are slash paths of 1 to 512 bytes of UTF-8: no leading, trailing or
// doubled "/", no "." or ".." segment, no segment over 255 bytes, no
// backslash and no control character. With a local-directory cache a key
// cannot also be a prefix segment of another ("a" and "a/b").
type Cache struct {
	b     cacheBackend
	job   string
	group string // "" or the group path with a trailing "/"
	err   error  // why this cache cannot be used (outside a task)
}

// JobCache returns the cache of the job whose task is running in ctx. Outside
// a task's Execute every method fails with an error wrapping ErrNotInTask.
func JobCache(ctx context.Context) *Cache {
	e := executionFrom(ctx)
	switch {
	case e == nil:
		return &Cache{err: fmt.Errorf("job cache: %w", ErrNotInTask)}
	case e.cache == nil:
		return &Cache{job: e.info.JobID, err: fmt.Errorf("job %s cache: the runner passed no job cache to this task (a release runner older than the job cache)", e.info.JobID)}
	}
	return &Cache{b: e.cache, job: e.info.JobID}
}

// Cache returns the cache of job id, in the backend the client was opened
// with (WithJobCache): it must be the one the job's runners use. Writes fail
// once the job is archived.
func (jc *JobClient) Cache(id string) *Cache {
	if err := checkCacheJobID(id); err != nil {
		return &Cache{job: id, err: err}
	}
	b := jc.c.cache
	if s, ok := b.(storeCache); ok {
		// Not from a running task, so the job may be archived by now:
		// check every write, or its objects would outlive it.
		s.memo = nil
		b = s
	}
	return &Cache{b: b, job: id}
}

var cacheJobID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func checkCacheJobID(id string) error {
	if !cacheJobID.MatchString(id) {
		return fmt.Errorf("job cache: %q is not a job id", id)
	}
	return nil
}

// checkCachePath reports why p is not a valid key (what is "key" or
// "group"), naming it and the rule.
func checkCachePath(what, p string) error {
	bad := func(rule string, args ...any) error {
		return fmt.Errorf("%w: %s %q %s", ErrInvalidCacheKey, what, p, fmt.Sprintf(rule, args...))
	}
	switch {
	case p == "":
		return bad("is empty")
	case len(p) > MaxCacheKeyBytes:
		return bad("is %d bytes, at most %d allowed", len(p), MaxCacheKeyBytes)
	case !utf8.ValidString(p):
		return bad("is not valid UTF-8")
	case strings.HasPrefix(p, "/"):
		return bad(`starts with "/"; keys are relative`)
	case strings.HasSuffix(p, "/"):
		return bad(`ends with "/"`)
	case strings.Contains(p, `\`):
		return bad("contains a backslash; use / to separate segments")
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return bad("contains a control character")
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch {
		case seg == "":
			return bad(`contains an empty segment ("//")`)
		case seg == "." || seg == "..":
			return bad("contains a %q segment", seg)
		case len(seg) > maxCacheSegment:
			return bad("has a segment of %d bytes, at most %d allowed", len(seg), maxCacheSegment)
		}
	}
	return nil
}

// path checks key and returns its full path in the job's cache.
func (c *Cache) path(op, key string) (string, error) {
	if c.err != nil {
		return "", c.err
	}
	if err := checkCachePath("key", key); err != nil {
		return "", c.fail(op, key, err)
	}
	full := c.group + key
	if len(full) > MaxCacheKeyBytes {
		return "", c.fail(op, key, fmt.Errorf("%w: key %q in group %q is %d bytes with the group path, at most %d allowed",
			ErrInvalidCacheKey, key, strings.TrimSuffix(c.group, "/"), len(full), MaxCacheKeyBytes))
	}
	return full, nil
}

func (c *Cache) fail(op, key string, err error) error {
	return fmt.Errorf("job %s cache: %s %q: %w", c.job, op, c.group+key, err)
}

// Group returns the sub-cache of the keys under name: a group is a key
// prefix, so Group("tiles").Put(ctx, "7", v) stores key "tiles/7", which the
// parent lists and reads as "tiles/7" and the group as "7". Groups nest
// (Group("a").Group("b") is Group("a/b")). An invalid name makes every
// method of the group fail.
func (c *Cache) Group(name string) *Cache {
	g := &Cache{b: c.b, job: c.job, group: c.group + name + "/", err: c.err}
	if g.err == nil {
		if err := checkCachePath("group", name); err != nil {
			g.err = fmt.Errorf("job %s cache: %w", c.job, err)
		}
	}
	return g
}

// Put stores value under key, replacing any value.
func (c *Cache) Put(ctx context.Context, key string, value []byte) error {
	full, err := c.path("put", key)
	if err != nil {
		return err
	}
	if err := c.b.put(ctx, c.job, full, value); err != nil {
		return c.fail("put", key, err)
	}
	return nil
}

// Get returns the value under key; the error wraps ErrCacheMiss when there
// is none. Use Reader for values too large to hold in memory.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	full, err := c.path("get", key)
	if err != nil {
		return nil, err
	}
	b, err := c.b.get(ctx, c.job, full)
	if err != nil {
		return nil, c.fail("get", key, err)
	}
	return b, nil
}

// Exists reports whether key has a value.
func (c *Cache) Exists(ctx context.Context, key string) (bool, error) {
	full, err := c.path("exists", key)
	if err != nil {
		return false, err
	}
	ok, err := c.b.exists(ctx, c.job, full)
	if err != nil {
		return false, c.fail("exists", key, err)
	}
	return ok, nil
}

// Delete removes key's value; a key without one is no error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	full, err := c.path("delete", key)
	if err != nil {
		return err
	}
	if err := c.b.del(ctx, c.job, full); err != nil {
		return c.fail("delete", key, err)
	}
	return nil
}

// Keys yields the cache's keys (a group's relative to it, with those of its
// sub-groups), sorted by bytes. Listing goes page by page underneath; an
// error is yielded once, last.
func (c *Cache) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if c.err != nil {
			yield("", c.err)
			return
		}
		for k, err := range c.b.keys(ctx, c.job, c.group) {
			if err != nil {
				yield("", fmt.Errorf("job %s cache: list keys of %q: %w", c.job, c.group, err))
				return
			}
			if !yield(strings.TrimPrefix(k, c.group), nil) {
				return
			}
		}
	}
}

// Writer returns a writer whose content becomes key's value when Close
// returns nil. Object-store caches stream it (multipart uploads for large
// values), never holding it whole in memory; the Redis cache buffers up to
// its limit. Until Close succeeds nothing of the value is visible: a write
// that fails, an Abort, or ctx ending discard it. Close or Abort every
// writer.
func (c *Cache) Writer(ctx context.Context, key string) (*CacheWriter, error) {
	full, err := c.path("write", key)
	if err != nil {
		return nil, err
	}
	w, err := c.b.writer(ctx, c.job, full)
	if err != nil {
		return nil, c.fail("write", key, err)
	}
	w.fail = func(err error) error { return c.fail("write", key, err) }
	return w, nil
}

// Reader streams key's value; the error wraps ErrCacheMiss when there is
// none. Close it.
func (c *Cache) Reader(ctx context.Context, key string) (io.ReadCloser, error) {
	full, err := c.path("read", key)
	if err != nil {
		return nil, err
	}
	r, err := c.b.reader(ctx, c.job, full)
	if err != nil {
		return nil, c.fail("read", key, err)
	}
	return r, nil
}

// CacheWriter writes one job cache value (Cache.Writer). It is not safe
// for concurrent use.
type CacheWriter struct {
	write  func([]byte) (int, error)
	commit func() error      // makes the value visible
	abort  func(error) error // discards it
	fail   func(error) error // names the key in errors
	done   bool
	err    error // the first write error: Close then stores nothing
}

// Write appends p to the value.
func (w *CacheWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, w.fail(errors.New("write after Close or Abort"))
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.write(p)
	if err != nil {
		w.err = w.fail(err)
		return n, w.err
	}
	return n, nil
}

// Close stores what was written as the value. After a failed Write it
// stores nothing and returns that failure.
func (w *CacheWriter) Close() error {
	if w.done {
		return w.err
	}
	w.done = true
	if w.err != nil {
		_ = w.abort(w.err)
		return w.err
	}
	if err := w.commit(); err != nil {
		w.err = w.fail(err)
	}
	return w.err
}

// Abort discards what was written; the key keeps its previous value, if
// any. Aborting a closed writer does nothing.
func (w *CacheWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.err = w.fail(errWriterAborted)
	_ = w.abort(errWriterAborted)
}

// cacheBackend is where a job cache lives. Keys reaching it are checked
// full paths; errors need not name the job or key (Cache adds them).
type cacheBackend interface {
	put(ctx context.Context, job, key string, value []byte) error
	get(ctx context.Context, job, key string) ([]byte, error)
	exists(ctx context.Context, job, key string) (bool, error)
	del(ctx context.Context, job, key string) error
	keys(ctx context.Context, job, prefix string) iter.Seq2[string, error]
	writer(ctx context.Context, job, key string) (*CacheWriter, error)
	reader(ctx context.Context, job, key string) (io.ReadCloser, error)
}

// bufferWriter is a CacheWriter collecting up to limit bytes in memory and
// storing them with put on Close.
func bufferWriter(limit int, what string, put func([]byte) error) *CacheWriter {
	var buf bytes.Buffer
	return &CacheWriter{
		write: func(p []byte) (int, error) {
			if buf.Len()+len(p) > limit {
				return 0, fmt.Errorf("%w: over %d bytes, the limit of %s; use an object-store cache (WithJobCache, RUNFLEET_CACHE=s3://...) for large values",
					ErrCacheValueTooLarge, limit, what)
			}
			return buf.Write(p)
		},
		commit: func() error { return put(buf.Bytes()) },
		abort:  func(error) error { buf.Reset(); return nil },
	}
}

func tooLargeForRedis(n int) error {
	return fmt.Errorf("%w: %d bytes, over the Redis cache's %d byte limit; use an object-store cache (WithJobCache, RUNFLEET_CACHE=s3://...) for large values",
		ErrCacheValueTooLarge, n, MaxRedisCacheValue)
}

// redisCache keeps values in the client's Redis, in the job's hash tag.
type redisCache struct{ q *queue.Queue }

func (r redisCache) put(ctx context.Context, job, key string, value []byte) error {
	if len(value) > MaxRedisCacheValue {
		return tooLargeForRedis(len(value))
	}
	return r.q.CachePut(ctx, job, key, value)
}

func (r redisCache) get(ctx context.Context, job, key string) ([]byte, error) {
	return r.q.CacheGet(ctx, job, key)
}

func (r redisCache) exists(ctx context.Context, job, key string) (bool, error) {
	return r.q.CacheExists(ctx, job, key)
}

func (r redisCache) del(ctx context.Context, job, key string) error {
	return r.q.CacheDelete(ctx, job, key)
}

func (r redisCache) keys(ctx context.Context, job, prefix string) iter.Seq2[string, error] {
	return pagedKeys(func(after string) ([]string, bool, error) {
		ks, err := r.q.CacheKeys(ctx, job, prefix, after, cacheKeysPage)
		return ks, len(ks) == cacheKeysPage, err
	})
}

// pagedKeys yields the keys of pages fetched with page(after).
func pagedKeys(page func(after string) ([]string, bool, error)) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		after := ""
		for {
			ks, more, err := page(after)
			if err != nil {
				yield("", err)
				return
			}
			for _, k := range ks {
				if !yield(k, nil) {
					return
				}
			}
			if !more || len(ks) == 0 {
				return
			}
			after = ks[len(ks)-1]
		}
	}
}

func (r redisCache) writer(ctx context.Context, job, key string) (*CacheWriter, error) {
	return bufferWriter(MaxRedisCacheValue, "the Redis cache", func(b []byte) error {
		return r.q.CachePut(ctx, job, key, b)
	}), nil
}

func (r redisCache) reader(ctx context.Context, job, key string) (io.ReadCloser, error) {
	b, err := r.q.CacheGet(ctx, job, key)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// storeCache keeps values in an object store under cache/<job>/.
type storeCache struct {
	store artifacts.Store
	// q and url, when set, record the job's use of the store before a
	// write, so the archive sweep deletes the job's objects; once per job
	// with memo (the writes of running tasks, whose job cannot be archived
	// meanwhile).
	q    *queue.Queue
	url  string
	memo *useMemo
}

// useMemo remembers jobs whose use of a cache is recorded; bounded, it
// forgets all when full (they are recorded again).
type useMemo struct {
	mu   sync.Mutex
	jobs map[string]struct{}
}

func (m *useMemo) has(job string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.jobs[job]
	return ok
}

func (m *useMemo) add(job string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.jobs == nil || len(m.jobs) >= 10000 {
		m.jobs = map[string]struct{}{}
	}
	m.jobs[job] = struct{}{}
}

func cacheObject(job, key string) string { return "cache/" + job + "/" + key }

// cacheJobPrefix is where all of a job's cache objects live.
func cacheJobPrefix(job string) string { return "cache/" + job + "/" }

func (s storeCache) recordUse(ctx context.Context, job string) error {
	if s.q == nil || (s.memo != nil && s.memo.has(job)) {
		return nil
	}
	if err := s.q.UseCache(ctx, job, s.url); err != nil {
		return err
	}
	if s.memo != nil {
		s.memo.add(job)
	}
	return nil
}

func storeErr(err error) error {
	if errors.Is(err, artifacts.ErrNotFound) {
		return fmt.Errorf("%w (%w)", ErrCacheMiss, err)
	}
	return err
}

func (s storeCache) put(ctx context.Context, job, key string, value []byte) error {
	if err := s.recordUse(ctx, job); err != nil {
		return err
	}
	return s.store.Put(ctx, cacheObject(job, key), bytes.NewReader(value))
}

func (s storeCache) get(ctx context.Context, job, key string) ([]byte, error) {
	rc, err := s.store.Get(ctx, cacheObject(job, key))
	if err != nil {
		return nil, storeErr(err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (s storeCache) exists(ctx context.Context, job, key string) (bool, error) {
	return s.store.Exists(ctx, cacheObject(job, key))
}

func (s storeCache) del(ctx context.Context, job, key string) error {
	return s.store.Delete(ctx, cacheObject(job, key))
}

// keys lists the prefix in one go (an S3 store pages its requests).
func (s storeCache) keys(ctx context.Context, job, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		base := cacheJobPrefix(job)
		all, err := s.store.List(ctx, base+prefix)
		if err != nil {
			yield("", err)
			return
		}
		for _, k := range all {
			if !yield(strings.TrimPrefix(k, base), nil) {
				return
			}
		}
	}
}

// writer streams into a Put through a pipe: the store sees the value end
// (EOF) only on Close; any other end of the pipe fails the Put, which then
// stores nothing.
func (s storeCache) writer(ctx context.Context, job, key string) (*CacheWriter, error) {
	if err := s.recordUse(ctx, job); err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	pctx, cancel := context.WithCancel(ctx)
	// A Put blocked reading the pipe does not see ctx end by itself.
	stop := context.AfterFunc(pctx, func() { pr.CloseWithError(pctx.Err()) })
	done := make(chan error, 1)
	go func() {
		err := s.store.Put(pctx, cacheObject(job, key), pr)
		pr.CloseWithError(cmpErr(err, errors.New("the upload ended")))
		done <- err
	}()
	finish := func() error {
		err := <-done
		stop()
		cancel()
		return err
	}
	abort := func(why error) error {
		_ = pw.CloseWithError(why)
		cancel()
		return finish()
	}
	return &CacheWriter{
		write: pw.Write,
		commit: func() error {
			// The AfterFunc above runs on a goroutine of its own: a
			// context that already ended must not lose the race to this
			// end of the value and store it.
			if err := pctx.Err(); err != nil {
				return cmpErr(abort(err), err)
			}
			_ = pw.Close()
			return finish()
		},
		abort: abort,
	}, nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

func (s storeCache) reader(ctx context.Context, job, key string) (io.ReadCloser, error) {
	rc, err := s.store.Get(ctx, cacheObject(job, key))
	if err != nil {
		return nil, storeErr(err)
	}
	return rc, nil
}

// openCacheBackend opens the cache named by url for a client: "" or
// "redis" is the client's Redis; anything else an object store whose use
// per job is recorded in Redis (the first write of each job, per process).
func (c *Client) openCacheBackend(url string) (cacheBackend, string, error) {
	if url == "" || url == JobCacheRedis {
		return redisCache{q: c.q}, JobCacheRedis, nil
	}
	store, err := artifacts.OpenStore(url)
	if err != nil {
		return nil, "", fmt.Errorf("job cache: %w", err)
	}
	return storeCache{store: store, q: c.q, url: url, memo: &useMemo{}}, url, nil
}

// cacheForExecute is the Execute "cache" value for a task of job, after
// recording the job's use of an object-store cache (the worker cannot).
func (r *Runner) cacheForExecute(ctx context.Context, job string) (string, error) {
	switch b := r.client.cache.(type) {
	case redisCache:
		return protocol.CacheViaRunner, nil
	case storeCache:
		if err := b.recordUse(ctx, job); err != nil {
			return "", err
		}
		return r.client.cacheURL, nil
	}
	return "", nil
}

// serveCache answers a worker's cache requests for a task of job from the
// runner's Redis cache, checking keys as Cache does: a worker may be
// written in any language.
func (r *Runner) serveCache(ctx context.Context, job string) func(protocol.CacheRequest) protocol.CacheReply {
	return func(req protocol.CacheRequest) protocol.CacheReply {
		rc, ok := r.client.cache.(redisCache)
		if !ok {
			return protocol.CacheReply{Error: "this runner's job cache is not in Redis"}
		}
		c := &Cache{b: rc, job: job}
		var rep protocol.CacheReply
		var err error
		switch req.Op {
		case protocol.CachePut:
			err = c.Put(ctx, req.Key, req.Value)
		case protocol.CacheGet:
			rep.Value, err = c.Get(ctx, req.Key)
			rep.Found = err == nil
		case protocol.CacheExists:
			rep.Found, err = c.Exists(ctx, req.Key)
		case protocol.CacheDelete:
			err = c.Delete(ctx, req.Key)
		case protocol.CacheKeys:
			if req.Key != "" {
				if err = checkCachePath("group", strings.TrimSuffix(req.Key, "/")); err != nil || !strings.HasSuffix(req.Key, "/") {
					err = cmpErr(err, fmt.Errorf("%w: keys prefix %q must end with \"/\"", ErrInvalidCacheKey, req.Key))
					break
				}
			}
			rep.Keys, err = rc.q.CacheKeys(ctx, job, req.Key, req.After, cacheKeysPage)
			rep.More = len(rep.Keys) == cacheKeysPage
		default:
			err = fmt.Errorf("unknown job cache operation %q", req.Op)
		}
		if err != nil {
			rep = protocol.CacheReply{Error: err.Error()}
			switch {
			case errors.Is(err, ErrCacheMiss):
				rep.Code = protocol.CacheErrMiss
			case errors.Is(err, ErrInvalidCacheKey):
				rep.Code = protocol.CacheErrInvalidKey
			case errors.Is(err, ErrCacheValueTooLarge):
				rep.Code = protocol.CacheErrTooLarge
			}
		}
		return rep
	}
}

// deleteArchivedCaches deletes the object-store caches and stored inputs
// of jobs that left Redis (ArchiveJobs runs it last), and settles uploads
// of stored inputs whose submitter died. A failure is logged and the cache
// tried again by the next call: it never holds up archiving.
func (c *Client) deleteArchivedCaches(ctx context.Context) {
	const batch, rounds = 100, 10
	c.settleOrphanedPayloads(ctx, batch)
	for range rounds {
		entries, err := c.q.CacheGCPending(ctx, batch)
		if err != nil {
			c.logger.Warn("job caches of archived jobs not deleted; the next sweep tries again", slog.Any("error", err))
			return
		}
		failed := 0
		for _, e := range entries {
			if err := deleteJobCache(ctx, e.URL, e.JobID); err != nil {
				failed++
				c.logger.Warn("job cache of an archived job not deleted; the next sweep tries again",
					slog.String("job_id", e.JobID), slog.Any("error", err))
				continue
			}
			if err := c.q.CacheGCDone(ctx, e); err != nil {
				failed++
				c.logger.Warn("deleted job cache not unrecorded", slog.String("job_id", e.JobID), slog.Any("error", err))
			}
		}
		if len(entries) < batch || failed > 0 {
			return
		}
	}
}

func deleteJobCache(ctx context.Context, url, job string) error {
	if err := checkCacheJobID(job); err != nil {
		return err
	}
	store, err := artifacts.OpenStore(url)
	if err != nil {
		return fmt.Errorf("delete job %s cache: %w", job, err)
	}
	for _, prefix := range []string{cacheJobPrefix(job), payloadJobPrefix(job)} {
		if _, err := store.DeletePrefix(ctx, prefix); err != nil {
			return fmt.Errorf("delete job %s cache: %w", job, err)
		}
	}
	return nil
}

// settleOrphanedPayloads settles stored-input uploads their submitter
// never settled: recorded with the job when it was created, else deleted.
func (c *Client) settleOrphanedPayloads(ctx context.Context, limit int) {
	entries, err := c.q.PayloadUploadsExpired(ctx, time.Now(), limit)
	if err != nil {
		c.logger.Warn("unsettled stored inputs not checked; the next sweep tries again", slog.Any("error", err))
		return
	}
	for _, e := range entries {
		if e.JobExists {
			err = c.q.UseCache(ctx, e.JobID, e.URL)
		} else {
			err = deleteJobCache(ctx, e.URL, e.JobID)
		}
		if err == nil {
			err = c.q.PayloadUploadSettled(ctx, e.JobID, e.URL)
		}
		if err != nil {
			// Pushed back, so entries that keep failing (a bucket gone)
			// do not stop the sweep from reaching the others.
			_ = c.q.PayloadUploadPending(ctx, e.JobID, e.URL, time.Now().Add(payloadRetryAfter))
			c.logger.Warn("unsettled stored input of a job not settled; a later sweep tries again",
				slog.String("job_id", e.JobID), slog.Any("error", err))
		}
	}
}

// cacheReplies matches a worker's cache requests to the runner's replies.
type cacheReplies struct {
	mu      sync.Mutex
	next    uint64
	waiting map[uint64]chan protocol.CacheReply
}

// deliver hands a reply to its request; replies nobody waits for (the
// request's context ended) are dropped.
func (c *cacheReplies) deliver(rep protocol.CacheReply) {
	c.mu.Lock()
	ch := c.waiting[rep.Req]
	delete(c.waiting, rep.Req)
	c.mu.Unlock()
	if ch != nil {
		ch <- rep
	}
}

// proxyCache is a release worker's cache when it lives in the runner's
// Redis: each operation is a CacheRequest to the runner.
type proxyCache struct {
	w      *workerConn
	execID uint64
}

func (p proxyCache) call(ctx context.Context, req protocol.CacheRequest) (protocol.CacheReply, error) {
	r := &p.w.replies
	ch := make(chan protocol.CacheReply, 1)
	r.mu.Lock()
	if r.waiting == nil {
		r.waiting = map[uint64]chan protocol.CacheReply{}
	}
	r.next++
	req.Type, req.ID, req.Req = protocol.TypeCache, p.execID, r.next
	r.waiting[req.Req] = ch
	r.mu.Unlock()
	forget := func() {
		r.mu.Lock()
		delete(r.waiting, req.Req)
		r.mu.Unlock()
	}
	if err := p.w.send(req); err != nil {
		forget()
		return protocol.CacheReply{}, fmt.Errorf("send to the release runner: %w", err)
	}
	select {
	case rep := <-ch:
		if rep.Error == "" {
			return rep, nil
		}
		err := errors.New(rep.Error)
		switch rep.Code {
		case protocol.CacheErrMiss:
			err = fmt.Errorf("%w (runner: %s)", ErrCacheMiss, rep.Error)
		case protocol.CacheErrInvalidKey:
			err = fmt.Errorf("%w (runner: %s)", ErrInvalidCacheKey, rep.Error)
		case protocol.CacheErrTooLarge:
			err = fmt.Errorf("%w (runner: %s)", ErrCacheValueTooLarge, rep.Error)
		}
		return rep, err
	case <-ctx.Done():
		forget()
		return protocol.CacheReply{}, ctx.Err()
	}
}

func (p proxyCache) put(ctx context.Context, job, key string, value []byte) error {
	if len(value) > MaxRedisCacheValue {
		return tooLargeForRedis(len(value))
	}
	_, err := p.call(ctx, protocol.CacheRequest{Op: protocol.CachePut, Key: key, Value: value})
	return err
}

func (p proxyCache) get(ctx context.Context, job, key string) ([]byte, error) {
	rep, err := p.call(ctx, protocol.CacheRequest{Op: protocol.CacheGet, Key: key})
	return rep.Value, err
}

func (p proxyCache) exists(ctx context.Context, job, key string) (bool, error) {
	rep, err := p.call(ctx, protocol.CacheRequest{Op: protocol.CacheExists, Key: key})
	return rep.Found, err
}

func (p proxyCache) del(ctx context.Context, job, key string) error {
	_, err := p.call(ctx, protocol.CacheRequest{Op: protocol.CacheDelete, Key: key})
	return err
}

func (p proxyCache) keys(ctx context.Context, job, prefix string) iter.Seq2[string, error] {
	return pagedKeys(func(after string) ([]string, bool, error) {
		rep, err := p.call(ctx, protocol.CacheRequest{Op: protocol.CacheKeys, Key: prefix, After: after})
		return rep.Keys, rep.More, err
	})
}

func (p proxyCache) writer(ctx context.Context, job, key string) (*CacheWriter, error) {
	return bufferWriter(MaxRedisCacheValue, "the Redis cache", func(b []byte) error {
		return p.put(ctx, job, key, b)
	}), nil
}

func (p proxyCache) reader(ctx context.Context, job, key string) (io.ReadCloser, error) {
	b, err := p.get(ctx, job, key)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// workerStores are the object stores a release worker opened for job
// caches and stored inputs, by URL: one per URL for the process's life.
var workerStores sync.Map // url -> artifacts.Store

// workerCache is the cache of an execution in a release worker, from its
// Execute message: nil when the runner passed none.
func workerCache(x protocol.Execute, w *workerConn) (cacheBackend, error) {
	switch x.Cache {
	case "":
		return nil, nil
	case protocol.CacheViaRunner:
		return proxyCache{w: w, execID: x.ID}, nil
	}
	s, err := workerStore(x.Cache)
	if err != nil {
		return nil, fmt.Errorf("job cache: %w", err)
	}
	return storeCache{store: s}, nil
}

// workerStore is the object store at url, opened once per worker process.
func workerStore(url string) (artifacts.Store, error) {
	if s, ok := workerStores.Load(url); ok {
		return s.(artifacts.Store), nil
	}
	s, err := artifacts.OpenStore(url)
	if err != nil {
		return nil, err
	}
	got, _ := workerStores.LoadOrStore(url, s)
	return got.(artifacts.Store), nil
}
