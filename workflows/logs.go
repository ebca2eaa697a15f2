package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/queue"
)

// LogRecord is one stored log record of a job (JobClient.Logs).
type LogRecord = queue.LogRecord

// LogQuery selects the records JobClient.Logs returns.
type LogQuery = queue.LogQuery

// Default caps of stored task logs (WithTaskLogs).
const (
	DefaultTaskLogBytes = 256 << 10
	DefaultJobLogBytes  = 16 << 20
)

// TaskLogs configures what a runner keeps of the records tasks write to
// Logger(ctx). Every record goes to the runner's own logger (the client's,
// WithLogger) whatever these say.
type TaskLogs struct {
	// Off keeps records out of Redis: `runfleet job logs` then shows
	// nothing for this runner's executions. At scale, export logs with
	// OpenTelemetry instead. Default false: records are stored.
	Off bool
	// Level is the least level stored. Default slog.LevelInfo (the zero
	// value).
	Level slog.Level
	// PerTask is the most bytes of records one execution stores (messages
	// and attributes); past it one marker record says the rest was
	// dropped. Default DefaultTaskLogBytes, 256 KiB.
	PerTask int
	// PerJob is the most bytes of records a job stores over all its
	// executions and runners; past it one marker record says the rest was
	// dropped. The first runner to reach it sets it for the job. Default
	// DefaultJobLogBytes, 16 MiB.
	PerJob int
}

// WithTaskLogs sets how the runner stores task logs; see TaskLogs. By
// default records of level INFO and above are stored, at most 256 KiB per
// execution and 16 MiB per job.
func WithTaskLogs(o TaskLogs) RunOption { return func(c *runConfig) { c.taskLogs = o } }

func (o TaskLogs) withDefaults() (TaskLogs, error) {
	if o.PerTask < 0 || o.PerJob < 0 {
		return o, fmt.Errorf("task log caps must not be negative: per task %d, per job %d", o.PerTask, o.PerJob)
	}
	if o.PerTask == 0 {
		o.PerTask = DefaultTaskLogBytes
	}
	if o.PerJob == 0 {
		o.PerJob = DefaultJobLogBytes
	}
	return o, nil
}

// Logger returns the running task's logger. Its records carry job_id,
// task_id, task (the task's name), attempt and runner_id, and trace_id and
// span_id when ctx, or the context a record is logged with
// (InfoContext…), holds an OpenTelemetry span. They go to the runner's own
// logger and are stored with the job in Redis (see WithTaskLogs), where
// `runfleet job logs` and the web console read them until the job is
// archived, and then in its archive. In a release worker they travel to the
// release runner over the worker protocol, which does the same with them.
//
// Outside a task's Execute it returns slog.Default(). An execution that
// writes no record costs task logs no allocation and no Redis call; one
// logger is made per execution on the first call.
func Logger(ctx context.Context) *slog.Logger {
	e := executionFrom(ctx)
	if e == nil {
		return slog.Default()
	}
	if e.logOut == nil {
		// A release worker whose runner takes no log messages: its
		// standard error reaches the runner's log instead.
		return slog.Default().With(slog.String("job_id", e.info.JobID), slog.Int64("task_id", e.info.TaskID),
			slog.String("task", e.info.Identifier.Name), slog.Int("attempt", e.info.Attempt),
			slog.String("runner_id", e.info.RunnerID))
	}
	span := trace.SpanContextFromContext(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.logger != nil && e.logSpan.Equal(span) {
		return e.logger
	}
	l := slog.New(&taskHandler{e: e, span: span})
	if e.logger == nil {
		e.logger, e.logSpan = l, span
	}
	return l
}

// logOutput is where an execution's records go: the runner's logger and
// log sink (taskLogs), or the worker protocol in a release worker.
type logOutput interface {
	enabled(ctx context.Context, e *execution, l slog.Level) bool
	emit(ctx context.Context, h *taskHandler, r slog.Record)
}

// taskHandler is the slog.Handler of Logger: it adds the execution's
// identity and hands records to the execution's logOutput.
type taskHandler struct {
	e     *execution
	span  trace.SpanContext // of the context Logger was called with
	steps []handlerStep     // WithAttrs and WithGroup calls, in order
}

// handlerStep is one WithGroup (group set) or WithAttrs call.
type handlerStep struct {
	group string
	attrs []slog.Attr
}

func (h *taskHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.e.logOut.enabled(ctx, h.e, l)
}

func (h *taskHandler) Handle(ctx context.Context, r slog.Record) error {
	h.e.logOut.emit(ctx, h, r)
	return nil
}

func (h *taskHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &taskHandler{e: h.e, span: h.span, steps: append(slices.Clip(h.steps), handlerStep{attrs: as})}
}

func (h *taskHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &taskHandler{e: h.e, span: h.span, steps: append(slices.Clip(h.steps), handlerStep{group: name})}
}

// spanOf is the span a record was written in: ctx's, else the one Logger
// was called in.
func (h *taskHandler) spanOf(ctx context.Context) trace.SpanContext {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc
	}
	return h.span
}

