package telemetry

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/runfleet/runfleet/internal/testenv"
)

// BenchmarkExecSpansExport is the cost of exporting execution spans, as a
// runner's burn-down makes them, to a real OpenTelemetry Collector that
// decodes and drops them: CPU per span in this process (queueing,
// encoding, the HTTP request) and in the collector (the HTTP request,
// decoding). Batches of execSpanBatch spans, the default.
func BenchmarkExecSpansExport(b *testing.B) {
	col := testenv.NewDiscardingOTLPReceiver(b)
	b.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", col.Endpoint()+"/v1/traces")
	b.Setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "")
	tel, err := FromEnv(context.Background(), Config{ServiceName: "bench", InstanceID: "host-1-abcd"})
	require.NoError(b, err)
	spans := tel.ExecSpans()
	common := NewExecAttrs(attribute.String("runfleet.runner.id", "host-1-abcd"),
		attribute.String("runfleet.cluster", "bench"), attribute.String("messaging.system", "runfleet"))
	tid := JobTraceID("0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d")
	parent := ExecutionSpanID(tid, "0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d", 0, 1)
	cpu := func() (self, collector time.Duration) {
		var ru syscall.Rusage
		require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
		collector, err := col.CPUTime()
		require.NoError(b, err)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), collector
	}
	selfBefore, colBefore := cpu()
	start := time.Now()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		spans.Add(ExecRecord{TraceID: tid, SpanID: ExecutionSpanID(tid, "0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d", int64(n), 1),
			Parent: parent, ParentRemote: true, Flags: trace.FlagsSampled, TaskName: "Noop", Start: start, End: start,
			JobID: "0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d", TaskID: int64(n), Attempt: 1,
			Destination: "rf:{c:bench}:t:Noop@1", MessageID: "1764460800000-7", Common: common})
		if n%execSpanBatch == 0 {
			require.NoError(b, spans.Flush(context.Background()))
		}
	}
	require.NoError(b, spans.Flush(context.Background()))
	// The collector has answered every request: what it spent is counted.
	selfAfter, colAfter := cpu()
	require.Zero(b, spans.Dropped())
	require.NoError(b, tel.Shutdown(context.Background()))
	b.ReportMetric(float64((selfAfter-selfBefore).Nanoseconds())/float64(n), "cpu-ns/span")
	b.ReportMetric(float64((colAfter-colBefore).Nanoseconds())/float64(n), "collector-cpu-ns/span")
}
