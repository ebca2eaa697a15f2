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

// Task logs: the records tasks write to workflows.Logger(ctx), kept per job
// in the stream rf:{j:<id>}:logs so that `runfleet job logs` and the web
// console can show what a failed task said. Each entry has two fields: "t",
// the task seq (-1 for a job-level marker), and "r", the record as JSON.
// Entry ids order the records and serve as read cursors.
//
// Storage is bounded three ways: a record's message and its attributes are
// each cut to LogTextLimit bytes (never refused), an execution stores at
// most its runner's per-task cap (enforced by the runner), and a job at most
// the per-job cap, which rf_log enforces atomically with one marker record
// when it is first reached. The stream goes with the job: rf_purge removes
// it, and the archive export carries the records.

// LogRecord is one stored log record of a job.
type LogRecord struct {
	ID      string         `json:"id"` // stream entry id, usable as a cursor
	Time    time.Time      `json:"time"`
	TaskID  int64          `json:"task_id"`        // -1 for a job-level marker
	Task    string         `json:"task,omitempty"` // task name
	Attempt int            `json:"attempt,omitempty"`
	Runner  string         `json:"runner,omitempty"`
	Level   string         `json:"level"` // DEBUG INFO WARN ERROR
	Message string         `json:"msg"`
	Attrs   map[string]any `json:"attrs,omitempty"`
	TraceID string         `json:"trace_id,omitempty"`
	SpanID  string         `json:"span_id,omitempty"`
	// Truncated marks a record that was shortened to LogTextLimit (its text
	// ends with "…[truncated N bytes]"), or a marker record that stands for
	// records dropped past a cap (its message says which cap).
	Truncated bool `json:"truncated,omitempty"`
}

// LogQuery selects the records JobLogs returns.
type LogQuery struct {
	// Task is the task seq whose records to return; -1 returns every
	// task's. Job-level markers (TaskID -1) are returned either way. Note
	// that the zero value selects the root task.
	Task int64
	// After is the entry id to read after; "" reads from the start.
	After string
	// Limit is the most records returned. Default (0) 1000, at most 10000.
	Limit int
}

// LogTextLimit is the most bytes a stored record's message keeps, and the
// most its attributes keep (as JSON, roughly) besides: longer text is cut
// and ends with "…[truncated N bytes]".
const LogTextLimit = 16 << 10

// logAttrStringLimit is what each string attribute is cut to when the
// attributes together are over LogTextLimit, so one huge value does not
// cost the others.
const logAttrStringLimit = 1 << 10

// Bounds of one rf_log call, which keep it well under a millisecond.
const (
	logCallRecords = 256
	logCallBytes   = 1 << 20
)

const (
	defaultLogLimit = 1000
	maxLogLimit     = 10000
	logReadPage     = 1000 // entries one XRANGE reads
)

func logsKey(id string) string { return jobPrefix(id) + "logs" }

// Clip cuts the record's message and attributes to LogTextLimit, setting
// Truncated when it cut anything, and returns the bytes the record's text
// takes: its message plus an estimate of its attributes as JSON. Attribute
// values must be what encoding/json decodes into an any (strings, float64,
// bools, nil, []any, map[string]any) or integers.
func (r *LogRecord) Clip() int {
	if len(r.Message) > LogTextLimit {
		r.Message = CapText(r.Message, LogTextLimit)
		r.Truncated = true
	}
	size := attrsSize(r.Attrs)
	if size > LogTextLimit {
		r.Truncated = true
		cutStrings(r.Attrs, logAttrStringLimit)
		if size = attrsSize(r.Attrs); size > LogTextLimit {
			// Too many attributes even so: keep them as text, cut.
			b, err := json.Marshal(r.Attrs)
			if err != nil {
				b = []byte(fmt.Sprint(r.Attrs))
			}
			r.Attrs = map[string]any{"attrs": CapText(string(b), LogTextLimit)}
			size = attrsSize(r.Attrs)
		}
	}
	return len(r.Message) + size
}