// record builds the stored form of r, clipped (queue.LogRecord.Clip), and
// returns its size.
func (h *taskHandler) record(ctx context.Context, r slog.Record) (queue.LogRecord, int) {
	e := h.e
	rec := queue.LogRecord{Time: r.Time.UTC(), TaskID: e.info.TaskID, Task: e.info.Identifier.Name,
		Attempt: e.info.Attempt, Runner: e.info.RunnerID, Level: r.Level.String(), Message: r.Message}
	if rec.Time.IsZero() {
		rec.Time = time.Now().UTC()
	}
	if sc := h.spanOf(ctx); sc.IsValid() {
		rec.TraceID, rec.SpanID = sc.TraceID().String(), sc.SpanID().String()
	}
	var attrs map[string]any
	var path []string
	for _, s := range h.steps {
		if s.group != "" {
			path = append(path, s.group)
			continue
		}
		for _, a := range s.attrs {
			attrs = putAttr(attrs, path, a)
		}
	}
	r.Attrs(func(a slog.Attr) bool {
		attrs = putAttr(attrs, path, a)
		return true
	})
	rec.Attrs = attrs
	size := rec.Clip()
	return rec, size
}

// putAttr adds a to m under the group path, making m and the groups' maps
// as needed; empty attributes and groups are left out, as slog handlers do.
func putAttr(m map[string]any, path []string, a slog.Attr) map[string]any {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return m
	}
	if a.Value.Kind() == slog.KindGroup {
		group := a.Value.Group()
		if len(group) == 0 {
			return m
		}
		if a.Key != "" {
			path = append(slices.Clip(path), a.Key)
		}
		for _, g := range group {
			m = putAttr(m, path, g)
		}
		return m
	}
	if m == nil {
		m = map[string]any{}
	}
	at := m
	for _, g := range path {
		sub, ok := at[g].(map[string]any)
		if !ok {
			sub = map[string]any{}
			at[g] = sub
		}
		at = sub
	}
	at[a.Key] = attrValue(a.Value)
	return m
}

// attrValue turns an attribute value into what JSON keeps of it, as
// encoding/json would decode it (so that LogRecord.Clip can size it).
func attrValue(v slog.Value) any {
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindInt64:
		return v.Int64()
	case slog.KindUint64:
		return v.Uint64()
	case slog.KindFloat64:
		if f := v.Float64(); !math.IsInf(f, 0) && !math.IsNaN(f) {
			return f
		}
		return v.String()
	case slog.KindBool:
		return v.Bool()
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindTime:
		return v.Time().UTC().Format(time.RFC3339Nano)
	}
	x := v.Any()
	switch x := x.(type) {
	case nil:
		return nil
	case error:
		return x.Error()
	case json.Marshaler:
	case fmt.Stringer:
		return x.String()
	}
	b, err := json.Marshal(x)
	var out any
	if err != nil || json.Unmarshal(b, &out) != nil {
		return fmt.Sprintf("%+v", x)
	}
	return out
}

// taskLogs is where a run's executions send their records: the runner's
// logger and, unless storing is off, the run's log sink.
type taskLogs struct {
	logger  *slog.Logger // the runner's
	sink    *logSink     // nil when storing is off
	level   slog.Level   // least level stored
	perTask int
	wire    string // what release workers are asked for (wireLevel)
}

