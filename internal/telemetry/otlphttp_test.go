package telemetry

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/runfleet/runfleet/internal/testenv"
)

// Execution spans reach a real collector through a proxy that fails
// requests: 503s are retried, a 400 or 500 is not (OTLP/HTTP says which
// are retryable), and gzip bodies arrive intact.
func TestTraceSenderReachesTheCollectorThroughFaults(t *testing.T) {
	col := testenv.NewOTLPReceiver(t)
	proxy := testenv.NewFaultProxy(t, col.Endpoint())
	for _, compression := range []string{"none", "gzip"} {
		t.Run(compression, func(t *testing.T) {
			clearOTelEnv(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", proxy.URL)
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", compression)
			s, err := newTraceSender()
			require.NoError(t, err)
			s.http.RetryWaitMin, s.http.RetryWaitMax = 10*time.Millisecond, 50*time.Millisecond
			enc := newSpanEncoder([]attribute.KeyValue{attribute.String("service.name", "sender-test")}, Scope)

			tid := JobTraceID("job-" + compression)
			rec := func(seq int64) ExecRecord {
				return ExecRecord{TraceID: tid, SpanID: ExecutionSpanID(tid, "job", seq, 1), Flags: trace.FlagsSampled,
					TaskName: "Tile", Start: time.Now(), End: time.Now(), JobID: "job-" + compression, TaskID: seq,
					Attempt: 1, Destination: "rf:{c:x}:t:Tile@1"}
			}
			requests := proxy.Requests()
			proxy.FailNext(2, http.StatusServiceUnavailable)
			require.NoError(t, s.send(encoded(enc, []ExecRecord{rec(1), rec(2)})))
			require.Equal(t, requests+3, proxy.Requests(), "two 503s retried, then sent")

			for _, status := range []int{http.StatusBadRequest, http.StatusInternalServerError} {
				requests = proxy.Requests()
				proxy.FailNext(1, status)
				err = s.send(encoded(enc, []ExecRecord{rec(3)}))
				require.ErrorContains(t, err, http.StatusText(status))
				require.ErrorContains(t, err, proxy.URL+"/v1/traces")
				require.Equal(t, requests+1, proxy.Requests(), "status %d is final", status)
			}

			// Out of time while the collector keeps failing: the error
			// says what the attempts met, not only that time ran out.
			s.timeout = 300 * time.Millisecond
			s.http.RetryWaitMin, s.http.RetryWaitMax = 100*time.Millisecond, 100*time.Millisecond
			proxy.FailNext(100, http.StatusServiceUnavailable)
			err = s.send(encoded(enc, []ExecRecord{rec(4)}))
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.ErrorContains(t, err, "the last: 503 Service Unavailable")
			proxy.Clear()

			// A Retry-After past the deadline is not waited for.
			requests = proxy.Requests()
			proxy.Inject(testenv.Fault{Kind: testenv.FaultStatus, Status: http.StatusTooManyRequests, RetryAfter: "60"})
			err = s.send(encoded(enc, []ExecRecord{rec(5)}))
			require.ErrorContains(t, err, "429 Too Many Requests")
			require.NotErrorIs(t, err, context.DeadlineExceeded, "it gave up at once, not when time ran out")
			require.Equal(t, requests+1, proxy.Requests())
			s.timeout = 10 * time.Second

			spans := col.WaitSpans(t, tid.String(), 2, 10*time.Second)
			require.Len(t, spans, 2, "the refused span was not sent again")
			require.Equal(t, "task/Tile", spans[0].Name)
			require.Equal(t, "CONSUMER", spans[0].Kind)
			require.Equal(t, "job-"+compression, spans[0].Attributes["runfleet.job.id"])
			require.Equal(t, "sender-test", spans[0].Resource["service.name"])
		})
	}
}

// A variable the sender cannot use is refused by name, before anything
// is sent.
func TestTraceSenderRefusesBadEnvironment(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no scheme", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, `OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318" is not an http:// or https:// URL`},
		{"traces endpoint no host", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http:///v1/traces"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{"timeout", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, `OTEL_EXPORTER_OTLP_TIMEOUT="10s" is not a number of milliseconds`},
		{"compression", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "zstd"}, `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION="zstd" is not supported`},
		{"header", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_HEADERS": "api-key"}, `OTEL_EXPORTER_OTLP_HEADERS: "api-key" is not key=value`},
		{"header name", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "clé=1"}, `OTEL_EXPORTER_OTLP_TRACES_HEADERS: "clé=1" is not key=value with a header name as key`},
		{"header value", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_HEADERS": "a=b%0Ac"}, `the value of "a" holds a control character`},
		{"negative timeout", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "-1"}, `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT="-1" is not a number of milliseconds`},
		{"missing CA", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:1", "OTEL_EXPORTER_OTLP_CERTIFICATE": filepath.Join(dir, "none.pem")}, "OTEL_EXPORTER_OTLP_CERTIFICATE: open"},
		{"CA not PEM", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": notPEM}, "holds no PEM certificate"},
		{"half a client certificate", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:1", "OTEL_EXPORTER_OTLP_CLIENT_KEY": notPEM}, "needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := FromEnv(t.Context(), Config{})
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestTraceSenderReadsTheEnvironmentAsTheSDK(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318/base/")
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=abc%20def, tenant = one")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "tenant=two")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")
	s, err := newTraceSender()
	require.NoError(t, err)
	require.Equal(t, "https://collector:4318/base/v1/traces", s.url, "/v1/traces added to the base URL")
	require.Empty(t, s.headers.Get("api-key"), "the signal's own headers replace the generic ones")
	require.Equal(t, "two", s.headers.Get("tenant"))
	require.Equal(t, 2500*time.Millisecond, s.timeout)
	require.False(t, s.gzip)

	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700")
	s, err = newTraceSender()
	require.NoError(t, err)
	require.Equal(t, "http://traces:4318/", s.url, "a signal's endpoint is used as it is, with / for no path")
	require.Equal(t, 700*time.Millisecond, s.timeout)

	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces:4318/custom")
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	s, err = newTraceSender()
	require.NoError(t, err)
	require.Equal(t, "http://traces:4318/custom", s.url, "insecure sends plain HTTP, as the SDK's exporter")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "false")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/custom")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "")
	s, err = newTraceSender()
	require.NoError(t, err)
	require.Equal(t, "https://traces:4318/custom", s.url, "the signal's insecure=false means HTTPS, as the SDK's exporter")
	require.Zero(t, s.timeout, "0: no timeout, as in the SDK")

	// Headers of the generic variable when the signal has none.
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "")
	s, err = newTraceSender()
	require.NoError(t, err)
	require.Equal(t, "abc def", s.headers.Get("api-key"))
	require.Equal(t, "one", s.headers.Get("tenant"))
}

// A client certificate and its key come as a pair from the same level.
func TestTraceSenderTakesClientCertificatesAsPairs(t *testing.T) {
	clearOTelEnv(t)
	dir := t.TempDir()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", filepath.Join(dir, "cert.pem"))
	t.Setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", filepath.Join(dir, "key.pem"))
	_, err := newTraceSender()
	require.ErrorContains(t, err, "needs both OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
		"the generic key does not complete the signal's certificate")
}

func TestPartialSuccessIsRead(t *testing.T) {
	// ExportTraceServiceResponse{partial_success: {rejected_spans: 3, error_message: "too old"}}
	body := []byte{0x0a, 0x0b, 0x08, 0x03, 0x12, 0x07, 't', 'o', 'o', ' ', 'o', 'l', 'd'}
	rejected, msg := partialSuccess(body)
	require.Equal(t, int64(3), rejected)
	require.Equal(t, "too old", msg)
	rejected, msg = partialSuccess(nil)
	require.Zero(t, rejected)
	require.Empty(t, msg)
	rejected, msg = partialSuccess([]byte{0x0a, 0x7f}) // cut short
	require.Zero(t, rejected)
	require.Empty(t, msg)
}

// A transport that reads a request body after its export ended reads
// nothing of the next export, whose bytes reuse the same buffer.
func TestExportBodyIsNotReadAfterItsExport(t *testing.T) {
	var e exportBody
	buf := []byte("first export")
	e.begin(buf)
	r, err := e.reader()
	require.NoError(t, err)
	require.Equal(t, len(buf), r.(interface{ Len() int }).Len())
	p := make([]byte, 5)
	n, err := r.Read(p)
	require.NoError(t, err)
	require.Equal(t, "first", string(p[:n]))
	e.end()
	copy(buf, "later")
	e.begin(buf)
	_, err = r.Read(p)
	require.ErrorIs(t, err, errExportEnded)
	r2, err := e.reader()
	require.NoError(t, err)
	all, err := io.ReadAll(r2)
	require.NoError(t, err)
	require.Equal(t, "later export", string(all))
}

// encoded is the request of all records.
func encoded(enc *spanEncoder, records []ExecRecord) []byte {
	req, _ := enc.encode(records, maxExportBytes)
	return req
}
