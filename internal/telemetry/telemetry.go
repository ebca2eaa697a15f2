// Package telemetry sets up OpenTelemetry for runfleet's programs from the
// standard environment variables: traces and logs exported over OTLP/HTTP
// when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// OTEL_EXPORTER_OTLP_LOGS_ENDPOINT) is set, nothing at all otherwise. A
// program with none of them set makes no provider, so tracing costs nothing
// on the task path.
//
// It also holds what makes a job one trace across processes: the W3C
// traceparent a job stores, and span ids of executions that every runner
// can compute (ExecutionSpanID) and the IDGenerator that gives a span the id
// wanted for it.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"

	"go.opentelemetry.io/contrib/bridges/otelslog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	logglobal "go.opentelemetry.io/otel/log/global"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of runfleet's spans and log records.
const Scope = "github.com/runfleet/runfleet"

// Config names the process in what it exports.
type Config struct {
	// ServiceName is service.name unless OTEL_SERVICE_NAME or
	// OTEL_RESOURCE_ATTRIBUTES names one. Default "runfleet".
	ServiceName string
	// InstanceID is service.instance.id (a runner's id); "" leaves it to
	// OTEL_RESOURCE_ATTRIBUTES.
	InstanceID string
}

// Telemetry is the process's OpenTelemetry providers, made from the
// environment. Shutdown flushes what they hold.
type Telemetry struct {
	tp        *sdktrace.TracerProvider // nil when traces are off
	execSpans *ExecSpans               // nil when traces are off
	lp        *sdklog.LoggerProvider   // nil when logs are off

	shutdown sync.Once
	err      error
}

// TracesEnabled reports whether the environment asks for traces: an OTLP
// endpoint for them is set, and neither OTEL_SDK_DISABLED=true nor
// OTEL_TRACES_EXPORTER=none turns them off.
func TracesEnabled() bool { return signalEnabled("TRACES") }

// LogsEnabled is TracesEnabled for logs (OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
// OTEL_LOGS_EXPORTER).
func LogsEnabled() bool { return signalEnabled("LOGS") }

func signalEnabled(signal string) bool {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") ||
		strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_"+signal+"_EXPORTER")), "none") {
		return false
	}
	return strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) != "" ||
		strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT")) != ""
}

// FromEnv sets up the providers the environment asks for. It returns nil,
// and no error, when it asks for none. Exporting starts lazily: nothing is
// sent, and no connection made, until there is something to export.
func FromEnv(ctx context.Context, cfg Config) (*Telemetry, error) {
	traces, logs := TracesEnabled(), LogsEnabled()
	if !traces && !logs {
		return nil, nil
	}
	for _, signal := range []string{"TRACES", "LOGS"} {
		if err := checkProtocol(signal); err != nil {
			return nil, err
		}
	}
	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{}
	if traces {
		// First: it refuses, by name, a variable the SDK's exporter would
		// only log about.
		sender, err := newTraceSender()
		if err != nil {
			return nil, err
		}
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("set up OpenTelemetry traces: %w", err)
		}
		// The batcher reads OTEL_BSP_* (queue size, delay, batch size).
		sampler := samplerFromEnv()
		t.tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
			sdktrace.WithIDGenerator(NewIDGenerator()), sdktrace.WithSampler(sampler))
		t.execSpans = newExecSpans(sender, res, sampler)
	}
	if logs {
		exp, err := otlploghttp.New(ctx)
		if err != nil {
			_ = t.Shutdown(ctx)
			return nil, fmt.Errorf("set up OpenTelemetry logs: %w", err)
		}
		// The batch processor reads OTEL_BLRP_*.
		t.lp = sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)), sdklog.WithResource(res))
	}
	return t, nil
}

// checkProtocol refuses a protocol the OTLP/HTTP exporters cannot speak:
// they would send HTTP to a gRPC port and every export would fail.
func checkProtocol(signal string) error {
	name := "OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL"
	p := os.Getenv(name)
	if p == "" {
		name = "OTEL_EXPORTER_OTLP_PROTOCOL"
		p = os.Getenv(name)
	}
	switch strings.TrimSpace(p) {
	case "", "http/protobuf", "http/json":
		return nil
	}
	return fmt.Errorf("set up OpenTelemetry: %s=%q is not supported: runfleet exports OTLP over HTTP; unset it and point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's OTLP/HTTP port (usually 4318)", name, p)
}

