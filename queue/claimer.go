package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Claimed is a task handed to a runner.
type Claimed struct {
	JobID   string
	Seq     int64
	Task    Identifier
	Input   []byte
	Attempt int
	// Claimed is when the claim's reply arrived.
	Claimed time.Time
	// Parent is the seq of the task that submitted this one, -1 for a
	// job's root task.
	Parent int64
	// Hint is the stream entry (or part of one) the task was claimed from,
	// pending until the result is committed. An entry naming several tasks
	// is acknowledged once all of them are (see Hint).
	Hint Hint
}

// Claim turns hints into held tasks with one rf_claim per job. A hint whose
// task is handed out stays pending in the stream until the task's result is
// committed (see Ack): if the runner dies first, its pending hints show what
// it held. Whole hints of which no task was handed out (stale, held for a
// stopped job, skipped) are acknowledged at once; parts of an entry are left
// to the caller, who knows what else of the entry it holds. Hints of a job
// whose claim call failed stay pending and unacknowledged, so they are
// claimed again later, never lost.
func (q *Queue) Claim(ctx context.Context, owner string, hints []Hint) ([]Claimed, error) {
	if len(hints) == 0 {
		return nil, nil
	}
	res, err := q.CommitAndClaim(ctx, owner, Commit{Claims: hints})
	var done []Hint
	for _, h := range res.Stale {
		if h.Whole() {
			done = append(done, h)
		}
	}
	if aerr := q.Ack(ctx, done); aerr != nil && err == nil {
		err = aerr
	}
	return res.Claimed, err
}

// matchHints gives each handed-out task the hint (or part) naming it, which
// stays pending until the result is committed, and returns the hints of
// which no task was handed out (stale, duplicates, skipped, malformed).
// Hints whose call failed (failed holds their indexes) are in neither: they
// stay pending, to be claimed again.
func matchHints(out []Claimed, hints []Hint, failed map[int]bool) (stale []Hint) {
	type key struct {
		job string
		seq int64
	}
	idx := make(map[key]int, len(out))
	for i, c := range out {
		idx[key{c.JobID, c.Seq}] = i
	}
	for i, h := range hints {
		if h.Seq < 0 {
			stale = append(stale, h)
			continue
		}
		if failed[i] {
			continue
		}
		used := false
		for seq := h.Seq; seq < h.Seq+h.N; seq++ {
			if i, ok := idx[key{h.JobID, seq}]; ok && out[i].Hint.ID == "" {
				out[i].Hint = h
				used = true
			}
		}
		if !used {
			stale = append(stale, h)
		}
	}
	return stale
}

// appendClaimed appends the tasks of job that rf_claim handed out: rows
// holds seq, name, version, input, attempt and parent seq per task.
func appendClaimed(out []Claimed, job string, rows []any) []Claimed {
	now := time.Now()
	// The tasks of one claim are mostly of one name and version: parse
	// each pair once (ParseIdentifier runs a regular expression).
	var lastName, lastVersion string
	var lastID Identifier
	var lastErr error = errors.New("none parsed yet")
	for k := 0; k+5 < len(rows); k += 6 {
		seq, _ := rows[k].(string)
		name, _ := rows[k+1].(string)
		version, _ := rows[k+2].(string)
		input, _ := rows[k+3].(string)
		att, _ := rows[k+4].(int64)
		parent := int64(-1)
		if p, _ := rows[k+5].(string); p != "" {
			parent, _ = strconv.ParseInt(p, 10, 64)
		}
		n, _ := strconv.ParseInt(seq, 10, 64)
		if name != lastName || version != lastVersion || lastErr != nil {
			lastName, lastVersion = name, version
			lastID, lastErr = ParseIdentifier(name, version)
		}
		id := lastID
		if lastErr != nil {
			id = Identifier{Name: name}
		}
		out = append(out, Claimed{JobID: job, Seq: n, Task: id, Input: []byte(input), Attempt: int(att), Parent: parent, Claimed: now})
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
	pipe := q.rdb.Pipeline()
	queueAcks(ctx, pipe, hints)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("acknowledge task hints: %w", err)
	}
	return nil
}

// queueAcks adds one XACK per stream for hints to pipe.
func queueAcks(ctx context.Context, pipe redis.Pipeliner, hints []Hint) (cmds []*redis.IntCmd) {
	byStream := map[string][]string{}
	var order []string
	for _, h := range hints {
		if _, ok := byStream[h.Stream]; !ok {
			order = append(order, h.Stream)
		}
		byStream[h.Stream] = append(byStream[h.Stream], h.ID)
	}
	for _, s := range order {
		cmds = append(cmds, pipe.XAck(ctx, s, Group, byStream[s]...))
	}
	return cmds
}