func (t *taskLogs) enabled(ctx context.Context, _ *execution, l slog.Level) bool {
	return (t.sink != nil && l >= t.level) || t.logger.Enabled(ctx, l)
}

func (t *taskLogs) emit(ctx context.Context, h *taskHandler, r slog.Record) {
	if t.logger.Enabled(ctx, r.Level) {
		out := t.echoHandler(h.e)
		if sc := h.spanOf(ctx); sc.IsValid() {
			out = out.WithAttrs([]slog.Attr{slog.String("trace_id", sc.TraceID().String()),
				slog.String("span_id", sc.SpanID().String())})
		}
		for _, s := range h.steps {
			if s.group != "" {
				out = out.WithGroup(s.group)
			} else {
				out = out.WithAttrs(s.attrs)
			}
		}
		_ = out.Handle(withSpanContext(ctx, h.spanOf(ctx)), r)
	}
	if t.sink != nil && r.Level >= t.level {
		rec, size := h.record(ctx, r)
		t.store(h.e, rec, size)
	}
}

// echoHandler is the runner's handler with the execution's attributes,
// made when the execution first logs.
func (t *taskLogs) echoHandler(e *execution) slog.Handler {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.logEcho == nil {
		e.logEcho = t.logger.Handler().WithAttrs([]slog.Attr{slog.String("job_id", e.info.JobID),
			slog.Int64("task_id", e.info.TaskID), slog.Int("attempt", e.info.Attempt),
			slog.String("task", e.info.Identifier.String())})
	}
	return e.logEcho
}

// store hands a record to the sink within the execution's cap; the first
// record past it is replaced by a marker and the rest are dropped.
func (t *taskLogs) store(e *execution, rec queue.LogRecord, size int) {
	e.mu.Lock()
	if e.logCapped {
		e.mu.Unlock()
		return
	}
	if e.logBytes+size > t.perTask {
		e.logCapped = true
		e.mu.Unlock()
		t.sink.add(e.info.JobID, markerRecord(e.info, fmt.Sprintf(
			"this task's log reached its cap of %d bytes per execution; later records of this execution are not stored", t.perTask)), 0)
		return
	}
	e.logBytes += size
	e.mu.Unlock()
	t.sink.add(e.info.JobID, rec, size)
}

// markerRecord is a record standing for records of an execution that were
// dropped.
func markerRecord(info CurrentTaskInfo, msg string) queue.LogRecord {
	return queue.LogRecord{Time: time.Now().UTC(), TaskID: info.TaskID, Task: info.Identifier.Name,
		Attempt: info.Attempt, Runner: info.RunnerID, Level: slog.LevelWarn.String(), Message: msg, Truncated: true}
}

// wireLevel is the least level a release worker is asked to send (see
// protocol.Execute.Logs): what the run stores or its logger writes; "" when
// neither takes any.
func (t *taskLogs) wireLevel() string {
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		if (t.sink != nil && l >= t.level) || t.logger.Enabled(context.Background(), l) {
			return l.String()
		}
	}
	return ""
}

// remoteLogs receives the records a release worker sends for execution e
// (protocol.Execute.OnLog): they go where a local execution's go.
func (t *taskLogs) remoteLogs(e *execution) func([]protocol.LogRecord) {
	return func(recs []protocol.LogRecord) {
		for _, pr := range recs {
			var level slog.Level
			if err := level.UnmarshalText([]byte(pr.Level)); err != nil {
				level = slog.LevelInfo
			}
			// A worker may be written in any language: ids that are not
			// W3C-shaped are dropped, so they can neither mislead a reader
			// nor carry bytes past the record caps.
			_, terr := trace.TraceIDFromHex(pr.TraceID)
			_, serr := trace.SpanIDFromHex(pr.SpanID)
			if terr != nil || serr != nil {
				pr.TraceID, pr.SpanID = "", ""
			}
			if t.logger.Enabled(context.Background(), level) {
				r := slog.NewRecord(pr.Time, level, pr.Message, 0)
				if pr.TraceID != "" {
					r.AddAttrs(slog.String("trace_id", pr.TraceID), slog.String("span_id", pr.SpanID))
				}
				r.AddAttrs(slogAttrs(pr.Attrs)...)
				_ = t.echoHandler(e).Handle(recordSpanContext(context.Background(), pr.TraceID, pr.SpanID), r)
			}
			if t.sink == nil || level < t.level {
				continue
			}
			rec := queue.LogRecord{Time: pr.Time.UTC(), TaskID: e.info.TaskID, Task: e.info.Identifier.Name,
				Attempt: e.info.Attempt, Runner: e.info.RunnerID, Level: level.String(), Message: pr.Message,
				Attrs: pr.Attrs, TraceID: pr.TraceID, SpanID: pr.SpanID, Truncated: pr.Truncated}
			if rec.Time.IsZero() {
				rec.Time = time.Now().UTC()
			}
			size := rec.Clip()
			t.store(e, rec, size)
		}
	}
}

