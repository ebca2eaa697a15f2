package telemetry

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// A job is one trace, and each execution one span parented on the
// execution that submitted its task. Runners never tell each other the
// span ids they made: an execution's span id is a hash of (trace id, job
// id, task seq, attempt), so the runner of a subtask computes its parent's
// span id from the parent's committed attempt, which Redis holds anyway.

// ExecutionSpanID is the span id of attempt attempt of task seq of job
// jobID in trace tid: never zero, the same in every process.
func ExecutionSpanID(tid trace.TraceID, jobID string, seq int64, attempt int) trace.SpanID {
	return NewJobSpanIDs(tid, jobID).Execution(seq, attempt)
}

// JobSpanIDs gives the ExecutionSpanID of the executions of one job in one
// trace. The hash of the trace and job ids, most of the bytes hashed, is
// done once per job instead of once per execution.
type JobSpanIDs struct{ h uint64 }

// NewJobSpanIDs is the span ids of job jobID's executions in trace tid.
func NewJobSpanIDs(tid trace.TraceID, jobID string) JobSpanIDs {
	return JobSpanIDs{hashString(hashBytes(fnvOffset, tid[:]), jobID)}
}

// Execution is ExecutionSpanID of attempt attempt of task seq.
func (j JobSpanIDs) Execution(seq int64, attempt int) trace.SpanID {
	h := hashUint64(j.h, uint64(seq))
	h = hashUint64(h, uint64(attempt))
	return spanID(mix(h))
}

// PlaceholderSpanID is the span id a job's traceparent names when its
// submit made no span (tracing was off there): no span has it, so the
// job's root execution starts the trace instead of pointing at a parent
// that was never exported.
func PlaceholderSpanID(tid trace.TraceID, jobID string) trace.SpanID {
	return NewJobSpanIDs(tid, jobID).Placeholder()
}

// Placeholder is PlaceholderSpanID of the job: the id of an execution
// that no task has (seq -1, attempt 0).
func (j JobSpanIDs) Placeholder() trace.SpanID { return j.Execution(-1, 0) }

// JobTraceID is the trace id of a job that starts its own trace: a hash of
// its id, random-looking (as trace-id ratio samplers need), never zero.
// Jobs stored without a traceparent are traced under it too, so every
// runner agrees on their trace.
func JobTraceID(jobID string) trace.TraceID {
	hi := mix(hashString(fnvOffset, jobID))
	lo := mix(hashString(hashUint64(fnvOffset, 0x9e3779b97f4a7c15), jobID))
	var tid trace.TraceID
	binary.BigEndian.PutUint64(tid[:8], hi)
	binary.BigEndian.PutUint64(tid[8:], lo)
	if !tid.IsValid() {
		tid[15] = 1
	}
	return tid
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h = (h ^ uint64(c)) * fnvPrime
	}
	return h
}

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	// The length ends the field: ("ab", "c") and ("a", "bc") differ.
	return hashUint64(h, uint64(len(s)))
}

func hashUint64(h, v uint64) uint64 {
	for range 8 {
		h = (h ^ (v & 0xff)) * fnvPrime
		v >>= 8
	}
	return h
}

// mix is splitmix64's finaliser: every input bit moves every output bit.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

func spanID(v uint64) trace.SpanID {
	if v == 0 {
		v = 1
	}
	var id trace.SpanID
	binary.BigEndian.PutUint64(id[:], v)
	return id
}

// wantedIDs are the ids WithIDs asks the next span to get.
type wantedIDs struct {
	tid trace.TraceID
	sid trace.SpanID
}

type wantedKey struct{}

// WithIDs asks the IDGenerator for the span started with ctx to have span
// id sid, and trace id tid when it starts a trace (trace.WithNewRoot).
// Start only that span with the returned context: spans started from it
// later would get the same id.
func WithIDs(ctx context.Context, tid trace.TraceID, sid trace.SpanID) context.Context {
	return context.WithValue(ctx, wantedKey{}, wantedIDs{tid, sid})
}

// NewIDGenerator returns the sdktrace.IDGenerator that gives a span the
// ids WithIDs asks for, and random ones otherwise. A TracerProvider that
// traces runfleet executions needs it (sdktrace.WithIDGenerator), or
// executions' spans do not meet the parents other runners name for them.
func NewIDGenerator() sdktrace.IDGenerator { return idGenerator{} }

type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if w, ok := ctx.Value(wantedKey{}).(wantedIDs); ok && w.tid.IsValid() && w.sid.IsValid() {
		return w.tid, w.sid
	}
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.BigEndian.PutUint64(tid[:8], rand.Uint64())
		binary.BigEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid, spanID(rand.Uint64())
}

func (idGenerator) NewSpanID(ctx context.Context, tid trace.TraceID) trace.SpanID {
	if w, ok := ctx.Value(wantedKey{}).(wantedIDs); ok && w.tid == tid && w.sid.IsValid() {
		return w.sid
	}
	return spanID(rand.Uint64())
}

// FormatTraceParent writes sc as a W3C traceparent header value,
// "00-<trace id>-<span id>-<flags>"; "" for an invalid sc.
func FormatTraceParent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	var b [55]byte
	copy(b[:], "00-")
	tid, sid := sc.TraceID(), sc.SpanID()
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags())})
	return string(b[:])
}

// ParseTraceParent reads a W3C traceparent header value into a remote span
// context; ok is false for anything else, including all-zero ids. Later
// versions' longer values are read by their version-00 prefix, as the W3C
// recommendation asks.
func ParseTraceParent(s string) (sc trace.SpanContext, ok bool) {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' || (len(s) > 55 && s[55] != '-') {
		return trace.SpanContext{}, false
	}
	var ver [1]byte
	if _, err := hex.Decode(ver[:], []byte(s[:2])); err != nil || ver[0] == 0xff || (ver[0] == 0 && len(s) != 55) {
		return trace.SpanContext{}, false
	}
	tid, err := trace.TraceIDFromHex(s[3:35])
	if err != nil {
		return trace.SpanContext{}, false
	}
	sid, err := trace.SpanIDFromHex(s[36:52])
	if err != nil {
		return trace.SpanContext{}, false
	}
	var flags [1]byte
	if _, err := hex.Decode(flags[:], []byte(s[53:55])); err != nil || !isLowerHex(s[3:55]) {
		return trace.SpanContext{}, false
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid,
		TraceFlags: trace.TraceFlags(flags[0]), Remote: true}), true
}

// isLowerHex reports whether s holds only lowercase hex digits and dashes,
// as traceparent requires.
func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == '-') {
			return false
		}
	}
	return true
}
