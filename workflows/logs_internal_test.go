package workflows

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/queue"
)

type quietTask struct{}

func (*quietTask) Execute(context.Context) error { return nil }

type debugTask struct{}

func (*debugTask) Execute(ctx context.Context) error {
	Logger(ctx).Debug("below every level in use")
	return nil
}

// An execution that logs nothing costs task logs no allocation and sends
// nothing; one that logs only below the levels in use sends nothing either.
func TestTaskLogsCostNothingWhenNothingIsLogged(t *testing.T) {
	ctx := context.Background()
	discard := slog.New(slog.NewTextHandler(io.Discard, nil)) // INFO
	client, err := NewClient(ctx, WithRedisURL(testenv.NewRedis(t).URL()), WithLogger(discard))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	_, err = client.Clusters().Create(ctx, "c", "")
	require.NoError(t, err)
	r, err := client.NewRunner(ctx, "c", &quietTask{}, &debugTask{})
	require.NoError(t, err)
	reg := r.reg
	claim := func(name string) (registration, queue.Claimed) {
		id := queue.Identifier{Name: name}
		rg, ok := reg.lookup(id)
		require.True(t, ok)
		return rg, queue.Claimed{JobID: "j", Seq: 1, Attempt: 1, Task: id, Input: []byte("{}")}
	}
	rg, c := claim("quietTask")
	run := func() {
		out := r.executeAs(ctx, rg, c, nil, nil)
		require.NoError(t, out.err)
	}
	without := testing.AllocsPerRun(200, run)

	sink := &logSink{}
	r.taskLogs.Store(&taskLogs{logger: discard, sink: sink, perTask: DefaultTaskLogBytes})
	with := testing.AllocsPerRun(200, run)
	require.Equal(t, without, with, "stored task logs cost an execution that logs nothing no allocation")

	rg, c = claim("debugTask")
	require.NoError(t, r.executeAs(ctx, rg, c, nil, nil).err)
	require.Empty(t, sink.pending)
	require.Empty(t, sink.dropped)
}

// A sink whose buffer is full drops records without blocking, and stores
// one marker per execution saying how many it lost; a failed write drops
// its batch and leaves the sink working.
func TestLogSinkDropsWhenFullAndSaysSo(t *testing.T) {
	rs := testenv.NewRedis(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	faults := &testenv.Faults{}
	rdb.AddHook(faults)
	c, err := NewClient(ctx, WithRedisClient(rdb), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Clusters().Create(ctx, "c", "")
	require.NoError(t, err)
	_, err = c.NewRunner(ctx, "c", &quietTask{})
	require.NoError(t, err)
	j, err := c.Jobs().Submit(ctx, "j", "c", &quietTask{})
	require.NoError(t, err)

	warnings := &testenv.Buffer{}
	s := &logSink{q: c.q, runner: "r1", perJob: 64 << 20,
		logger: slog.New(slog.NewTextHandler(warnings, nil))} // not started: flushed by hand
	msg := strings.Repeat("m", 1<<10)
	const n = 10_000 // 10k records of about 1.25 KiB: more than the buffer holds
	for range n {
		s.add(j.ID, queue.LogRecord{TaskID: 0, Task: "quietTask", Attempt: 1, Runner: "r1", Level: "INFO",
			Message: msg, Time: time.Now()}, len(msg))
	}
	kept := len(s.pending)
	require.Less(t, kept, n)
	require.Greater(t, kept, 1000)
	s.flush()
	recs, err := c.q.JobLogs(ctx, j.ID, queue.LogQuery{Task: -1, Limit: 10000})
	require.NoError(t, err)
	require.Len(t, recs, kept+1)
	marker := recs[len(recs)-1]
	require.True(t, marker.Truncated)
	require.Equal(t, int64(0), marker.TaskID)
	require.Contains(t, marker.Message, strconv.Itoa(n-kept)+" log records of this task were not stored")

	// Redis away: the batch is dropped with a warning; the sink goes on.
	faults.Sleep()
	s.add(j.ID, queue.LogRecord{TaskID: 0, Level: "INFO", Message: "lost"}, 4)
	s.flush()
	faults.Wake()
	require.Contains(t, warnings.String(), "storing task logs failed")
	s.add(j.ID, queue.LogRecord{TaskID: 0, Level: "INFO", Message: "after"}, 5)
	s.flush()
	recs, err = c.q.JobLogs(ctx, j.ID, queue.LogQuery{Task: -1, After: marker.ID})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, "after", recs[0].Message)
}

// A release worker's trace ids are kept only when they are W3C-shaped.
func TestRemoteLogsDropMalformedTraceIDs(t *testing.T) {
	sink := &logSink{perJob: 64 << 20}
	tl := &taskLogs{logger: slog.New(slog.NewTextHandler(io.Discard, nil)), sink: sink, perTask: 1 << 20}
	e := &execution{info: CurrentTaskInfo{JobID: "j", TaskID: 3, Attempt: 1, RunnerID: "r1"}}
	good := protocol.LogRecord{Level: "INFO", Message: "ok", TraceID: strings.Repeat("ab", 16), SpanID: strings.Repeat("cd", 8)}
	long := protocol.LogRecord{Level: "INFO", Message: "long", TraceID: strings.Repeat("a", 64<<10), SpanID: strings.Repeat("cd", 8)}
	upper := protocol.LogRecord{Level: "INFO", Message: "upper", TraceID: strings.Repeat("AB", 16), SpanID: strings.Repeat("cd", 8)}
	tl.remoteLogs(e)([]protocol.LogRecord{good, long, upper})
	require.Len(t, sink.pending, 3)
	require.Equal(t, good.TraceID, sink.pending[0].rec.TraceID)
	require.Equal(t, good.SpanID, sink.pending[0].rec.SpanID)
	for _, p := range sink.pending[1:] {
		require.Empty(t, p.rec.TraceID, p.rec.Message)
		require.Empty(t, p.rec.SpanID, p.rec.Message)
	}
}
