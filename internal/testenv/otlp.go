package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// OTLPReceiver is an OpenTelemetry Collector (internal/tools/otelcol, built
// by `go tool task setup-otel`) started for one test: it receives OTLP/HTTP
// on a free loopback port and writes what it receives, as OTLP JSON lines,
// to a file in Dir, which Spans and Logs read.
type OTLPReceiver struct {
	Addr string // host:port of its OTLP/HTTP receiver
	Dir  string // its directory: config, output and log
	// discard: received data is decoded and dropped (nop exporter), not
	// written; Spans and Logs find nothing.
	discard bool
	nice    int  // > 0: the collector runs under `nice -n nice`
	idle    bool // the collector runs in the SCHED_IDLE class (chrt --idle)
	process
}

// OTLPReceiverOption configures a receiver a benchmark starts.
type OTLPReceiverOption func(*OTLPReceiver)

// WithNice runs the collector at CPU priority n (nice -n n; 19 is the
// lowest): on a machine whose few cores the measured runner also uses, it
// then yields to them more, though it still takes turns with them.
func WithNice(n int) OTLPReceiverOption { return func(o *OTLPReceiver) { o.nice = n } }

// WithIdleScheduling runs the collector in Linux's SCHED_IDLE class
// (chrt --idle 0), the lowest priority there is, well below nice 19: it
// runs almost only when nothing else on a CPU wants it. On a machine whose
// few cores the measured runner and Redis also use, the collector then
// receives and decodes everything mostly in the time they leave idle,
// closer to a collector on a machine of its own, though it still shares
// their caches and memory. Overrides WithNice.
func WithIdleScheduling() OTLPReceiverOption { return func(o *OTLPReceiver) { o.idle = true } }

// Endpoint is the value for OTEL_EXPORTER_OTLP_ENDPOINT.
func (o *OTLPReceiver) Endpoint() string { return "http://" + o.Addr }

// LogPath is the file the collector's own output goes to.
func (o *OTLPReceiver) LogPath() string { return filepath.Join(o.Dir, "otelcol.log") }

func (o *OTLPReceiver) outPath() string { return filepath.Join(o.Dir, "received.jsonl") }

// OTelColPath finds the test collector: $RUNFLEET_OTELCOL_BIN, then where
// `go tool task setup-otel` installs it ($GOBIN, else the first
// $GOPATH/bin), then $PATH.
func OTelColPath() (string, error) {
	return findGoBinary("RUNFLEET_OTELCOL_BIN", "runfleet-otelcol",
		"runfleet-otelcol not found: run `go tool task setup` (it builds the pinned OpenTelemetry Collector of internal/tools/otelcol into $(go env GOBIN) or $(go env GOPATH)/bin) or set RUNFLEET_OTELCOL_BIN")
}

// NewOTLPReceiver starts a collector for t, stopped when t ends.
func NewOTLPReceiver(t testing.TB) *OTLPReceiver {
	t.Helper()
	o, err := StartOTLPReceiver(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		o.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(o.LogPath())
			t.Logf("collector log %s:\n%s", o.LogPath(), b)
		}
	})
	return o
}