// newResource describes the process: service.name (cfg's, overridden by
// the environment), service.instance.id, host.name, host.arch, os.type and
// process.pid, plus OTEL_RESOURCE_ATTRIBUTES.
func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	name := cfg.ServiceName
	if name == "" {
		name = "runfleet"
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(name), semconv.HostArchKey.String(hostArch())}
	if cfg.InstanceID != "" {
		attrs = append(attrs, semconv.ServiceInstanceID(cfg.InstanceID))
	}
	// Later options win: the environment over the defaults above.
	res, err := resource.New(ctx, resource.WithSchemaURL(semconv.SchemaURL), resource.WithAttributes(attrs...),
		resource.WithTelemetrySDK(), resource.WithHost(), resource.WithOSType(), resource.WithProcessPID(),
		resource.WithFromEnv())
	if err != nil && res == nil {
		return nil, fmt.Errorf("set up OpenTelemetry resource: %w", err)
	}
	// A partly detected resource (say, no host name) is still worth having.
	return res, nil
}

// hostArch is host.arch as the semantic conventions spell GOARCH.
func hostArch() string {
	switch runtime.GOARCH {
	case "386":
		return "x86"
	case "arm":
		return "arm32"
	case "ppc64", "ppc64le":
		return "ppc64"
	}
	return runtime.GOARCH
}

// TracerProvider is the traces provider, nil when traces are off.
func (t *Telemetry) TracerProvider() *sdktrace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.tp
}

// ExecSpans is the export queue of execution spans, nil when traces are
// off.
func (t *Telemetry) ExecSpans() *ExecSpans {
	if t == nil {
		return nil
	}
	return t.execSpans
}

// LoggerProvider is the logs provider, nil when logs are off.
func (t *Telemetry) LoggerProvider() *sdklog.LoggerProvider {
	if t == nil {
		return nil
	}
	return t.lp
}

// LogHandler returns primary, and when logs are exported a handler that
// hands each record to primary and to the OTLP exporter as well. The
// exporter takes INFO and above, and whatever lower level primary takes;
// records carry the trace and span of the context they are logged with.
func (t *Telemetry) LogHandler(primary slog.Handler) slog.Handler {
	if t == nil || t.lp == nil {
		return primary
	}
	otlp := &leveled{Handler: otelslog.NewHandler(Scope, otelslog.WithLoggerProvider(t.lp)), also: primary}
	return slog.NewMultiHandler(primary, otlp)
}

// leveled passes records of INFO and above, and those also takes.
type leveled struct {
	slog.Handler
	also slog.Handler
}

func (h *leveled) Enabled(ctx context.Context, l slog.Level) bool {
	return (l >= slog.LevelInfo || h.also.Enabled(ctx, l)) && h.Handler.Enabled(ctx, l)
}

func (h *leveled) WithAttrs(as []slog.Attr) slog.Handler {
	return &leveled{Handler: h.Handler.WithAttrs(as), also: h.also}
}

func (h *leveled) WithGroup(name string) slog.Handler {
	return &leveled{Handler: h.Handler.WithGroup(name), also: h.also}
}

// SetGlobal makes t's providers OpenTelemetry's global ones (otel.Tracer,
// the log bridges), installs the W3C trace-context and baggage
// propagators, and sends the SDK's export errors to logger.
func (t *Telemetry) SetGlobal(logger *slog.Logger) {
	if t == nil {
		return
	}
	if t.tp != nil {
		otel.SetTracerProvider(t.tp)
	}
	if t.lp != nil {
		logglobal.SetLoggerProvider(t.lp)
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if logger != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			logger.Warn("OpenTelemetry export failed", slog.Any("error", err))
		}))
	}
}

// Shutdown flushes what the providers hold and stops them; later calls
// return the first call's error. ctx bounds the flush.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.shutdown.Do(func() {
		var errs []error
		if t.execSpans != nil {
			errs = append(errs, t.execSpans.shutdown(ctx))
		}
		if t.tp != nil {
			errs = append(errs, t.tp.Shutdown(ctx))
		}
		if t.lp != nil {
			errs = append(errs, t.lp.Shutdown(ctx))
		}
		if err := errors.Join(errs...); err != nil {
			t.err = fmt.Errorf("flush OpenTelemetry: %w", err)
		}
	})
	return t.err
}

// Tracer is the tracer of runfleet's spans from tp.
func Tracer(tp trace.TracerProvider) trace.Tracer { return tp.Tracer(Scope) }
