package telemetry

import (
	"math"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/encoding/protowire"
)

// The OTLP protobuf of execution spans, written field by field into reused
// buffers: an ExportTraceServiceRequest with one ResourceSpans holding one
// ScopeSpans. Generated messages marshalled by reflection cost a runner
// about 1.7 µs and a dozen allocations per span; this costs a few hundred
// nanoseconds and none once the buffers have grown. Field numbers are those
// of opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto;
// a test decodes the output with the generated messages and compares.

// Field numbers used below.
const (
	fieldRequestResourceSpans = 1 // ExportTraceServiceRequest.resource_spans

	fieldResourceSpansResource = 1 // ResourceSpans.resource
	fieldResourceSpansScope    = 2 // ResourceSpans.scope_spans
	fieldResourceAttributes    = 1 // Resource.attributes

	fieldScopeSpansScope = 1 // ScopeSpans.scope
	fieldScopeSpansSpans = 2 // ScopeSpans.spans
	fieldScopeName       = 1 // InstrumentationScope.name

	fieldSpanTraceID    = 1
	fieldSpanSpanID     = 2
	fieldSpanParentID   = 4
	fieldSpanName       = 5
	fieldSpanKind       = 6
	fieldSpanStart      = 7
	fieldSpanEnd        = 8
	fieldSpanAttributes = 9
	fieldSpanStatus     = 15
	fieldSpanFlags      = 16

	fieldKeyValueKey   = 1
	fieldKeyValueValue = 2

	fieldAnyString = 1
	fieldAnyBool   = 2
	fieldAnyInt    = 3
	fieldAnyDouble = 4
	fieldAnyArray  = 5
	fieldArrayVals = 1 // ArrayValue.values

	spanKindConsumer = 5 // Span.SpanKind SPAN_KIND_CONSUMER

	// SpanFlags: the parent's is-remote bit is known, and set.
	spanFlagHasIsRemote = 0x100
	spanFlagIsRemote    = 0x200
)

// spanEncoder writes requests of execution spans. Not safe for concurrent
// use: ExecSpans' export goroutine owns it.
type spanEncoder struct {
	resource []byte // ResourceSpans.resource, tag included
	scope    []byte // ScopeSpans.scope, tag included
	buf      []byte // the request, after headroom for its headers
	span     []byte // one span's fields
}

func newSpanEncoder(resourceAttrs []attribute.KeyValue, scopeName string) *spanEncoder {
	var res []byte
	for _, a := range resourceAttrs {
		res = appendKeyValue(res, fieldResourceAttributes, string(a.Key), a.Value)
	}
	e := &spanEncoder{}
	e.resource = protowire.AppendBytes(protowire.AppendTag(nil, fieldResourceSpansResource, protowire.BytesType), res)
	scope := protowire.AppendString(protowire.AppendTag(nil, fieldScopeName, protowire.BytesType), scopeName)
	e.scope = protowire.AppendBytes(protowire.AppendTag(nil, fieldScopeSpansScope, protowire.BytesType), scope)
	return e
}

// encodeExecAttrs is the span attributes of attrs, as ExecAttrs keeps them.
func encodeExecAttrs(attrs []attribute.KeyValue) []byte {
	var b []byte
	for _, a := range attrs {
		b = appendKeyValue(b, fieldSpanAttributes, string(a.Key), a.Value)
	}
	return b
}

// encode is the request of the first n records, as many as keep its spans
// within maxBytes (at least one); the slice is valid until the next call.
func (e *spanEncoder) encode(records []ExecRecord, maxBytes int) (request []byte, n int) {
	// Room for the headers, written once the spans' length is known.
	headroom := 2*(1+protowire.SizeVarint(1<<62)) + len(e.resource) + len(e.scope)
	e.buf = append(e.buf[:0], make([]byte, headroom)...)
	for n = 0; n < len(records); n++ {
		before := len(e.buf)
		e.span = appendExecSpan(e.span[:0], &records[n])
		e.buf = protowire.AppendTag(e.buf, fieldScopeSpansSpans, protowire.BytesType)
		e.buf = protowire.AppendBytes(e.buf, e.span)
		if n > 0 && len(e.buf)-headroom > maxBytes {
			e.buf = e.buf[:before]
			break
		}
	}
	spans := len(e.buf) - headroom
	scopeSpans := len(e.scope) + spans
	resourceSpans := len(e.resource) + protowire.SizeTag(fieldResourceSpansScope) +
		protowire.SizeVarint(uint64(scopeSpans)) + scopeSpans
	head := protowire.AppendTag(e.span[:0], fieldRequestResourceSpans, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(resourceSpans))
	head = append(head, e.resource...)
	head = protowire.AppendTag(head, fieldResourceSpansScope, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(scopeSpans))
	head = append(head, e.scope...)
	e.span = head
	start := headroom - len(head)
	copy(e.buf[start:], head)
	return e.buf[start:], n
}

