package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Archiving moves a finished job out of Redis once its retention has passed.
// The caller (workflows.Client.ArchiveJobs) writes the job's export to an
// object store first; this file records where (RecordArchive) and only then
// removes the job's keys (PurgeArchivedJob), so a crash at any step leaves
// the job either in Redis or findable in the archive, and running the whole
// thing again finishes what was started.

// ErrJobArchived means the job left Redis for the archive: it can be read,
// not changed.
var ErrJobArchived = errors.New("job is archived and read-only")

// ArchiveRecord says where an archived job's export lives. It is written
// before the job's keys are deleted.
type ArchiveRecord struct {
	// URL is the store the export was written to (artifacts.OpenStore).
	URL string `json:"url"`
	// Key is the export's object key in that store.
	Key        string    `json:"key"`
	ArchivedAt time.Time `json:"archived_at"`
	// Updated is the job's version ("updated" field) at export: the keys
	// are deleted only if the job has not changed since.
	Updated string `json:"updated"`
}

// ArchivableJobs returns up to limit ids of jobs to archive: jobs that
// finished (completed, failed or canceled) no later than cutoff, with no
// task running and no notification pending, plus jobs whose archiving was
// started and not finished. Only jobs created before cutoff can qualify, so
// the walk stops there.
func (q *Queue) ArchivableJobs(ctx context.Context, cutoff time.Time, limit int) ([]string, error) {
	const page = 500
	cut := cutoff.UnixMilli()
	var out []string
	for offset := int64(0); len(out) < limit; offset += page {
		ids, err := q.rdb.ZRangeByScore(ctx, keyJobs, &redis.ZRangeBy{
			Min: "-inf", Max: strconv.FormatInt(cut, 10), Offset: offset, Count: page}).Result()
		if err != nil {
			return out, fmt.Errorf("list jobs to archive: %w", err)
		}
		pipe := q.rdb.Pipeline()
		fields := make([]*redis.SliceCmd, len(ids))
		recorded := make([]*redis.BoolCmd, len(ids))
		for i, id := range ids {
			fields[i] = pipe.HMGet(ctx, jobKey(id), "state", "finished", "c_running", "npend")
			recorded[i] = pipe.HExists(ctx, keyArchived, id)
		}
		if len(ids) > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return out, fmt.Errorf("list jobs to archive: %w", err)
			}
		}
		for i, id := range ids {
			if recorded[i].Val() || archivable(fields[i].Val(), cut) {
				out = append(out, id)
				if len(out) == limit {
					break
				}
			}
		}
		if len(ids) < page {
			break
		}
	}
	return out, nil
}

// archivable reads HMGET state, finished, c_running, npend.
func archivable(v []any, cut int64) bool {
	s := make([]string, len(v))
	for i, x := range v {
		s[i], _ = x.(string)
	}
	switch s[0] {
	case JobCompleted, JobFailed, JobCanceled:
	default:
		return false
	}
	finished, err := strconv.ParseInt(s[1], 10, 64)
	if err != nil || finished > cut {
		return false
	}
	// A running task may still commit into the job; a pending
	// notification must be delivered first.
	return (s[2] == "" || s[2] == "0") && s[3] == ""
}

// JobVersion returns the job's "updated" value, which every transition
// changes. Read it before exporting a job: PurgeArchivedJob deletes nothing
// if the job changed since.
func (q *Queue) JobVersion(ctx context.Context, id string) (string, error) {
	v, err := q.rdb.HGet(ctx, jobKey(id), "updated").Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("%w: %q", ErrJobNotFound, id)
	}
	if err != nil {
		return "", fmt.Errorf("read job version: %w", err)
	}
	return v, nil
}

// RecordArchive writes where the job's export lives, so readers find the job
// once its keys are gone.
func (q *Queue) RecordArchive(ctx context.Context, id string, rec ArchiveRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("record archive of job %s: %w", id, err)
	}
	if err := q.rdb.HSet(ctx, keyArchived, id, b).Err(); err != nil {
		return fmt.Errorf("record archive of job %s: %w", id, err)
	}
	return nil
}

// LeaseArchive gives one archiver the job for ttl, so two sweeps running at
// once never export and purge the same job together (the later export
// could miss tasks the earlier purge already deleted).
func (q *Queue) LeaseArchive(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	ok, err := q.rdb.SetNX(ctx, jobPrefix(id)+"alock", 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("lease job %s for archiving: %w", id, err)
	}
	return ok, nil
}

// ReleaseArchive gives the lease back (a purge deletes it with the job).
func (q *Queue) ReleaseArchive(ctx context.Context, id string) error {
	return q.rdb.Del(ctx, jobPrefix(id)+"alock").Err()
}

// ArchiveRecordOf returns the archive record of a job, and false when the
// job was never archived.
func (q *Queue) ArchiveRecordOf(ctx context.Context, id string) (ArchiveRecord, bool, error) {
	b, err := q.rdb.HGet(ctx, keyArchived, id).Bytes()
	if errors.Is(err, redis.Nil) {
		return ArchiveRecord{}, false, nil
	}
	if err != nil {
		return ArchiveRecord{}, false, fmt.Errorf("read archive record of job %s: %w", id, err)
	}
	var rec ArchiveRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return ArchiveRecord{}, false, fmt.Errorf("decode archive record of job %s: %w", id, err)
	}
	return rec, true, nil
}

// PurgeArchivedJob deletes every key of an archived job, in short calls
// (rf_purge), then its index entry. It reports false, deleting nothing and
// dropping the archive record, when the job changed since the record's
// version (someone retried it meanwhile): the job stays in Redis and the
// stale export is replaced when it is archived again. Safe to repeat;
// callers hold the job's archive lease (LeaseArchive).
func (q *Queue) PurgeArchivedJob(ctx context.Context, id string) (bool, error) {
	rec, ok, err := q.ArchiveRecordOf(ctx, id)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("purge job %s: no archive record; archive it first", id)
	}
	for {
		res, err := q.rdb.FCall(ctx, "rf_purge", []string{jobKey(id)}, rec.Updated, dropChunk).Text()
		if err != nil && strings.Contains(err.Error(), "changed") {
			if err := q.rdb.HDel(ctx, keyArchived, id).Err(); err != nil {
				return false, fmt.Errorf("drop stale archive record of job %s: %w", id, err)
			}
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("purge job %s: %w", id, err)
		}
		if res == "done" {
			break
		}
	}
	if err := q.rdb.ZRem(ctx, keyJobs, id).Err(); err != nil {
		return false, fmt.Errorf("unindex job %s: %w", id, err)
	}
	return true, nil
}