// cutStrings cuts every string in v longer than limit, at any depth.
func cutStrings(v any, limit int) any {
	switch x := v.(type) {
	case string:
		return CapText(x, limit)
	case map[string]any:
		for k, e := range x {
			x[k] = cutStrings(e, limit)
		}
	case []any:
		for i, e := range x {
			x[i] = cutStrings(e, limit)
		}
	}
	return v
}

// attrsSize estimates the JSON size of attribute values without encoding
// them (escapes aside).
func attrsSize(v any) int {
	switch x := v.(type) {
	case nil:
		return 4
	case string:
		return len(x) + 2
	case bool:
		return 5
	case map[string]any:
		n := 2
		for k, e := range x {
			n += len(k) + 4 + attrsSize(e)
		}
		return n
	case []any:
		n := 2
		for _, e := range x {
			n += 1 + attrsSize(e)
		}
		return n
	default: // numbers
		return 20
	}
}

// LogBatch is records of one job to append.
type LogBatch struct {
	JobID   string
	Records []LogRecord
}

// AppendLogs appends batches of records to their jobs' logs in one round
// trip (rf_log), each record clipped (LogRecord.Clip). A job stores at most
// maxJobBytes of record JSON: the records past it are dropped, and the first
// call that drops some stores one marker record instead (TaskID -1,
// Truncated), written by runner. Records of jobs that are gone or being
// archived are dropped without a marker. It returns how many records were
// dropped either way.
func (q *Queue) AppendLogs(ctx context.Context, batches []LogBatch, maxJobBytes int, runner string) (dropped int, err error) {
	marker, _ := json.Marshal(LogRecord{Time: time.Now().UTC(), TaskID: -1, Runner: runner, Level: "WARN",
		Message:   fmt.Sprintf("this job's log reached its cap of %d bytes; later records are not stored", maxJobBytes),
		Truncated: true})
	pipe := q.rdb.Pipeline()
	type call struct {
		cmd *redis.Cmd
		n   int
	}
	var calls []call
	for _, b := range batches {
		args := []any{maxJobBytes, marker}
		bytes := 0
		flush := func() {
			if len(args) > 2 {
				calls = append(calls, call{pipe.FCall(ctx, "rf_log", []string{jobKey(b.JobID)}, args...), (len(args) - 2) / 2})
			}
			args, bytes = []any{maxJobBytes, marker}, 0
		}
		for i := range b.Records {
			r := b.Records[i]
			r.ID = ""
			r.Clip()
			data, err := json.Marshal(r)
			if err != nil {
				// Only odd attribute values fail; keep the record as text.
				r.Attrs = map[string]any{"attrs": CapText(fmt.Sprint(r.Attrs), LogTextLimit)}
				data, _ = json.Marshal(r)
			}
			if len(args) > 2 && ((len(args)-2)/2 >= logCallRecords || bytes+len(data) > logCallBytes) {
				flush()
			}
			args = append(args, r.TaskID, data)
			bytes += len(data)
		}
		flush()
	}
	if len(calls) == 0 {
		return 0, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		// Count what the calls that failed carried as dropped.
		for _, c := range calls {
			if c.cmd.Err() != nil {
				dropped += c.n
			}
		}
		return dropped, fmt.Errorf("append task logs: %w", err)
	}
	for _, c := range calls {
		n, _ := c.cmd.Int()
		if n < 0 {
			n = c.n // the job is gone
		}
		dropped += n
	}
	return dropped, nil
}

