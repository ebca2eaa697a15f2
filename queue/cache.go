package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The job cache's Redis side (workflows.JobCache): a job's small values live
// in its own hash tag and leave Redis with it (rf_purge), and the
// object-store caches its tasks used are remembered so the archive sweep
// can delete them once the job is gone. Keys are checked by the caller.

const keyCacheGC = "rf:cachegc"

func cacheKey(id string) string      { return jobPrefix(id) + "cache" }
func cacheIndexKey(id string) string { return jobPrefix(id) + "cachex" }
func cacheURLsKey(id string) string  { return jobPrefix(id) + "cacheurls" }

// ErrCacheMiss is returned by CacheGet for a key with no value.
var ErrCacheMiss = errors.New("no value in the job cache")

// nojob maps a write refused because the job left Redis (or is leaving it).
func nojob(id string, err error) error {
	if err != nil && strings.Contains(err.Error(), "nojob") {
		return fmt.Errorf("%w: %q (a job's cache can be written only while the job is in Redis, not once it is archived)", ErrJobNotFound, id)
	}
	return err
}

// CachePut stores value under key in job id's Redis cache, replacing any
// value. It fails with ErrJobNotFound when the job is not in Redis.
func (q *Queue) CachePut(ctx context.Context, id, key string, value []byte) error {
	err := q.rdb.FCall(ctx, "rf_cache_put", []string{jobKey(id)}, key, value).Err()
	if err != nil {
		return fmt.Errorf("job %s cache: put %q: %w", id, key, nojob(id, err))
	}
	return nil
}

// CacheGet returns the value under key; the error wraps ErrCacheMiss when
// there is none.
func (q *Queue) CacheGet(ctx context.Context, id, key string) ([]byte, error) {
	b, err := q.rdb.HGet(ctx, cacheKey(id), key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrCacheMiss
	}
	if err != nil {
		return nil, fmt.Errorf("job %s cache: get %q: %w", id, key, err)
	}
	return b, nil
}

// CacheExists reports whether key has a value.
func (q *Queue) CacheExists(ctx context.Context, id, key string) (bool, error) {
	ok, err := q.rdb.HExists(ctx, cacheKey(id), key).Result()
	if err != nil {
		return false, fmt.Errorf("job %s cache: exists %q: %w", id, key, err)
	}
	return ok, nil
}

// CacheDelete removes key's value; a key without one is no error.
func (q *Queue) CacheDelete(ctx context.Context, id, key string) error {
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, cacheKey(id), key)
		p.ZRem(ctx, cacheIndexKey(id), key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("job %s cache: delete %q: %w", id, key, err)
	}
	return nil
}

// CacheKeys returns up to limit keys starting with prefix and sorting after
// after ("" for the first page), in byte order. Keys never hold byte 0xff
// (they are UTF-8), which bounds the range.
func (q *Queue) CacheKeys(ctx context.Context, id, prefix, after string, limit int) ([]string, error) {
	lo := "[" + prefix
	if after != "" {
		lo = "(" + after
	}
	keys, err := q.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: cacheIndexKey(id), Start: lo, Stop: "[" + prefix + "\xff",
		ByLex: true, Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("job %s cache: list keys: %w", id, err)
	}
	return keys, nil
}

// UseCache records that job id's tasks write to the object-store cache at
// url, so CacheGCJob schedules its deletion when the job is archived. It
// fails with ErrJobNotFound when the job is not in Redis.
func (q *Queue) UseCache(ctx context.Context, id, url string) error {
	err := q.rdb.FCall(ctx, "rf_cache_use", []string{jobKey(id)}, url).Err()
	if err != nil {
		return fmt.Errorf("record cache of job %s: %w", id, nojob(id, err))
	}
	return nil
}

// CacheGCJob schedules the deletion of every object-store cache job id
// used: called before the job is purged, as its URL set goes with it.
// Repeating it is harmless.
func (q *Queue) CacheGCJob(ctx context.Context, id string) error {
	urls, err := q.rdb.SMembers(ctx, cacheURLsKey(id)).Result()
	if err != nil {
		return fmt.Errorf("read caches of job %s: %w", id, err)
	}
	if len(urls) == 0 {
		return nil
	}
	members := make([]any, len(urls))
	for i, u := range urls {
		members[i] = id + " " + u
	}
	if err := q.rdb.SAdd(ctx, keyCacheGC, members...).Err(); err != nil {
		return fmt.Errorf("schedule deletion of caches of job %s: %w", id, err)
	}
	return nil
}

// CacheGCEntry is one object-store cache waiting for deletion.
type CacheGCEntry struct {
	JobID string
	URL   string
}

// CacheGCPending returns up to limit caches waiting for deletion whose job
// has left Redis; entries of jobs still in Redis (archiving was refused
// because the job changed) wait for the job's next archive.
func (q *Queue) CacheGCPending(ctx context.Context, limit int) ([]CacheGCEntry, error) {
	members, err := q.rdb.SRandMemberN(ctx, keyCacheGC, int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("read caches to delete: %w", err)
	}
	entries, err := q.jobURLMembers(ctx, members, func(pipe redis.Pipeliner, m string) { pipe.SRem(ctx, keyCacheGC, m) })
	if err != nil {
		return nil, fmt.Errorf("read caches to delete: %w", err)
	}
	var out []CacheGCEntry
	for _, e := range entries {
		if !e.jobExists {
			out = append(out, CacheGCEntry{JobID: e.jobID, URL: e.url})
		}
	}
	return out, nil
}

// jobURL is a member "<job id> <url>" of an index of object-store
// clean-ups (rf:cachegc, rf:payloadpending), and whether its job is still
// in Redis.
type jobURL struct {
	jobID, url string
	jobExists  bool
}

// jobURLMembers splits such members and learns, in one round trip, which
// jobs are still in Redis; a member of another shape is not ours, and
// drop queues its removal in the same round trip.
func (q *Queue) jobURLMembers(ctx context.Context, members []string, drop func(redis.Pipeliner, string)) ([]jobURL, error) {
	if len(members) == 0 {
		return nil, nil
	}
	pipe := q.rdb.Pipeline()
	out := make([]jobURL, 0, len(members))
	exists := make([]*redis.IntCmd, 0, len(members))
	for _, m := range members {
		id, url, ok := strings.Cut(m, " ")
		if !ok {
			drop(pipe, m)
			continue
		}
		out = append(out, jobURL{jobID: id, url: url})
		exists = append(exists, pipe.Exists(ctx, jobKey(id)))
	}
	_, _ = pipe.Exec(ctx) // a failed removal is tried again next time; reads are checked below
	for i, cmd := range exists {
		n, err := cmd.Result()
		if err != nil {
			return nil, err
		}
		out[i].jobExists = n > 0
	}
	return out, nil
}

// CacheGCDone drops an entry whose cache was deleted.
func (q *Queue) CacheGCDone(ctx context.Context, e CacheGCEntry) error {
	if err := q.rdb.SRem(ctx, keyCacheGC, e.JobID+" "+e.URL).Err(); err != nil {
		return fmt.Errorf("drop deleted cache of job %s: %w", e.JobID, err)
	}
	return nil
}
