package queue

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func (b *bundle) submitJob(t *testing.T, id string) {
	t.Helper()
	require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: id, Name: id, Cluster: "c", Task: b.parent, Input: []byte("{}")}))
}

// logTime is a fixed time: records of the same text encode to one size.
var logTime = time.Date(2025, 6, 1, 12, 0, 0, 123e6, time.UTC)

func logRecords(task int64, n int, msg string) []LogRecord {
	out := make([]LogRecord, n)
	for i := range out {
		out[i] = LogRecord{Time: logTime, TaskID: task, Task: "Parent", Attempt: 1, Runner: "r1",
			Level: "INFO", Message: fmt.Sprintf("%s %d", msg, i)}
	}
	return out
}

// Batches of several jobs go in one call; pages and the task filter read
// them back in order, with cursors.
func TestAppendAndReadJobLogs(t *testing.T) {
	b := setup(t)
	b.submitJob(t, "a")
	b.submitJob(t, "b")
	// More than one rf_log call's worth for job a, tasks 0 and 1 interleaved.
	var recs []LogRecord
	for i := range 600 {
		recs = append(recs, LogRecord{TaskID: int64(i % 2), Level: "INFO", Message: fmt.Sprintf("m %d", i)})
	}
	dropped, err := b.q.AppendLogs(b.ctx, []LogBatch{{JobID: "a", Records: recs},
		{JobID: "b", Records: logRecords(0, 2, "b")}}, 1<<20, "r1")
	require.NoError(t, err)
	require.Zero(t, dropped)

	all, err := b.q.JobLogs(b.ctx, "a", LogQuery{Task: -1, Limit: 10000})
	require.NoError(t, err)
	require.Len(t, all, 600)
	for i, r := range all {
		require.Equal(t, fmt.Sprintf("m %d", i), r.Message)
	}
	page, err := b.q.JobLogs(b.ctx, "a", LogQuery{Task: 1, Limit: 100})
	require.NoError(t, err)
	require.Len(t, page, 100)
	require.Equal(t, "m 1", page[0].Message)
	next, err := b.q.JobLogs(b.ctx, "a", LogQuery{Task: 1, After: page[99].ID})
	require.NoError(t, err)
	require.Len(t, next, 200)
	require.Equal(t, "m 201", next[0].Message)
	require.Equal(t, next, SelectLogs(all, LogQuery{Task: 1, After: page[99].ID}), "SelectLogs reads like JobLogs")
	def, err := b.q.JobLogs(b.ctx, "a", LogQuery{Task: -1})
	require.NoError(t, err)
	require.Len(t, def, 600)
	bs, err := b.q.JobLogs(b.ctx, "b", LogQuery{Task: -1})
	require.NoError(t, err)
	require.Len(t, bs, 2)

	// Waiting returns what is newer than the cursor, or nothing in time.
	got, err := b.q.WaitJobLogs(b.ctx, "b", bs[0].ID, 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, bs[1:], got)
	got, err = b.q.WaitJobLogs(b.ctx, "b", bs[1].ID, 10*time.Millisecond)
	require.NoError(t, err)
	require.Empty(t, got)

	none, err := b.q.JobLogs(b.ctx, "c-job", LogQuery{Task: -1})
	require.ErrorIs(t, err, ErrJobNotFound)
	require.Nil(t, none)
}

