package queue

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Claimed is a task handed to a runner.
type Claimed struct {
	JobID   string
	Seq     int64
	Task    Identifier
	Input   []byte
	Attempt int
	// Hint is the stream entry the task was claimed from, pending until the
	// result is committed; Ack it then.
	Hint Hint
}

// Claim turns hints into held tasks with one rf_claim per job. A hint whose
// task is handed out stays pending in the stream until the task's result is
// committed (see Ack): if the runner dies first, its pending hints show what
// it held. Other hints (stale, held for a stopped job, skipped) are
// acknowledged at once. Hints of a job whose claim call failed stay pending
// and unacknowledged, so they are claimed again later, never lost.
func (q *Queue) Claim(ctx context.Context, owner string, hints []Hint) ([]Claimed, error) {
	if len(hints) == 0 {
		return nil, nil
	}
	byJob := map[string][]any{}
	var jobs []string
	var done []Hint // hints to acknowledge now
	for _, h := range hints {
		if h.Seq < 0 {
			done = append(done, h)
			continue
		}
		if _, ok := byJob[h.JobID]; !ok {
			jobs = append(jobs, h.JobID)
			byJob[h.JobID] = []any{owner, nowMS()}
		}
		byJob[h.JobID] = append(byJob[h.JobID], h.Seq)
	}
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(jobs))
	for i, j := range jobs {
		cmds[i] = pipe.FCall(ctx, "rf_claim", []string{jobKey(j)}, byJob[j]...)
	}
	_, _ = pipe.Exec(ctx)
	var out []Claimed
	var firstErr error
	failed := map[string]bool{}
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			failed[jobs[i]] = true
			if firstErr == nil {
				firstErr = fmt.Errorf("claim tasks: %w", err)
			}
			continue
		}
		rows, _ := c.Val().([]any)
		if len(rows) == 0 {
			continue
		}
		if pub := toStrings(rows[0]); len(pub) > 0 {
			if err := q.Publish(ctx, jobs[i], pub); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		out = appendClaimed(out, jobs[i], rows[1:])
	}
	// Match each handed-out task to one of its hints; that hint stays
	// pending until the result is committed.
	type key struct {
		job string
		seq int64
	}
	idx := make(map[key]int, len(out))
	for i, c := range out {
		idx[key{c.JobID, c.Seq}] = i
	}
	for _, h := range hints {
		if h.Seq < 0 || failed[h.JobID] {
			continue
		}
		if i, ok := idx[key{h.JobID, h.Seq}]; ok && out[i].Hint.ID == "" {
			out[i].Hint = h
			continue
		}
		done = append(done, h)
	}
	if err := q.Ack(ctx, done); err != nil && firstErr == nil {
		firstErr = err
	}
	return out, firstErr
}

// appendClaimed appends the tasks of job that rf_claim handed out: rows
// holds seq, name, version, input and attempt per task.
func appendClaimed(out []Claimed, job string, rows []any) []Claimed {
	for k := 0; k+4 < len(rows); k += 5 {
		seq, _ := rows[k].(string)
		name, _ := rows[k+1].(string)
		version, _ := rows[k+2].(string)
		input, _ := rows[k+3].(string)
		att, _ := rows[k+4].(int64)
		n, _ := strconv.ParseInt(seq, 10, 64)
		id, err := ParseIdentifier(name, version)
		if err != nil {
			id = Identifier{Name: name}
		}
		out = append(out, Claimed{JobID: job, Seq: n, Task: id, Input: []byte(input), Attempt: int(att)})
	}
	return out
}

// Ack acknowledges hints whose work is done (or that needed none).
// Acknowledged entries are trimmed in bulk by TrimStreams, far cheaper for
// Redis than an XDEL per entry.
func (q *Queue) Ack(ctx context.Context, hints []Hint) error {
	if len(hints) == 0 {
		return nil
	}
	byStream := map[string][]string{}
	for _, h := range hints {
		byStream[h.Stream] = append(byStream[h.Stream], h.ID)
	}
	pipe := q.rdb.Pipeline()
	for s, ids := range byStream {
		pipe.XAck(ctx, s, Group, ids...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("acknowledge task hints: %w", err)
	}
	return nil
}
