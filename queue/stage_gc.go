package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// dropChunk bounds the task hashes one rf_drop_stage or rf_purge call
// deletes, so each call stays far below the 10 ms per command budget (README,
// "How it works", No long commands).
const dropChunk = 500

func stagedKey(jobID string) string { return jobPrefix(jobID) + "staged" }

// DropAbandonedStages deletes the task hashes of the job's staged subtask
// sets whose attempt can no longer commit. Stage writes a large set before
// its parent commits; when that attempt fails, is handed back, is reclaimed
// or has its commit refused, nothing ever links the set and, without this,
// its hashes would stay in Redis for good. Sets of attempts still running
// are left alone. It returns how many task hashes it deleted.
func (q *Queue) DropAbandonedStages(ctx context.Context, jobID string) (int, error) {
	var fields []string
	if err := q.scanHash(ctx, stagedKey(jobID), func(field, _ string) error {
		fields = append(fields, field)
		return nil
	}); err != nil {
		return 0, fmt.Errorf("drop abandoned stages of job %s: %w", jobID, err)
	}
	total := 0
	for _, f := range fields {
		for {
			res, err := q.rdb.FCall(ctx, "rf_drop_stage", []string{jobKey(jobID)}, f, dropChunk).Slice()
			if err != nil {
				return total, fmt.Errorf("drop abandoned stage %s of job %s: %w", f, jobID, err)
			}
			if len(res) != 2 {
				return total, fmt.Errorf("drop abandoned stage %s of job %s: unexpected reply %v", f, jobID, res)
			}
			n, _ := res[1].(int64)
			total += int(n)
			if outcome, _ := res[0].(string); outcome != "more" {
				break
			}
		}
	}
	return total, nil
}

// DropAllAbandonedStages runs DropAbandonedStages for every job that has
// staged sets on record, for the sweep. It returns how many task hashes it
// deleted.
func (q *Queue) DropAllAbandonedStages(ctx context.Context) (int, error) {
	total := 0
	err := q.eachJobPage(ctx, func(ids []string) error {
		pipe := q.rdb.Pipeline()
		exists := make([]*redis.IntCmd, len(ids))
		for i, id := range ids {
			exists[i] = pipe.Exists(ctx, stagedKey(id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("find staged subtask sets: %w", err)
		}
		var errs []error
		for i, id := range ids {
			if exists[i].Val() == 0 {
				continue
			}
			// One job's failure does not keep the others' stages.
			n, err := q.DropAbandonedStages(ctx, id)
			total += n
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	return total, err
}

// eachJobPage calls fn with the ids of the job index, oldest first, a page
// at a time. Jobs indexed or removed meanwhile may be missed or seen twice:
// callers are periodic and idempotent.
func (q *Queue) eachJobPage(ctx context.Context, fn func(ids []string) error) error {
	const page = 500
	var start int64
	var errs []error
	for {
		ids, err := q.rdb.ZRange(ctx, keyJobs, start, start+page-1).Result()
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("list jobs: %w", err))...)
		}
		if len(ids) == 0 {
			return errors.Join(errs...)
		}
		start += int64(len(ids))
		if err := fn(ids); err != nil {
			if ctx.Err() != nil {
				return errors.Join(append(errs, err)...)
			}
			errs = append(errs, err)
		}
	}
}