// JobLogs returns a job's log records after p.After, oldest first, at most
// p.Limit, of task p.Task (or every task). The last record's ID is the
// cursor of the next page. An unknown job is ErrJobNotFound; a job without
// records returns none.
func (q *Queue) JobLogs(ctx context.Context, jobID string, p LogQuery) ([]LogRecord, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = defaultLogLimit
	}
	limit = min(limit, maxLogLimit)
	start := "-"
	if p.After != "" {
		if !validEntryID(p.After) {
			return nil, fmt.Errorf("read job logs: cursor %q is not a log entry id (like 1718000000000-0)", p.After)
		}
		start = "(" + p.After
	}
	var out []LogRecord
	first := true
	for len(out) < limit {
		// Pages of logReadPage entries keep each XRANGE short, until
		// enough records (of the task) are found.
		page := int64(logReadPage)
		if p.Task < 0 {
			page = int64(min(limit-len(out), logReadPage))
		}
		var msgs []redis.XMessage
		if first {
			pipe := q.rdb.Pipeline()
			ex := pipe.Exists(ctx, jobKey(jobID))
			xr := pipe.XRangeN(ctx, logsKey(jobID), start, "+", page)
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return nil, fmt.Errorf("read job logs: %w", err)
			}
			msgs = xr.Val()
			if ex.Val() == 0 && len(msgs) == 0 {
				return nil, fmt.Errorf("%w: %q", ErrJobNotFound, jobID)
			}
			first = false
		} else {
			var err error
			if msgs, err = q.rdb.XRangeN(ctx, logsKey(jobID), start, "+", page).Result(); err != nil {
				return nil, fmt.Errorf("read job logs: %w", err)
			}
		}
		for _, m := range msgs {
			if p.Task >= 0 {
				if t, _ := m.Values["t"].(string); t != strconv.FormatInt(p.Task, 10) && t != "-1" {
					continue
				}
			}
			out = append(out, decodeLogEntry(m))
			if len(out) == limit {
				break
			}
		}
		if int64(len(msgs)) < page {
			break
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	return out, nil
}

// WaitJobLogs blocks up to block (at least 1 ms) for records of a job after
// the entry id after ("" for all) and returns them, oldest first; none when
// the time passes. It does not check that the job exists. A blocked call
// holds one connection of the client's pool and does not end early when
// ctx is canceled, so keep block short (a second or so).
func (q *Queue) WaitJobLogs(ctx context.Context, jobID string, after string, block time.Duration) ([]LogRecord, error) {
	if after == "" {
		after = "0-0"
	} else if !validEntryID(after) {
		return nil, fmt.Errorf("wait for job logs: cursor %q is not a log entry id (like 1718000000000-0)", after)
	}
	res, err := q.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{logsKey(jobID), after},
		Count: defaultLogLimit, Block: max(block, time.Millisecond)}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wait for job logs: %w", err)
	}
	var out []LogRecord
	for _, s := range res {
		for _, m := range s.Messages {
			out = append(out, decodeLogEntry(m))
		}
	}
	return out, nil
}

// decodeLogEntry reads a stream entry written by rf_log; an entry that
// does not decode comes back as an ERROR record saying so rather than
// hiding the rest.
func decodeLogEntry(m redis.XMessage) LogRecord {
	var r LogRecord
	raw, _ := m.Values["r"].(string)
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t, _ := strconv.ParseInt(fmt.Sprint(m.Values["t"]), 10, 64)
		r = LogRecord{TaskID: t, Level: "ERROR", Message: "stored log record does not decode: " + err.Error()}
	}
	r.ID = m.ID
	return r
}

// SelectLogs applies p to records held in memory (an archived job's), as
// JobLogs applies it to the stream.
func SelectLogs(recs []LogRecord, p LogQuery) []LogRecord {
	limit := p.Limit
	if limit <= 0 {
		limit = defaultLogLimit
	}
	limit = min(limit, maxLogLimit)
	var out []LogRecord
	for _, r := range recs {
		if p.After != "" && !entryAfter(r.ID, p.After) {
			continue
		}
		if p.Task >= 0 && r.TaskID != p.Task && r.TaskID != -1 {
			continue
		}
		out = append(out, r)
		if len(out) == limit {
			break
		}
	}
	return out
}

// entryAfter reports whether stream entry id a comes after b.
func entryAfter(a, b string) bool {
	ams, aseq, _ := strings.Cut(a, "-")
	bms, bseq, _ := strings.Cut(b, "-")
	am, _ := strconv.ParseUint(ams, 10, 64)
	bm, _ := strconv.ParseUint(bms, 10, 64)
	if am != bm {
		return am > bm
	}
	as, _ := strconv.ParseUint(aseq, 10, 64)
	bs, _ := strconv.ParseUint(bseq, 10, 64)
	return as > bs
}

// validEntryID reports whether s looks like a stream entry id "ms-seq".
func validEntryID(s string) bool {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil
}
