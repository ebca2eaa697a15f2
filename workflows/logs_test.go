package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// A span context as a tracer would put in ctx; no tracer is needed to
// carry one.
var (
	testTraceID = trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	testSpanID  = trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	testSpan    = trace.NewSpanContext(trace.SpanContextConfig{TraceID: testTraceID, SpanID: testSpanID,
		TraceFlags: trace.FlagsSampled})
)

// Chatty writes the records the log tests look for: one with attributes
// in groups, one inside a span, one below the stored level and a warning
// with an error.
type Chatty struct{}

func (*Chatty) Execute(ctx context.Context) error {
	log := workflows.Logger(ctx).With("user", "ann").WithGroup("req")
	log.Info("hello", slog.Int("n", 3), slog.Group("size", slog.Int("w", 640)), slog.Duration("took", 1500*time.Millisecond))
	workflows.Logger(ctx).InfoContext(trace.ContextWithSpanContext(ctx, testSpan), "in a span")
	workflows.Logger(ctx).Debug("below the stored level")
	workflows.Logger(ctx).Warn("careful", "err", errors.New("boom"))
	return nil
}

// logBundle is a bundle whose client's logger (the runner's) writes JSON
// to out.
type logBundle struct {
	*testBundle
	out *testenv.Buffer
	rdb *redis.Client
}

