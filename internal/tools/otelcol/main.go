// Command runfleet-otelcol is the OpenTelemetry Collector that runfleet's
// tests send traces and logs to: the OTLP receiver, the file exporter the
// tests read, and the nop exporter for benchmarks (what a collector
// elsewhere costs is not the runner's), nothing else. It is a module of
// its own, so its dependencies stay out of runfleet's, and its go.mod pins
// the collector's version; `go tool task setup-otel` builds it into
// $(go env GOBIN) or $(go env GOPATH)/bin, where testenv.NewOTLPReceiver
// finds it.
//
//	runfleet-otelcol --config file:/path/to/config.yaml
package main

import (
	"context"
	"log"

	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/nopexporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry"
	"go.uber.org/zap"
)

// telemetryConfig is the collector's own telemetry settings: none. The
// default telemetry would serve metrics on a fixed port, which parallel
// tests cannot share.
type telemetryConfig struct{}

func main() {
	info := component.BuildInfo{Command: "runfleet-otelcol",
		Description: "OpenTelemetry Collector for runfleet's tests (OTLP in, JSON file or nothing out)", Version: "test"}
	set := otelcol.CollectorSettings{BuildInfo: info, Factories: factories,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{ResolverSettings: confmap.ResolverSettings{
			ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory()}, DefaultScheme: "file"}}}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		log.Fatal(err)
	}
}

func factories() (otelcol.Factories, error) {
	recv, err := otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory())
	if err != nil {
		return otelcol.Factories{}, err
	}
	exp, err := otelcol.MakeFactoryMap[exporter.Factory](fileexporter.NewFactory(), nopexporter.NewFactory())
	if err != nil {
		return otelcol.Factories{}, err
	}
	tel := telemetry.NewFactory(func() component.Config { return &telemetryConfig{} },
		telemetry.WithCreateLogger(warnLogger))
	return otelcol.Factories{Receivers: recv, Exporters: exp, Telemetry: tel}, nil
}

// warnLogger logs the collector's warnings and errors to standard error.
func warnLogger(context.Context, telemetry.LoggerSettings, component.Config) (*zap.Logger, component.ShutdownFunc, error) {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	l, err := cfg.Build()
	return l, nil, err
}
