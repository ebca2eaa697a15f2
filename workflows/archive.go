package workflows

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/queue"
)

// ErrJobArchived is returned when changing (retrying, canceling) a job that
// left Redis for the archive: archived jobs are read-only.
var ErrJobArchived = queue.ErrJobArchived

// JobArchive is the content of an archived job's object: zstd-compressed
// JSON under "jobs/<id>.json.zst" in the store. Tasks are those the job
// listed when it was archived, parents before children.
type JobArchive struct {
	Job   Job        `json:"job"`
	Tasks []TaskInfo `json:"tasks"`
	// Attempts are the tasks' attempts with their runners' contexts, by
	// task id, for tasks that started at least once.
	Attempts map[int64][]Attempt `json:"attempts,omitempty"`
	// Logs are the job's stored task log records, oldest first.
	Logs       []LogRecord `json:"logs,omitempty"`
	ArchivedAt time.Time   `json:"archived_at"`
}

// archiveKey is the object key of an archived job.
func archiveKey(id string) string { return "jobs/" + id + ".json.zst" }

// archiveBatch is how many jobs one listing hands to ArchiveJobs.
const archiveBatch = 500

// maxArchiveBytes bounds the decompressed size of one archive read back, so
// a corrupt or hostile object cannot exhaust memory.
const maxArchiveBytes = 1 << 30

// archiveLease bounds how long one sweep holds a job it archives; a sweep
// that dies holding it only delays that job.
const archiveLease = 10 * time.Minute

// ArchiveJobs moves finished jobs (completed, failed or canceled) whose
// finish is not later than cutoff out of Redis: each is exported to store
// as a JobArchive, the export's place (storeURL, which artifacts.OpenStore
// must be able to open again, and key) is recorded in Redis, and only then
// are the job's keys deleted. Jobs with a task still running or a
// notification not yet delivered wait for a later call. Jobs.Get and
// Jobs.Tasks find archived jobs through the record, read-only. The job's
// cache (JobCache) is not archived: it is deleted with the job.
//
// A crash at any point leaves each job in Redis or in the archive; calling
// again finishes the work. A job retried while it is being archived stays in
// Redis. It returns how many jobs it removed from Redis, and stops at the
// first job it could not archive.
func (c *Client) ArchiveJobs(ctx context.Context, store artifacts.Store, storeURL string, cutoff time.Time) (int, error) {
	if store == nil || storeURL == "" {
		return 0, errors.New("archive jobs: a store and its URL are required")
	}
	// Job caches are not archived: those in Redis leave with the job (rf_purge),
	// those in object stores are deleted last, and retried by the next call.
	defer c.deleteArchivedCaches(ctx)
	n := 0
	for {
		ids, err := c.q.ArchivableJobs(ctx, cutoff, archiveBatch)
		if err != nil {
			return n, err
		}
		batch := 0
		for _, id := range ids {
			done, err := c.archiveJob(ctx, store, storeURL, id, cutoff)
			if err != nil {
				return n, err
			}
			if done {
				n++
				batch++
			}
		}
		// Every id archived left the index, so the next listing starts with
		// jobs not seen yet; a batch that archived nothing (jobs another
		// sweep holds, or that changed) ends this pass.
		if len(ids) < archiveBatch || batch == 0 {
			return n, nil
		}
	}
}