// slogAttrs turns decoded JSON attributes into slog attributes, sorted by
// key, objects as groups.
func slogAttrs(m map[string]any) []slog.Attr {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]slog.Attr, len(keys))
	for i, k := range keys {
		if sub, ok := m[k].(map[string]any); ok {
			out[i] = slog.Attr{Key: k, Value: slog.GroupValue(slogAttrs(sub)...)}
		} else {
			out[i] = slog.Any(k, m[k])
		}
	}
	return out
}

// Logs returns a job's stored log records, oldest first (see LogQuery);
// the last record's ID is the cursor of the next page. An archived job's
// records come from its archive. An unknown job is ErrJobNotFound.
func (jc *JobClient) Logs(ctx context.Context, id string, p LogQuery) ([]LogRecord, error) {
	recs, err := jc.c.q.JobLogs(ctx, id, p)
	if !errors.Is(err, queue.ErrJobNotFound) {
		return recs, err
	}
	a, ok, aerr := jc.c.archived(ctx, id)
	if aerr != nil {
		return nil, aerr
	}
	if !ok {
		return nil, err
	}
	return queue.SelectLogs(a.Logs, p), nil
}

// WaitLogs blocks up to block for records of a job after the cursor after
// ("" for all) and returns them; none when the time passes or the job is
// archived. Follow a job by calling it with the last ID it returned until
// the job is finished and a wait returns nothing.
func (jc *JobClient) WaitLogs(ctx context.Context, id, after string, block time.Duration) ([]LogRecord, error) {
	return jc.c.q.WaitJobLogs(ctx, id, after, block)
}

// allJobLogs reads every stored record of a job, for its archive.
func (c *Client) allJobLogs(ctx context.Context, id string) ([]LogRecord, error) {
	var out []LogRecord
	after := ""
	for {
		recs, err := c.q.JobLogs(ctx, id, LogQuery{Task: -1, After: after, Limit: 10000})
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
		if len(recs) < 10000 {
			return out, nil
		}
		after = recs[len(recs)-1].ID
	}
}

// startTaskLogs sets up where the run's executions log; stop writes what
// the sink still holds and ends it.
func (r *Runner) startTaskLogs(cfg runConfig) (stop func()) {
	t := &taskLogs{logger: r.logger, level: cfg.taskLogs.Level, perTask: cfg.taskLogs.PerTask}
	if !cfg.taskLogs.Off {
		t.sink = startLogSink(r.client.q, r.id, cfg.taskLogs.PerJob, r.logger)
	}
	t.wire = t.wireLevel()
	r.taskLogs.Store(t)
	return func() {
		if t.sink != nil {
			t.sink.close()
		}
	}
}

// workerLogs sends a release worker's task records to its release runner
// as Log messages (worker protocol), one per record, in the order written.
type workerLogs struct{ w *workerConn }

func (wl workerLogs) enabled(_ context.Context, e *execution, l slog.Level) bool {
	return l >= e.logLevel
}

func (wl workerLogs) emit(ctx context.Context, h *taskHandler, r slog.Record) {
	rec, _ := h.record(ctx, r)
	// A broken pipe means the release runner is gone; so is the task's
	// result, and the runner queues the task again.
	_ = wl.w.send(protocol.Log{Type: protocol.TypeLog, ID: h.e.wireID, Records: []protocol.LogRecord{{
		Time: rec.Time, Level: rec.Level, Message: rec.Message, Attrs: rec.Attrs,
		TraceID: rec.TraceID, SpanID: rec.SpanID, Truncated: rec.Truncated}}})
}
