package telemetry

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// clearOTelEnv unsets every variable FromEnv reads, for the test.
func clearOTelEnv(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_LOGS_EXPORTER",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
		require.NoError(t, os.Unsetenv(k))
	}
	for _, k := range []string{"HEADERS", "TIMEOUT", "COMPRESSION", "CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY", "INSECURE"} {
		k, kt := "OTEL_EXPORTER_OTLP_"+k, "OTEL_EXPORTER_OTLP_TRACES_"+k
		t.Setenv(k, "")
		t.Setenv(kt, "")
		require.NoError(t, os.Unsetenv(k))
		require.NoError(t, os.Unsetenv(kt))
	}
}

func shutdown(t *testing.T, tel *Telemetry) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = tel.Shutdown(ctx) // nothing listens at the endpoint
}

func TestFromEnvIsOffWithoutAnEndpoint(t *testing.T) {
	clearOTelEnv(t)
	tel, err := FromEnv(context.Background(), Config{})
	require.NoError(t, err)
	require.Nil(t, tel)
	require.Nil(t, tel.TracerProvider())
	require.Nil(t, tel.LoggerProvider())
	primary := slog.NewTextHandler(io.Discard, nil)
	require.Same(t, primary, tel.LogHandler(primary), "no fan-out when off")
	require.NoError(t, tel.Shutdown(context.Background()))

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_SDK_DISABLED", "true")
	tel, err = FromEnv(context.Background(), Config{})
	require.NoError(t, err)
	require.Nil(t, tel, "OTEL_SDK_DISABLED wins")
}

func TestFromEnvTurnsSignalsOnOneByOne(t *testing.T) {
	for _, tc := range []struct {
		name         string
		env          map[string]string
		traces, logs bool
	}{
		{"both", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, true, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, true, false},
		{"logs endpoint", map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://127.0.0.1:1/v1/logs"}, false, true},
		{"traces exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"}, false, true},
		{"logs exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_LOGS_EXPORTER": "none"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tel, err := FromEnv(context.Background(), Config{})
			require.NoError(t, err)
			require.NotNil(t, tel)
			defer shutdown(t, tel)
			require.Equal(t, tc.traces, tel.TracerProvider() != nil)
			require.Equal(t, tc.logs, tel.LoggerProvider() != nil)
		})
	}
}

func TestFromEnvRefusesGRPC(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	_, err := FromEnv(context.Background(), Config{})
	require.ErrorContains(t, err, `OTEL_EXPORTER_OTLP_PROTOCOL="grpc" is not supported`)
	require.ErrorContains(t, err, "4318")
}

func resourceOf(t *testing.T, tel *Telemetry) map[attribute.Key]attribute.Value {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tel.TracerProvider().RegisterSpanProcessor(rec)
	_, span := Tracer(tel.TracerProvider()).Start(context.Background(), "probe")
	span.End()
	require.Len(t, rec.Ended(), 1)
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range rec.Ended()[0].Resource().Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

func TestResourceDescribesTheProcess(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1/v1/traces")
	tel, err := FromEnv(context.Background(), Config{ServiceName: "runfleet-runner", InstanceID: "host-1-abcd"})
	require.NoError(t, err)
	defer shutdown(t, tel)
	res := resourceOf(t, tel)
	host, _ := os.Hostname()
	require.Equal(t, "runfleet-runner", res["service.name"].AsString())
	require.Equal(t, "host-1-abcd", res["service.instance.id"].AsString())
	require.Equal(t, host, res["host.name"].AsString())
	require.Equal(t, int64(os.Getpid()), res["process.pid"].AsInt64())
	require.Equal(t, runtime.GOOS, res["os.type"].AsString())
	require.Equal(t, hostArch(), res["host.arch"].AsString())

	// The environment names the service over the program's default.
	t.Setenv("OTEL_SERVICE_NAME", "billing-runner")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
	tel2, err := FromEnv(context.Background(), Config{ServiceName: "runfleet-runner"})
	require.NoError(t, err)
	defer shutdown(t, tel2)
	res = resourceOf(t, tel2)
	require.Equal(t, "billing-runner", res["service.name"].AsString())
	require.Equal(t, "staging", res["deployment.environment.name"].AsString())
	_, hasInstance := res["service.instance.id"]
	require.False(t, hasInstance)
}

// The OTLP side of the log fan-out takes INFO and above, and DEBUG only
// when the primary handler takes it.
func TestLogHandlerFansOutFromInfo(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:1/v1/logs")
	tel, err := FromEnv(context.Background(), Config{})
	require.NoError(t, err)
	defer shutdown(t, tel)
	ctx := context.Background()
	warnOnly := slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})
	h := tel.LogHandler(warnOnly)
	require.NotSame(t, warnOnly, h)
	require.True(t, h.Enabled(ctx, slog.LevelInfo), "INFO goes to OTLP though the primary takes WARN")
	require.False(t, h.Enabled(ctx, slog.LevelDebug))
	debug := tel.LogHandler(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	require.True(t, debug.Enabled(ctx, slog.LevelDebug))
	require.True(t, h.WithAttrs([]slog.Attr{slog.String("k", "v")}).WithGroup("g").Enabled(ctx, slog.LevelInfo))
}

// With the default sampler SampledUnder reads the parent's flag instead of
// asking the sampler, and must decide as the sampler would; any other
// sampler is asked.
func TestSampledUnderDecidesAsTheSampler(t *testing.T) {
	tid := JobTraceID("job")
	sampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: PlaceholderSpanID(tid, "job"),
		TraceFlags: trace.FlagsSampled, Remote: true})
	unsampled := sampled.WithTraceFlags(0)
	for _, s := range []sdktrace.Sampler{defaultSampler, sdktrace.ParentBased(sdktrace.NeverSample()),
		sdktrace.TraceIDRatioBased(0), sdktrace.AlwaysSample()} {
		e := &ExecSpans{sampler: s, parentDecides: s.Description() == defaultSampler.Description()}
		for _, c := range []struct {
			parent trace.SpanContext
			root   bool
		}{{sampled, false}, {unsampled, false}, {trace.SpanContext{}, true}} {
			ctx := context.Background()
			if !c.root {
				ctx = trace.ContextWithRemoteSpanContext(ctx, c.parent)
			}
			want := s.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid, Name: "T",
				Kind: trace.SpanKindConsumer}).Decision == sdktrace.RecordAndSample
			require.Equal(t, want, e.SampledUnder(c.parent, c.root, tid, "T"), "%s, parent sampled %v, root %v",
				s.Description(), c.parent.IsSampled(), c.root)
		}
	}
	t.Setenv("OTEL_TRACES_SAMPLER", "")
	require.Equal(t, defaultSampler.Description(), samplerFromEnv().Description(), "no OTEL_TRACES_SAMPLER gives the default")
}