// archiveJob archives one job, or finishes archiving it when a record shows
// an earlier call got as far as the export. It reports whether the job left
// Redis.
func (c *Client) archiveJob(ctx context.Context, store artifacts.Store, storeURL, id string, cutoff time.Time) (bool, error) {
	leased, err := c.q.LeaseArchive(ctx, id, archiveLease)
	if err != nil || !leased {
		return false, err // another sweep is archiving it
	}
	defer func() { _ = c.q.ReleaseArchive(context.WithoutCancel(ctx), id) }()
	_, recorded, err := c.q.ArchiveRecordOf(ctx, id)
	if err != nil {
		return false, err
	}
	if !recorded {
		// The version is read first: a change during the export makes
		// the purge refuse, so a stale export never replaces the job.
		version, err := c.q.JobVersion(ctx, id)
		if errors.Is(err, queue.ErrJobNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		job, err := c.q.GetJob(ctx, id)
		if errors.Is(err, queue.ErrJobNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !Finished(job.State) || job.FinishedAt.After(cutoff) {
			return false, nil
		}
		tasks, err := c.q.JobTasks(ctx, id)
		if err != nil {
			return false, err
		}
		// Every committed task is counted in exactly one state: an export
		// with fewer tasks than that missed some, and must not be stored.
		var counted int64
		for _, n := range job.TaskCounts {
			counted += n
		}
		if int64(len(tasks)) != counted {
			return false, fmt.Errorf("archive job %s: read %d tasks but the job counts %d; not archived", id, len(tasks), counted)
		}
		attempts, err := c.q.JobAttempts(ctx, id, tasks)
		if err != nil {
			return false, err
		}
		logs, err := c.allJobLogs(ctx, id)
		if err != nil {
			return false, fmt.Errorf("archive job %s: %w", id, err)
		}
		now := time.Now().UTC()
		body, err := encodeArchive(JobArchive{Job: job, Tasks: tasks, Attempts: attempts, Logs: logs, ArchivedAt: now})
		if err != nil {
			return false, fmt.Errorf("archive job %s: %w", id, err)
		}
		key := archiveKey(id)
		if err := store.Put(ctx, key, bytes.NewReader(body)); err != nil {
			return false, fmt.Errorf("archive job %s: %w", id, err)
		}
		rec := queue.ArchiveRecord{URL: storeURL, Key: key, ArchivedAt: now, Updated: version}
		if err := c.q.RecordArchive(ctx, id, rec); err != nil {
			return false, err
		}
	}
	// The job's object-store caches are scheduled for deletion before the
	// purge removes the record of them.
	if err := c.q.CacheGCJob(ctx, id); err != nil {
		return false, err
	}
	purged, err := c.q.PurgeArchivedJob(ctx, id)
	if err != nil {
		return false, err
	}
	if !purged {
		c.logger.Info("job changed while it was archived; it stays in Redis", slog.String("job_id", id))
	}
	return purged, nil
}

func encodeArchive(a JobArchive) ([]byte, error) {
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	if err := json.NewEncoder(enc).Encode(a); err != nil {
		_ = enc.Close()
		return nil, fmt.Errorf("encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	return buf.Bytes(), nil
}

func decodeArchive(r io.Reader) (JobArchive, error) {
	var a JobArchive
	dec, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return a, fmt.Errorf("decompress: %w", err)
	}
	defer dec.Close()
	lr := &io.LimitedReader{R: dec, N: maxArchiveBytes + 1}
	if err := json.NewDecoder(lr).Decode(&a); err != nil {
		if lr.N <= 0 {
			return a, fmt.Errorf("decode: larger than %d bytes decompressed", maxArchiveBytes)
		}
		return a, fmt.Errorf("decode: %w", err)
	}
	return a, nil
}

// archived reads an archived job back, or reports false when the job was
// never archived.
func (c *Client) archived(ctx context.Context, id string) (JobArchive, bool, error) {
	rec, ok, err := c.q.ArchiveRecordOf(ctx, id)
	if err != nil || !ok {
		return JobArchive{}, false, err
	}
	store, err := artifacts.OpenStore(rec.URL)
	if err != nil {
		return JobArchive{}, false, fmt.Errorf("read archived job %s: %w", id, err)
	}
	r, err := store.Get(ctx, rec.Key)
	if err != nil {
		return JobArchive{}, false, fmt.Errorf("read archived job %s: %w", id, err)
	}
	defer r.Close()
	a, err := decodeArchive(r)
	if err != nil {
		return JobArchive{}, false, fmt.Errorf("read archived job %s from %s: %w", id, rec.Key, err)
	}
	a.Job.Archived = true
	return a, true, nil
}

// getJob returns the job from Redis or, once it left Redis, from its archive.
// Redis comes first: it holds every job that is not archived, and a job being
// purged keeps its record there until the last step.
func (jc *JobClient) getJob(ctx context.Context, id string) (Job, error) {
	j, err := jc.c.q.GetJob(ctx, id)
	if !errors.Is(err, queue.ErrJobNotFound) {
		return j, err
	}
	a, ok, aerr := jc.c.archived(ctx, id)
	if aerr != nil {
		return Job{}, aerr
	}
	if !ok {
		return Job{}, err
	}
	return a.Job, nil
}

// jobTasks lists the job's tasks from the archive once the job has an
// archive record, else from Redis. The record comes first because the purge
// deletes task hashes before the job hash: a listing from Redis then could be
// partial, while the archive has them all.
func (jc *JobClient) jobTasks(ctx context.Context, id string) ([]TaskInfo, error) {
	a, ok, err := jc.c.archived(ctx, id)
	if err != nil {
		return nil, err
	}
	if ok {
		return a.Tasks, nil
	}
	return jc.c.q.JobTasks(ctx, id)
}

// unlessArchived turns "job not found" from a change to a job into
// ErrJobArchived when the job left Redis for the archive.
func (jc *JobClient) unlessArchived(ctx context.Context, id string, err error) error {
	if !errors.Is(err, queue.ErrJobNotFound) {
		return err
	}
	if _, ok, aerr := jc.c.q.ArchiveRecordOf(ctx, id); aerr == nil && ok {
		return fmt.Errorf("%w: %q", ErrJobArchived, id)
	}
	return err
}
