package queue

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Large task inputs (workflows' payload store) live in an object store; the
// task's input field then holds a PayloadRef instead of JSON. Inline inputs
// are JSON objects and so always start with '{': a reference starts with
// '@' and can never be mistaken for one.

// PayloadRef names an input kept in the payload store by its content.
type PayloadRef struct {
	SHA256 string `json:"sha256"` // lower-case hex
	Bytes  int64  `json:"bytes"`
}

const payloadRefPrefix = "@sha256:"

// String is the reference as stored in a task's input field:
// "@sha256:<hex>:<bytes>".
func (r PayloadRef) String() string {
	return payloadRefPrefix + r.SHA256 + ":" + strconv.FormatInt(r.Bytes, 10)
}

// ParsePayloadRef reads a task input field: ok is false for an inline input.
// A field that starts like a reference but is malformed is an error.
func ParsePayloadRef(input []byte) (PayloadRef, bool, error) {
	if len(input) == 0 || input[0] != '@' {
		return PayloadRef{}, false, nil
	}
	s, found := strings.CutPrefix(string(input), payloadRefPrefix)
	digest, size, found2 := strings.Cut(s, ":")
	n, err := strconv.ParseInt(size, 10, 64)
	if !found || !found2 || err != nil || n < 0 || !IsSHA256Hex(digest) {
		return PayloadRef{}, false, fmt.Errorf("malformed input payload reference %q", input)
	}
	return PayloadRef{SHA256: digest, Bytes: n}, true, nil
}

// IsSHA256Hex reports whether s is a SHA-256 digest in lower-case hex.
func IsSHA256Hex(s string) bool {
	if len(s) != 64 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// keyPayloadPending is a sorted set of "<job id> <url>" scored by a unix ms
// deadline: payloads uploaded for a job that a submitter was creating. The
// submitter records the job's use of the store (UseCache) once the job
// exists and drops its entry; an entry past its deadline is a submitter
// that died in between, settled by the archive sweep.
const keyPayloadPending = "rf:payloadpending"

// PayloadUploadPending records, before the first upload, that job id (not
// yet submitted) may get payloads in the store at url.
func (q *Queue) PayloadUploadPending(ctx context.Context, id, url string, deadline time.Time) error {
	err := q.rdb.ZAdd(ctx, keyPayloadPending, redis.Z{Score: float64(deadline.UnixMilli()), Member: id + " " + url}).Err()
	if err != nil {
		return fmt.Errorf("record payload upload of job %s: %w", id, err)
	}
	return nil
}

// PayloadUploadSettled drops the entry PayloadUploadPending wrote.
func (q *Queue) PayloadUploadSettled(ctx context.Context, id, url string) error {
	if err := q.rdb.ZRem(ctx, keyPayloadPending, id+" "+url).Err(); err != nil {
		return fmt.Errorf("settle payload upload of job %s: %w", id, err)
	}
	return nil
}

// PayloadPendingEntry is an upload whose submitter did not settle it.
type PayloadPendingEntry struct {
	JobID string
	URL   string
	// JobExists: the job was created, so the store's use is recorded with
	// it (UseCache); otherwise its payloads are orphans to delete.
	JobExists bool
}

// PayloadUploadsExpired returns up to limit entries past their deadline.
func (q *Queue) PayloadUploadsExpired(ctx context.Context, now time.Time, limit int) ([]PayloadPendingEntry, error) {
	members, err := q.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: keyPayloadPending, Start: "-inf",
		Stop: strconv.FormatInt(now.UnixMilli(), 10), ByScore: true, Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("read unsettled payload uploads: %w", err)
	}
	entries, err := q.jobURLMembers(ctx, members, func(pipe redis.Pipeliner, m string) { pipe.ZRem(ctx, keyPayloadPending, m) })
	if err != nil {
		return nil, fmt.Errorf("read unsettled payload uploads: %w", err)
	}
	out := make([]PayloadPendingEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, PayloadPendingEntry{JobID: e.jobID, URL: e.url, JobExists: e.jobExists})
	}
	return out, nil
}