// NewDiscardingOTLPReceiver is NewOTLPReceiver for benchmarks: the
// collector receives and decodes everything sent to it and drops it (its
// nop exporter) instead of writing JSON, so that what is measured is the
// sender, not a collector that in production runs elsewhere.
func NewDiscardingOTLPReceiver(t testing.TB, opts ...OTLPReceiverOption) *OTLPReceiver {
	t.Helper()
	o, err := startOTLPReceiver(context.Background(), t.TempDir(), true, opts...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(o.Stop)
	return o
}

// StartOTLPReceiver starts a collector in dir on a free loopback port and
// waits until it accepts connections.
func StartOTLPReceiver(ctx context.Context, dir string) (*OTLPReceiver, error) {
	return startOTLPReceiver(ctx, dir, false)
}

func startOTLPReceiver(ctx context.Context, dir string, discard bool, opts ...OTLPReceiverOption) (*OTLPReceiver, error) {
	bin, err := OTelColPath()
	if err != nil {
		return nil, err
	}
	var lastErr error
	// Another process may take the free port before the collector binds it.
	for range 3 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		o := &OTLPReceiver{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir, discard: discard}
		for _, opt := range opts {
			opt(o)
		}
		if lastErr = o.start(ctx, bin); lastErr == nil {
			return o, nil
		}
		if ctx.Err() != nil || !strings.Contains(lastErr.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

// otelcolConfig receives traces and logs over OTLP/HTTP and writes them to
// a file, flushed often so that tests see spans soon after export.
const otelcolConfig = `receivers:
  otlp:
    protocols:
      http:
        endpoint: %q
exporters:
  file:
    path: %q
    flush_interval: 50ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
    logs:
      receivers: [otlp]
      exporters: [file]
`

// otelcolDiscardConfig receives traces and logs over OTLP/HTTP and drops
// them once decoded.
const otelcolDiscardConfig = `receivers:
  otlp:
    protocols:
      http:
        endpoint: %q
exporters:
  nop:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [nop]
    logs:
      receivers: [otlp]
      exporters: [nop]
`

func (o *OTLPReceiver) start(ctx context.Context, bin string) error {
	cfg := filepath.Join(o.Dir, "otelcol.yaml")
	text := fmt.Appendf(nil, otelcolConfig, o.Addr, o.outPath())
	if o.discard {
		text = fmt.Appendf(nil, otelcolDiscardConfig, o.Addr)
	}
	if err := os.WriteFile(cfg, text, 0o644); err != nil {
		return fmt.Errorf("start collector: %w", err)
	}
	logf, err := os.Create(o.LogPath())
	if err != nil {
		return fmt.Errorf("start collector: %w", err)
	}
	defer logf.Close() // the child has its own copy
	args := []string{bin, "--config", "file:" + cfg}
	// Through chrt(1) or nice(1), so that every thread of the collector
	// has the class or priority.
	switch {
	case o.idle:
		args = append([]string{"chrt", "--idle", "0"}, args...)
	case o.nice > 0:
		args = append([]string{"nice", "-n", strconv.Itoa(o.nice)}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = o.Dir, logf, logf
	exited, err := o.launch(cmd)
	if err != nil {
		return fmt.Errorf("start collector: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", o.Addr, 100*time.Millisecond); err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(o.LogPath())
			return fmt.Errorf("collector exited at start: %s", bytes.TrimSpace(b))
		case <-ctx.Done():
			o.Kill()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			o.Kill()
			return fmt.Errorf("collector not listening on %s after 30s; see %s", o.Addr, o.LogPath())
		}
	}
}

// Span is one span the receiver got, with its resource's attributes.
type Span struct {
	TraceID, SpanID, ParentSpanID string // lowercase hex; ParentSpanID "" for a root
	Name                          string
	Kind                          string // INTERNAL, SERVER, CLIENT, PRODUCER or CONSUMER
	Start, End                    time.Time
	Attributes                    map[string]any // strings, int64s, float64s, bools
	Resource                      map[string]any
	Events                        []SpanEvent
	Status                        string // UNSET, OK or ERROR
	StatusMessage                 string
}

// SpanEvent is an event of a span.
type SpanEvent struct {
	Name       string
	Attributes map[string]any
}

// OTLPLogRecord is one log record the receiver got.
type OTLPLogRecord struct {
	TraceID, SpanID string
	Severity        string // as the sender wrote it: INFO, WARN, …
	Body            string
	Attributes      map[string]any
	Resource        map[string]any
}

// Spans returns the spans of trace traceID received so far ("" for all),
// in the order they arrived.
func (o *OTLPReceiver) Spans(traceID string) ([]Span, error) {
	var out []Span
	err := o.readLines(func(line []byte) error {
		var m otlpMessage
		if err := json.Unmarshal(line, &m); err != nil {
			return err
		}
		for _, rs := range m.ResourceSpans {
			res := attrMap(rs.Resource.Attributes)
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					if traceID != "" && s.TraceID != traceID {
						continue
					}
					sp := Span{TraceID: s.TraceID, SpanID: s.SpanID, ParentSpanID: s.ParentSpanID, Name: s.Name,
						Kind: spanKinds[s.Kind], Start: unixNano(s.Start), End: unixNano(s.End),
						Attributes: attrMap(s.Attributes), Resource: res, Status: statusCodes[s.Status.Code],
						StatusMessage: s.Status.Message}
					for _, e := range s.Events {
						sp.Events = append(sp.Events, SpanEvent{Name: e.Name, Attributes: attrMap(e.Attributes)})
					}
					out = append(out, sp)
				}
			}
		}
		return nil
	})
	return out, err
}

// Logs returns the log records of trace traceID received so far ("" for
// all), in the order they arrived.
func (o *OTLPReceiver) Logs(traceID string) ([]OTLPLogRecord, error) {
	var out []OTLPLogRecord
	err := o.readLines(func(line []byte) error {
		var m otlpMessage
		if err := json.Unmarshal(line, &m); err != nil {
			return err
		}
		for _, rl := range m.ResourceLogs {
			res := attrMap(rl.Resource.Attributes)
			for _, sl := range rl.ScopeLogs {
				for _, l := range sl.LogRecords {
					if traceID != "" && l.TraceID != traceID {
						continue
					}
					body, _ := attrValue(l.Body).(string)
					out = append(out, OTLPLogRecord{TraceID: l.TraceID, SpanID: l.SpanID, Severity: l.SeverityText,
						Body: body, Attributes: attrMap(l.Attributes), Resource: res})
				}
			}
		}
		return nil
	})
	return out, err
}

// WaitSpans waits up to timeout until the receiver holds at least n spans
// of trace traceID and returns them.
func (o *OTLPReceiver) WaitSpans(t testing.TB, traceID string, n int, timeout time.Duration) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans, err := o.Spans(traceID)
		if err != nil {
			t.Fatalf("testenv: read received spans: %v", err)
		}
		if len(spans) >= n {
			return spans
		}
		if time.Now().After(deadline) {
			var names []string
			for _, s := range spans {
				names = append(names, s.Name)
			}
			t.Fatalf("testenv: %d spans of trace %s after %s, want %d: %v", len(spans), traceID, timeout, n, names)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitLogs waits up to timeout until the receiver holds at least n log
// records of trace traceID and returns them.
func (o *OTLPReceiver) WaitLogs(t testing.TB, traceID string, n int, timeout time.Duration) []OTLPLogRecord {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs, err := o.Logs(traceID)
		if err != nil {
			t.Fatalf("testenv: read received log records: %v", err)
		}
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %d log records of trace %s after %s, want %d: %+v", len(recs), traceID, timeout, n, recs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readLines calls fn with each complete line of the output file.
func (o *OTLPReceiver) readLines(fn func([]byte) error) error {
	f, err := os.Open(o.outPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			// A last line without its newline is still being written.
			return nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := fn(line); err != nil {
			return fmt.Errorf("decode %s: %w", o.outPath(), err)
		}
	}
}

// otlpMessage is the OTLP JSON encoding of an export request, the parts
// of it Spans and Logs read.
type otlpMessage struct {
	ResourceSpans []struct {
		Resource   otlpResource `json:"resource"`
		ScopeSpans []struct {
			Spans []struct {
				TraceID      string      `json:"traceId"`
				SpanID       string      `json:"spanId"`
				ParentSpanID string      `json:"parentSpanId"`
				Name         string      `json:"name"`
				Kind         int         `json:"kind"`
				Start        string      `json:"startTimeUnixNano"`
				End          string      `json:"endTimeUnixNano"`
				Attributes   []otlpAttr  `json:"attributes"`
				Events       []otlpEvent `json:"events"`
				Status       struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"status"`
			} `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
	ResourceLogs []struct {
		Resource  otlpResource `json:"resource"`
		ScopeLogs []struct {
			LogRecords []struct {
				TraceID      string          `json:"traceId"`
				SpanID       string          `json:"spanId"`
				SeverityText string          `json:"severityText"`
				Body         json.RawMessage `json:"body"`
				Attributes   []otlpAttr      `json:"attributes"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

type otlpResource struct {
	Attributes []otlpAttr `json:"attributes"`
}

type otlpEvent struct {
	Name       string     `json:"name"`
	Attributes []otlpAttr `json:"attributes"`
}

type otlpAttr struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

var spanKinds = map[int]string{0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}

var statusCodes = map[int]string{0: "UNSET", 1: "OK", 2: "ERROR"}

func attrMap(as []otlpAttr) map[string]any {
	m := make(map[string]any, len(as))
	for _, a := range as {
		m[a.Key] = attrValue(a.Value)
	}
	return m
}

// attrValue decodes an OTLP JSON AnyValue: int64s come as strings.
func attrValue(raw json.RawMessage) any {
	var v struct {
		String *string  `json:"stringValue"`
		Int    *string  `json:"intValue"`
		Double *float64 `json:"doubleValue"`
		Bool   *bool    `json:"boolValue"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return nil
	}
	switch {
	case v.String != nil:
		return *v.String
	case v.Int != nil:
		n, _ := strconv.ParseInt(*v.Int, 10, 64)
		return n
	case v.Double != nil:
		return *v.Double
	case v.Bool != nil:
		return *v.Bool
	}
	return string(raw)
}

func unixNano(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