func setupLogs(t *testing.T) *logBundle {
	t.Helper()
	b := setup(t)
	out := &testenv.Buffer{}
	c, err := workflows.NewClient(b.ctx, workflows.WithRedisURL(b.redis.URL()),
		workflows.WithLogger(slog.New(slog.NewJSONHandler(out, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	b.client = c
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return &logBundle{testBundle: b, out: out, rdb: rdb}
}

// runJob runs task as a job to its end with a direct runner of the test
// and bench tasks, and returns the job.
func (b *logBundle) runJob(t *testing.T, task workflows.Task, opts ...workflows.RunOption) (workflows.Job, *workflows.Runner) {
	t.Helper()
	r, err := b.client.NewRunner(b.ctx, b.cluster, append([]workflows.Task{&Chatty{}}, benchtask.All()...)...)
	require.NoError(t, err)
	j := b.submit(t, task)
	require.NoError(t, r.RunAll(b.ctx, append([]workflows.RunOption{workflows.WithConcurrency(4)}, opts...)...))
	return b.job(t, j.ID), r
}

func (b *logBundle) logs(t *testing.T, id string) []workflows.LogRecord {
	t.Helper()
	recs, err := b.client.Jobs().Logs(b.ctx, id, workflows.LogQuery{Task: -1})
	require.NoError(t, err)
	return recs
}

// echoed are the JSON records the runner's own logger wrote with msg.
func (b *logBundle) echoed(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.out.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// requireChattyLogs checks what Chatty's execution left: stored records
// with the execution's identity, and the same records on the runner's
// logger.
func (b *logBundle) requireChattyLogs(t *testing.T, j workflows.Job, runner string) {
	t.Helper()
	recs := b.logs(t, j.ID)
	require.Len(t, recs, 3, "the DEBUG record is not stored: %+v", recs)
	for i, r := range recs {
		require.NotEmpty(t, r.ID)
		if i > 0 {
			require.Greater(t, r.ID, recs[i-1].ID, "records come oldest first")
		}
		require.WithinDuration(t, time.Now(), r.Time, time.Minute)
		require.Equal(t, int64(0), r.TaskID)
		require.Equal(t, "Chatty", r.Task)
		require.Equal(t, 1, r.Attempt)
		require.Equal(t, runner, r.Runner)
		require.False(t, r.Truncated)
	}
	require.Equal(t, "INFO", recs[0].Level)
	require.Equal(t, "hello", recs[0].Message)
	require.Equal(t, map[string]any{"user": "ann", "req": map[string]any{"n": float64(3),
		"size": map[string]any{"w": float64(640)}, "took": "1.5s"}}, recs[0].Attrs)
	require.Empty(t, recs[0].TraceID, "no span in the context")
	require.Equal(t, "in a span", recs[1].Message)
	require.Equal(t, testTraceID.String(), recs[1].TraceID)
	require.Equal(t, testSpanID.String(), recs[1].SpanID)
	require.Equal(t, "WARN", recs[2].Level)
	require.Equal(t, map[string]any{"err": "boom"}, recs[2].Attrs)

	// The runner's own logger has them too, with the execution's identity.
	echo := b.echoed(t, "hello")
	require.Len(t, echo, 1, b.out.String())
	require.Equal(t, j.ID, echo[0]["job_id"])
	require.Equal(t, float64(0), echo[0]["task_id"])
	require.Equal(t, float64(1), echo[0]["attempt"])
	require.Equal(t, "Chatty@v0.0", echo[0]["task"])
	require.Equal(t, runner, echo[0]["runner_id"])
	require.Equal(t, "ann", echo[0]["user"])
	req := echo[0]["req"].(map[string]any)
	require.Equal(t, float64(3), req["n"])
	require.Equal(t, map[string]any{"w": float64(640)}, req["size"])
	span := b.echoed(t, "in a span")
	require.Len(t, span, 1)
	require.Equal(t, testTraceID.String(), span[0]["trace_id"])
	require.Equal(t, testSpanID.String(), span[0]["span_id"])
}

func TestDirectRunnerTaskLogs(t *testing.T) {
	t.Parallel()
	b := setupLogs(t)
	j, r := b.runJob(t, &Chatty{})
	require.Equal(t, workflows.JobCompleted, j.State)
	b.requireChattyLogs(t, j, r.ID())

	// One task's records: the root's here; job-level markers would come too.
	recs, err := b.client.Jobs().Logs(b.ctx, j.ID, workflows.LogQuery{Task: 0, Limit: 2})
	require.NoError(t, err)
	require.Len(t, recs, 2)
	rest, err := b.client.Jobs().Logs(b.ctx, j.ID, workflows.LogQuery{Task: 0, After: recs[1].ID})
	require.NoError(t, err)
	require.Len(t, rest, 1, "the last record's id is the next page's cursor")
	none, err := b.client.Jobs().Logs(b.ctx, j.ID, workflows.LogQuery{Task: 1})
	require.NoError(t, err)
	require.Empty(t, none)

	_, err = b.client.Jobs().Logs(b.ctx, "no-such-job", workflows.LogQuery{Task: -1})
	require.ErrorIs(t, err, workflows.ErrJobNotFound)
	require.ErrorContains(t, err, `"no-such-job"`)
	_, err = b.client.Jobs().Logs(b.ctx, j.ID, workflows.LogQuery{Task: -1, After: "yesterday"})
	require.ErrorContains(t, err, `cursor "yesterday" is not a log entry id`)
}

func TestLoggerOutsideATaskIsTheDefault(t *testing.T) {
	require.Same(t, slog.Default(), workflows.Logger(context.Background()))
}

// A job whose tasks log nothing stores nothing: no stream is made.
func TestTasksThatLogNothingStoreNothing(t *testing.T) {
	t.Parallel()
	b := setupLogs(t)
	j, _ := b.runJob(t, &benchtask.FanOut{N: 20})
	require.Equal(t, workflows.JobCompleted, j.State)
	require.Empty(t, b.logs(t, j.ID))
	require.Zero(t, b.rdb.Exists(b.ctx, "rf:{j:"+j.ID+"}:logs").Val())
}

func TestTaskLogsAreCappedPerExecution(t *testing.T) {
	t.Parallel()
	b := setupLogs(t)
	// 100 records of 100 bytes against a cap of 1000 bytes.
	j, _ := b.runJob(t, &benchtask.Log{Lines: 100, Bytes: 100}, workflows.WithTaskLogs(workflows.TaskLogs{PerTask: 1000}))
	recs := b.logs(t, j.ID)
	require.Greater(t, len(recs), 3)
	require.Less(t, len(recs), 11)
	for _, r := range recs[:len(recs)-1] {
		require.False(t, r.Truncated)
		require.True(t, strings.HasPrefix(r.Message, "line "), r.Message)
	}
	marker := recs[len(recs)-1]
	require.True(t, marker.Truncated)
	require.Equal(t, int64(0), marker.TaskID, "the marker names the execution")
	require.Equal(t, "Log", marker.Task)
	require.Equal(t, "WARN", marker.Level)
	require.Contains(t, marker.Message, "cap of 1000 bytes per execution")
	// The runner's own logger got every record.
	require.Len(t, b.echoed(t, "line 99 "+strings.Repeat("x", 100-len("line 99 "))), 1)
}

func TestTaskLogsAreCappedPerJob(t *testing.T) {
	t.Parallel()
	b := setupLogs(t)
	// 10 tasks of 20 records of about 150 bytes of JSON each, against a
	// job cap of 5000 bytes.
	child, _ := json.Marshal(benchtask.Log{Lines: 20, Bytes: 50})
	j, _ := b.runJob(t, &benchtask.FanOut{N: 10, Child: "Log", ChildInput: child},
		workflows.WithTaskLogs(workflows.TaskLogs{PerJob: 5000}))
	require.Equal(t, workflows.JobCompleted, j.State)
	recs := b.logs(t, j.ID)
	var markers []workflows.LogRecord
	stored := 0
	for _, r := range recs {
		if r.Truncated {
			markers = append(markers, r)
			continue
		}
		r.ID = ""
		data, err := json.Marshal(r)
		require.NoError(t, err)
		stored += len(data)
	}
	require.Len(t, markers, 1, "one marker when the job's cap is first reached")
	require.Equal(t, int64(-1), markers[0].TaskID)
	require.Contains(t, markers[0].Message, "cap of 5000 bytes")
	require.Equal(t, markers[0].ID, recs[len(recs)-1].ID, "nothing is stored after the marker")
	require.LessOrEqual(t, stored, 5000)
	require.Greater(t, stored, 4000)

	// A task's records include the job-level marker.
	one, err := b.client.Jobs().Logs(b.ctx, j.ID, workflows.LogQuery{Task: 1})
	require.NoError(t, err)
	require.True(t, one[len(one)-1].Truncated)
}

// requireCut checks text of was bytes shortened to queue.LogTextLimit,
// ending with a suffix that says how much was cut.
func requireCut(t *testing.T, s string, was int) {
	t.Helper()
	require.LessOrEqual(t, len(s), queue.LogTextLimit)
	require.Greater(t, len(s), queue.LogTextLimit-100)
	m := regexp.MustCompile(`x…\[truncated (\d+) bytes\]$`).FindStringSubmatch(s)
	require.NotNil(t, m, "ends with the truncation suffix: %q", s[len(s)-40:])
	cut, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	kept := strings.LastIndex(s, "…")
	require.Equal(t, was, kept+cut, "the suffix says how many bytes were cut")
}

// A record of 1 MiB, and one with a 1 MiB attribute, are stored cut, not
// refused, and the task goes on.
func TestHugeLogRecordIsTruncatedNotRejected(t *testing.T) {
	t.Parallel()
	b := setupLogs(t)
	j, _ := b.runJob(t, &benchtask.Log{Lines: 2, Bytes: 1 << 20, AttrBytes: 1 << 20, Attrs: map[string]any{"small": "kept"}},
		workflows.WithTaskLogs(workflows.TaskLogs{PerTask: 1 << 20}))
	require.Equal(t, workflows.JobCompleted, j.State)
	recs := b.logs(t, j.ID)
	require.Len(t, recs, 2)
	for _, r := range recs {
		require.True(t, r.Truncated)
		requireCut(t, r.Message, 1<<20)
		require.Equal(t, "kept", r.Attrs["small"], "other attributes keep their values")
		blob := r.Attrs["blob"].(string)
		require.Less(t, len(blob), 2<<10)
		require.Regexp(t, `y…\[truncated \d+ bytes\]$`, blob)
	}
}

func TestStoringTaskLogsOff(t *testing.T) {
	t.Parallel()
	b := setupLogs(t)
	j, _ := b.runJob(t, &Chatty{}, workflows.WithTaskLogs(workflows.TaskLogs{Off: true}))
	require.Equal(t, workflows.JobCompleted, j.State)
	require.Empty(t, b.logs(t, j.ID))
	require.Zero(t, b.rdb.Exists(b.ctx, "rf:{j:"+j.ID+"}:logs").Val())
	require.Len(t, b.echoed(t, "hello"), 1, "records still go to the runner's logger")
}

func TestTaskLogOptionsAreChecked(t *testing.T) {
	t.Parallel()
	b := setupLogs(t)
	r, err := b.client.NewRunner(b.ctx, b.cluster, &benchtask.Noop{})
	require.NoError(t, err)
	err = r.RunAll(b.ctx, workflows.WithTaskLogs(workflows.TaskLogs{PerTask: -1}))
	require.ErrorContains(t, err, "task log caps must not be negative")
}

// A release worker's records travel over the worker protocol and are kept
// like a direct runner's, with the release runner's identity.
func TestReleaseWorkerTaskLogs(t *testing.T) {
	t.Parallel()
	b := setupLogs(t)
	tasks := append([]workflows.Task{&Chatty{}}, benchtask.All()...)
	r := remoteRunner(t, b.testBundle, tasks, &hostExec{h: pipeWorker(t, tasks...)})
	j := b.submit(t, &Chatty{})
	huge := b.submit(t, &benchtask.Log{Bytes: 1 << 20, AttrBytes: 1 << 20})
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	b.requireChattyLogs(t, b.job(t, j.ID), r.ID())

	recs := b.logs(t, huge.ID)
	require.Len(t, recs, 1)
	require.True(t, recs[0].Truncated)
	requireCut(t, recs[0].Message, 1<<20)
	require.Less(t, len(recs[0].Attrs["blob"].(string)), 2<<10)
}

// The log stream goes with the job when it is archived, and its records
// are read back from the archive.
func TestTaskLogsGoWithTheArchive(t *testing.T) {
	t.Parallel()
	b := setupLogs(t)
	store, url := fileArchive(t)
	j, r := b.runJob(t, &Chatty{})
	before := b.logs(t, j.ID)
	require.Len(t, before, 3)

	n, err := b.client.ArchiveJobs(b.ctx, store, url, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Zero(t, b.rdb.Exists(b.ctx, "rf:{j:"+j.ID+"}:logs").Val(), "the stream left Redis")
	_, err = b.client.Queue().JobLogs(b.ctx, j.ID, workflows.LogQuery{Task: -1})
	require.ErrorIs(t, err, workflows.ErrJobNotFound)

	after := b.logs(t, j.ID)
	require.Equal(t, before, after, "the archive has every record")
	b.requireChattyLogs(t, b.job(t, j.ID), r.ID())
	page, err := b.client.Jobs().Logs(b.ctx, j.ID, workflows.LogQuery{Task: 0, After: before[0].ID, Limit: 1})
	require.NoError(t, err)
	require.Equal(t, before[1:2], page, "queries apply to archived records alike")

	// A batch that arrives after the purge leaves nothing behind.
	dropped, err := b.client.Queue().AppendLogs(b.ctx, []queue.LogBatch{{JobID: j.ID,
		Records: []queue.LogRecord{{TaskID: 0, Level: "INFO", Message: "late"}}}}, 1<<20, "r")
	require.NoError(t, err)
	require.Equal(t, 1, dropped)
	require.Zero(t, b.rdb.Exists(b.ctx, "rf:{j:"+j.ID+"}:logs").Val())
}

// Prompt logs a record, then waits until it can read it back from the
// job's logs: it fails unless the runner stores records while tasks run.
type Prompt struct {
	Key string `json:"key"`
}

func (p *Prompt) Execute(ctx context.Context) error {
	workflows.Logger(ctx).Info("prompt")
	cur, _ := workflows.CurrentTask(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		recs, err := clientFor(p.Key).Jobs().WaitLogs(ctx, cur.JobID, "", 100*time.Millisecond)
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			return nil
		}
	}
	return errors.New("the record was not stored while the task ran")
}

func TestTaskLogsAreStoredWhileTheTaskRuns(t *testing.T) {
	t.Parallel()
	b := setupLogs(t)
	shareClient(t, b.client)
	r, err := b.client.NewRunner(b.ctx, b.cluster, &Prompt{})
	require.NoError(t, err)
	j := b.submit(t, &Prompt{Key: t.Name()})
	require.NoError(t, r.RunAll(b.ctx))
	j = b.job(t, j.ID)
	require.Equal(t, workflows.JobCompleted, j.State, "%+v", j)
}
