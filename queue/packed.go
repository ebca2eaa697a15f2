package queue

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Task buckets (runfleet.lua, "Task buckets"): a computed task without
// children or dependents leaves its own hash for a field of a bucket hash of
// taskBucketSize tasks, which costs a fraction of a key. Readers ask for
// task hashes as before and fill the tasks they did not find from their
// buckets (fillPacked), so every listing sees both forms alike.

// taskBucketSize is BUCKET in runfleet.lua.
const taskBucketSize = 64

// packSep is SEP in runfleet.lua.
const packSep = "\x1f"

func bucketKey(id string, seq int64) string {
	return jobPrefix(id) + "tb:" + strconv.FormatInt(seq/taskBucketSize, 10)
}

func jobIdentsKey(id string) string { return jobPrefix(id) + "ids" }

// packedFields is the order of a bucket record's fields.
var packedFields = []string{"ident", "disp", "in", "att", "f", "mr", "opt", "err", "own", "tq", "ts", "te", "p", "ts1", "lost", "sd"}

// unpack turns a bucket record into the task's fields by name, as its hash
// held them; ok is false for a record that does not parse.
func unpack(rec string, created int64, idents map[string]string) (map[string]string, bool) {
	parts := strings.Split(rec, packSep)
	if len(parts) != len(packedFields) {
		return nil, false
	}
	id, ok := idents["#"+parts[0]]
	if !ok {
		return nil, false
	}
	ident := strings.Split(id, packSep)
	if len(ident) != 3 {
		return nil, false
	}
	rel := func(s string) (int64, bool) {
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	dq, ok1 := rel(parts[9])
	ds, ok2 := rel(parts[10])
	de, ok3 := rel(parts[11])
	if !ok1 || !ok2 || !ok3 {
		return nil, false
	}
	tq := created + dq
	ts := tq + ds
	f := map[string]string{"st": "computed", "nm": ident[0], "v": ident[1], "cl": ident[2],
		"tq": strconv.FormatInt(tq, 10), "ts": strconv.FormatInt(ts, 10), "te": strconv.FormatInt(ts+de, 10)}
	for i, name := range packedFields {
		switch name {
		case "ident", "tq", "ts", "te":
		default:
			if parts[i] != "" {
				f[name] = parts[i]
			}
		}
	}
	return f, true
}

// fillPacked fills vals[i] (the values of fields, whose first must be "st",
// read from the task hash of seqs[i]) from the task's bucket where the hash
// was missing. Tasks in neither stay missing.
func (q *Queue) fillPacked(ctx context.Context, jobID string, seqs []int64, fields []string, vals [][]any) error {
	byBucket := map[int64][]int{}
	var buckets []int64
	for i, v := range vals {
		if len(v) > 0 && v[0] != nil {
			continue
		}
		b := seqs[i] / taskBucketSize
		if _, ok := byBucket[b]; !ok {
			buckets = append(buckets, b)
		}
		byBucket[b] = append(byBucket[b], i)
	}
	if len(buckets) == 0 {
		return nil
	}
	pipe := q.rdb.Pipeline()
	created := pipe.HGet(ctx, jobKey(jobID), "created")
	idents := pipe.HGetAll(ctx, jobIdentsKey(jobID))
	cmds := make([]*redis.SliceCmd, len(buckets))
	for j, b := range buckets {
		idx := byBucket[b]
		names := make([]string, len(idx))
		for k, i := range idx {
			names[k] = strconv.FormatInt(seqs[i], 10)
		}
		cmds[j] = pipe.HMGet(ctx, bucketKey(jobID, b*taskBucketSize), names...)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return fmt.Errorf("read task buckets: %w", err)
	}
	if idents.Err() != nil {
		return fmt.Errorf("read task buckets: %w", idents.Err())
	}
	c, err := strconv.ParseInt(created.Val(), 10, 64)
	if err != nil {
		return nil // no job record: nothing was packed for it
	}
	for j, b := range buckets {
		for k, rec := range cmds[j].Val() {
			s, ok := rec.(string)
			if !ok {
				continue
			}
			f, ok := unpack(s, c, idents.Val())
			if !ok {
				continue
			}
			out := make([]any, len(fields))
			for n, name := range fields {
				if v, ok := f[name]; ok {
					out[n] = v
				}
			}
			vals[byBucket[b][k]] = out
		}
	}
	return nil
}
