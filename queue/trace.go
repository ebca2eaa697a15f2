package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// SpanLineage is what a runner that traces reads to place an execution's
// span in its job's trace (workflows/tracing.go): the job's traceparent and
// the attempt of the parent task that submitted the executed task. A task
// runs only after its parent's result was committed, and a computed task
// never runs again, so the parent's "att" is the attempt that submitted it.
type SpanLineage struct {
	// TraceParent is the job's (job hash field "tp"); "" when the job has
	// none or was not asked for.
	TraceParent string
	// ParentAttempt is the parent's committing attempt; 0 for a root task,
	// when not asked for, or when the parent is gone.
	ParentAttempt int
}

// SpanLineage reads, in one round trip, the job's traceparent when
// withTraceParent is set and the attempt of task parent when parent is not
// negative. A job or task that is gone (archived) reads as empty.
func (q *Queue) SpanLineage(ctx context.Context, jobID string, parent int64, withTraceParent bool) (SpanLineage, error) {
	var out SpanLineage
	if !withTraceParent && parent < 0 {
		return out, nil
	}
	pipe := q.rdb.Pipeline()
	var tp, att *redis.StringCmd
	if withTraceParent {
		tp = pipe.HGet(ctx, jobKey(jobID), "tp")
	}
	if parent >= 0 {
		att = pipe.HGet(ctx, taskKey(jobID, parent), "att")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return out, fmt.Errorf("read span lineage of job %s: %w", jobID, err)
	}
	if tp != nil {
		out.TraceParent = tp.Val()
	}
	if att != nil {
		out.ParentAttempt, _ = strconv.Atoi(att.Val())
	}
	return out, nil
}