// The job's cap holds across calls and runners: one marker where it was
// first reached, nothing after it, and records of a gone job are dropped.
func TestJobLogCapWritesOneMarker(t *testing.T) {
	b := setup(t)
	b.submitJob(t, "j")
	one, _ := json.Marshal(LogRecord{Time: logTime, TaskID: 0, Task: "Parent", Attempt: 1, Runner: "r1",
		Level: "INFO", Message: "x 0"})
	perRecord := len(one) // every record below encodes to this size
	limit := 10*perRecord + perRecord/2
	dropped, err := b.q.AppendLogs(b.ctx, []LogBatch{{JobID: "j", Records: logRecords(0, 6, "x")}}, limit, "r1")
	require.NoError(t, err)
	require.Zero(t, dropped)
	dropped, err = b.q.AppendLogs(b.ctx, []LogBatch{{JobID: "j", Records: logRecords(0, 6, "x")}}, limit, "r2")
	require.NoError(t, err)
	require.Equal(t, 2, dropped)
	dropped, err = b.q.AppendLogs(b.ctx, []LogBatch{{JobID: "j", Records: logRecords(0, 1, "y")}}, limit, "r1")
	require.NoError(t, err)
	require.Equal(t, 1, dropped, "nothing is stored after the marker, even what would fit")

	recs, err := b.q.JobLogs(b.ctx, "j", LogQuery{Task: -1})
	require.NoError(t, err)
	require.Len(t, recs, 11)
	m := recs[10]
	require.True(t, m.Truncated)
	require.Equal(t, int64(-1), m.TaskID)
	require.Equal(t, "r2", m.Runner, "the runner whose records reached the cap")
	require.Equal(t, "WARN", m.Level)
	require.Contains(t, m.Message, fmt.Sprintf("cap of %d bytes", limit))

	dropped, err = b.q.AppendLogs(b.ctx, []LogBatch{{JobID: "gone", Records: logRecords(0, 3, "z")}}, limit, "r1")
	require.NoError(t, err)
	require.Equal(t, 3, dropped)
	require.Zero(t, b.rdb.Exists(b.ctx, logsKey("gone")).Val(), "no stream without a job")
}

func TestLogCursorsAreChecked(t *testing.T) {
	b := setup(t)
	b.submitJob(t, "j")
	_, err := b.q.JobLogs(b.ctx, "j", LogQuery{Task: -1, After: "0-0; DEL"})
	require.ErrorContains(t, err, `cursor "0-0; DEL" is not a log entry id`)
	_, err = b.q.WaitJobLogs(b.ctx, "j", "abc", time.Millisecond)
	require.ErrorContains(t, err, `cursor "abc" is not a log entry id`)
}

func TestClipCutsLongTextOnly(t *testing.T) {
	r := LogRecord{Message: "short", Attrs: map[string]any{"k": "v", "n": 3.0}}
	require.Equal(t, 5+attrsSize(r.Attrs), r.Clip())
	require.False(t, r.Truncated)
	require.Equal(t, "short", r.Message)

	// Cut on a character boundary: "é" is two bytes.
	long := strings.Repeat("é", LogTextLimit)
	r = LogRecord{Message: long}
	r.Clip()
	require.True(t, r.Truncated)
	require.True(t, utf8.ValidString(r.Message))
	require.LessOrEqual(t, len(r.Message), LogTextLimit)
	kept := strings.Index(r.Message, "…")
	require.Equal(t, fmt.Sprintf("…[truncated %d bytes]", len(long)-kept), r.Message[kept:])

	// One big attribute is cut; the others keep their values.
	r = LogRecord{Message: "m", Attrs: map[string]any{"blob": strings.Repeat("y", 1<<20), "n": 1.0,
		"g": map[string]any{"s": "kept", "list": []any{strings.Repeat("z", 1<<20)}}}}
	r.Clip()
	require.True(t, r.Truncated)
	require.Equal(t, 1.0, r.Attrs["n"])
	require.Equal(t, "kept", r.Attrs["g"].(map[string]any)["s"])
	require.Regexp(t, `^y+…\[truncated \d+ bytes\]$`, r.Attrs["blob"])
	require.Less(t, len(r.Attrs["g"].(map[string]any)["list"].([]any)[0].(string)), 2<<10)

	// Too many attributes even so: they are kept as cut text.
	many := map[string]any{}
	for i := range 2000 {
		many[fmt.Sprintf("key%04d", i)] = "value"
	}
	r = LogRecord{Message: "m", Attrs: many}
	size := r.Clip()
	require.True(t, r.Truncated)
	require.Len(t, r.Attrs, 1)
	require.LessOrEqual(t, len(r.Attrs["attrs"].(string)), LogTextLimit)
	require.LessOrEqual(t, size, LogTextLimit+100)
}