// appendExecSpan appends the fields of r's span (not its tag or length).
func appendExecSpan(b []byte, r *ExecRecord) []byte {
	b = protowire.AppendTag(b, fieldSpanTraceID, protowire.BytesType)
	b = protowire.AppendBytes(b, r.TraceID[:])
	b = protowire.AppendTag(b, fieldSpanSpanID, protowire.BytesType)
	b = protowire.AppendBytes(b, r.SpanID[:])
	if r.Parent.IsValid() {
		b = protowire.AppendTag(b, fieldSpanParentID, protowire.BytesType)
		b = protowire.AppendBytes(b, r.Parent[:])
	}
	const prefix = "task/"
	b = protowire.AppendTag(b, fieldSpanName, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(prefix)+len(r.TaskName)))
	b = append(append(b, prefix...), r.TaskName...)
	b = protowire.AppendTag(b, fieldSpanKind, protowire.VarintType)
	b = protowire.AppendVarint(b, spanKindConsumer)
	b = protowire.AppendTag(b, fieldSpanStart, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(r.Start.UnixNano()))
	b = protowire.AppendTag(b, fieldSpanEnd, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(r.End.UnixNano()))
	if r.Common != nil {
		b = append(b, r.Common.encoded...)
	}
	b = appendStringKV(b, string(attrJobID), r.JobID)
	b = appendIntKV(b, string(attrTaskID), r.TaskID)
	b = appendIntKV(b, string(attrAttempt), int64(r.Attempt))
	b = appendStringKV(b, string(attrDestination), r.Destination)
	if r.MessageID != "" {
		b = appendStringKV(b, string(attrMessageID), r.MessageID)
	}
	// Status unset: an empty message.
	b = protowire.AppendTag(b, fieldSpanStatus, protowire.BytesType)
	b = protowire.AppendVarint(b, 0)
	flags := uint32(r.Flags) | spanFlagHasIsRemote
	if r.ParentRemote {
		flags |= spanFlagIsRemote
	}
	b = protowire.AppendTag(b, fieldSpanFlags, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, flags)
}

// appendStringKV appends a span attribute key = string value.
func appendStringKV(b []byte, key, value string) []byte {
	anyLen := protowire.SizeTag(fieldAnyString) + protowire.SizeBytes(len(value))
	b = appendKeyValueHead(b, fieldSpanAttributes, key, anyLen)
	b = protowire.AppendTag(b, fieldAnyString, protowire.BytesType)
	return protowire.AppendString(b, value)
}

// appendIntKV appends a span attribute key = integer value.
func appendIntKV(b []byte, key string, value int64) []byte {
	anyLen := protowire.SizeTag(fieldAnyInt) + protowire.SizeVarint(uint64(value))
	b = appendKeyValueHead(b, fieldSpanAttributes, key, anyLen)
	b = protowire.AppendTag(b, fieldAnyInt, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(value))
}

// appendKeyValueHead appends a KeyValue as field num up to its AnyValue's
// length, which is anyLen: the caller appends the AnyValue's fields.
func appendKeyValueHead(b []byte, num protowire.Number, key string, anyLen int) []byte {
	kvLen := protowire.SizeTag(fieldKeyValueKey) + protowire.SizeBytes(len(key)) +
		protowire.SizeTag(fieldKeyValueValue) + protowire.SizeBytes(anyLen)
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(kvLen))
	b = protowire.AppendTag(b, fieldKeyValueKey, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, fieldKeyValueValue, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(anyLen))
}

// appendKeyValue appends key = v, of any attribute type, as field num; for
// attributes encoded once (resource, a runner's common ones), so it may
// allocate.
func appendKeyValue(b []byte, num protowire.Number, key string, v attribute.Value) []byte {
	kv := protowire.AppendTag(nil, fieldKeyValueKey, protowire.BytesType)
	kv = protowire.AppendString(kv, key)
	kv = protowire.AppendTag(kv, fieldKeyValueValue, protowire.BytesType)
	kv = protowire.AppendBytes(kv, appendAnyValue(nil, v))
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, kv)
}

// appendAnyValue appends the fields of v's AnyValue.
func appendAnyValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		b = protowire.AppendTag(b, fieldAnyBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, fieldAnyInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, fieldAnyDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		b = protowire.AppendTag(b, fieldAnyString, protowire.BytesType)
		return protowire.AppendString(b, v.AsString())
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE:
		var elems []attribute.Value
		switch v.Type() {
		case attribute.BOOLSLICE:
			for _, x := range v.AsBoolSlice() {
				elems = append(elems, attribute.BoolValue(x))
			}
		case attribute.INT64SLICE:
			for _, x := range v.AsInt64Slice() {
				elems = append(elems, attribute.Int64Value(x))
			}
		case attribute.FLOAT64SLICE:
			for _, x := range v.AsFloat64Slice() {
				elems = append(elems, attribute.Float64Value(x))
			}
		default:
			for _, x := range v.AsStringSlice() {
				elems = append(elems, attribute.StringValue(x))
			}
		}
		var arr []byte
		for _, x := range elems {
			arr = protowire.AppendTag(arr, fieldArrayVals, protowire.BytesType)
			arr = protowire.AppendBytes(arr, appendAnyValue(nil, x))
		}
		b = protowire.AppendTag(b, fieldAnyArray, protowire.BytesType)
		return protowire.AppendBytes(b, arr)
	}
	b = protowire.AppendTag(b, fieldAnyString, protowire.BytesType)
	return protowire.AppendString(b, v.Emit())
}
