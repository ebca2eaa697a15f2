package telemetry

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// The hand-written encoder must write what the generated OTLP messages
// would: its output is decoded with them and compared field by field.
func TestSpanEncoderWritesOTLP(t *testing.T) {
	resAttrs := []attribute.KeyValue{attribute.String("service.name", "runner"), attribute.Int64("process.pid", 4242),
		attribute.Bool("ok", true), attribute.Float64("ratio", 0.25), attribute.StringSlice("tags", []string{"a", "é"}),
		attribute.Int64Slice("ports", []int64{-1, 1 << 40}), attribute.BoolSlice("bits", []bool{true, false}),
		attribute.Float64Slice("f", []float64{1.5})}
	common := NewExecAttrs(attribute.String("runfleet.runner.id", "host-1"), attribute.String("runfleet.cluster", "tiles"))
	tid := JobTraceID("job-1")
	start := time.Unix(1764460800, 123456789)
	records := []ExecRecord{
		{TraceID: tid, SpanID: ExecutionSpanID(tid, "job-1", 0, 1), Flags: trace.FlagsSampled, TaskName: "Root",
			Start: start, End: start.Add(time.Millisecond), JobID: "job-1", TaskID: 0, Attempt: 1,
			Destination: "rf:{c:tiles}:t:Root@1", Common: common},
		{TraceID: tid, SpanID: ExecutionSpanID(tid, "job-1", 300, 2), Parent: ExecutionSpanID(tid, "job-1", 0, 1),
			ParentRemote: true, Flags: trace.FlagsSampled, TaskName: "Tile " + string(make([]byte, 200)),
			Start: start, End: start.Add(time.Hour), JobID: "job-1", TaskID: 300, Attempt: 2,
			Destination: "rf:{c:tiles}:t:Tile@1", MessageID: "1764460800000-7", Common: common},
		{TraceID: tid, SpanID: ExecutionSpanID(tid, "job-1", 1<<40, 1), TaskName: "NoCommon", Start: start,
			End: start, JobID: "job-1", TaskID: 1 << 40, Attempt: 1, Destination: "d"},
	}
	enc := newSpanEncoder(resAttrs, Scope)
	// Twice, so that reused buffers are covered too.
	for range 2 {
		var got coltracepb.ExportTraceServiceRequest
		req, n := enc.encode(records, maxExportBytes)
		require.Equal(t, len(records), n)
		require.NoError(t, proto.Unmarshal(req, &got))
		requireEqualProto(t, wantRequest(resAttrs, records), &got)
	}
	var got coltracepb.ExportTraceServiceRequest
	req, n := enc.encode(nil, maxExportBytes)
	require.Zero(t, n)
	require.NoError(t, proto.Unmarshal(req, &got))
	requireEqualProto(t, wantRequest(resAttrs, nil), &got, "an empty batch")

	// A request stops before the span that would take it past the byte
	// bound; a single span over it still goes.
	got.Reset()
	req, n = enc.encode(records, 300)
	require.Equal(t, 1, n, "the second span has a 205-byte name")
	require.NoError(t, proto.Unmarshal(req, &got))
	requireEqualProto(t, wantRequest(resAttrs, records[:1]), &got)
	req, n = enc.encode(records[1:], 10)
	require.Equal(t, 1, n)
	got.Reset()
	require.NoError(t, proto.Unmarshal(req, &got))
	requireEqualProto(t, wantRequest(resAttrs, records[1:2]), &got)
}

// requireEqualProto fails unless got is want, showing both.
func requireEqualProto(t *testing.T, want, got proto.Message, msg ...any) {
	t.Helper()
	require.True(t, proto.Equal(want, got), "want %v\ngot  %v\n%v", want, got, msg)
}

// wantRequest is the request of records built with the generated messages.
func wantRequest(resAttrs []attribute.KeyValue, records []ExecRecord) *coltracepb.ExportTraceServiceRequest {
	spans := make([]*tracepb.Span, 0, len(records))
	for _, r := range records {
		var attrs []*commonpb.KeyValue
		if r.Common != nil {
			attrs = append(attrs, pbKV("runfleet.runner.id", pbString("host-1")), pbKV("runfleet.cluster", pbString("tiles")))
		}
		attrs = append(attrs, pbKV("runfleet.job.id", pbString(r.JobID)), pbKV("runfleet.task.id", pbInt(r.TaskID)),
			pbKV("runfleet.task.attempt", pbInt(int64(r.Attempt))), pbKV("messaging.destination.name", pbString(r.Destination)))
		if r.MessageID != "" {
			attrs = append(attrs, pbKV("messaging.message.id", pbString(r.MessageID)))
		}
		flags := uint32(r.Flags) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
		if r.ParentRemote {
			flags |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
		}
		s := &tracepb.Span{TraceId: r.TraceID[:], SpanId: r.SpanID[:], Name: "task/" + r.TaskName,
			Kind: tracepb.Span_SPAN_KIND_CONSUMER, StartTimeUnixNano: uint64(r.Start.UnixNano()),
			EndTimeUnixNano: uint64(r.End.UnixNano()), Attributes: attrs, Flags: flags, Status: &tracepb.Status{}}
		if r.Parent.IsValid() {
			s.ParentSpanId = r.Parent[:]
		}
		spans = append(spans, s)
	}
	res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
		pbKV("service.name", pbString("runner")), pbKV("process.pid", pbInt(4242)),
		pbKV("ok", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}),
		pbKV("ratio", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.25}}),
		pbKV("tags", pbArray(pbString("a"), pbString("é"))),
		pbKV("ports", pbArray(pbInt(-1), pbInt(1<<40))),
		pbKV("bits", pbArray(&commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}},
			&commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: false}})),
		pbKV("f", pbArray(&commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 1.5}})),
	}}
	if len(resAttrs) == 0 {
		res.Attributes = nil
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{Resource: res,
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: Scope}, Spans: spans}}}}}
}

func pbKV(k string, v *commonpb.AnyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: v}
}

func pbString(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func pbInt(i int64) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: i}}
}

func pbArray(vals ...*commonpb.AnyValue) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vals}}}
}
