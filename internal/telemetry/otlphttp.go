package telemetry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/encoding/protowire"
)

// traceSender posts encoded OTLP trace requests, configured from the same
// environment variables as the SDK's OTLP/HTTP trace exporter (endpoint,
// headers, timeout, compression, TLS files), so that execution spans and
// the SDK's spans go to the same place the same way. Retries follow the
// OTLP/HTTP specification: connection errors, 429, 502, 503 and 504,
// honouring Retry-After, within the export's timeout.
type traceSender struct {
	url      string
	headers  http.Header
	timeout  time.Duration
	gzip     bool
	http     *retryablehttp.Client
	zipBuf   bytes.Buffer
	zip      *gzip.Writer
	body     exportBody
	lastBody []byte // the answer's body, read into a reused buffer
	// What the last attempt of the current export met ("503 Service
	// Unavailable", a connection error), for the error when retries run
	// out of time; and how many attempts it made. Only the export
	// goroutine sends, one export at a time.
	lastFailure string
	attempts    int
}

// exportBody hands the bytes of one export to the HTTP transport, which
// may read a request's body even after Do has returned (net/http says as
// much of RoundTrip); the bytes live in buffers the next export reuses, so
// a reader of an export that has ended reads nothing more.
type exportBody struct {
	mu  sync.Mutex
	b   []byte
	gen uint64 // which export b is; readers of another read nothing
}

// errExportEnded ends a read of a request body after its export ended.
var errExportEnded = errors.New("export ended")

// begin makes b the body of a new export.
func (e *exportBody) begin(b []byte) {
	e.mu.Lock()
	e.b = b
	e.gen++
	e.mu.Unlock()
}

// end ends the export: its readers read nothing more.
func (e *exportBody) end() {
	e.mu.Lock()
	e.b = nil
	e.gen++
	e.mu.Unlock()
}

// reader is a retryablehttp.ReaderFunc: a new reader for each attempt.
func (e *exportBody) reader() (io.Reader, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return &bodyReader{e: e, gen: e.gen, n: len(e.b)}, nil
}

type bodyReader struct {
	e      *exportBody
	gen    uint64
	off, n int
}

func (r *bodyReader) Read(p []byte) (int, error) {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	if r.gen != r.e.gen {
		return 0, errExportEnded
	}
	if r.off >= len(r.e.b) {
		return 0, io.EOF
	}
	n := copy(p, r.e.b[r.off:])
	r.off += n
	return n, nil
}

// Len is the body's length, which retryablehttp sends as Content-Length.
func (r *bodyReader) Len() int { return r.n - r.off }

// tracesEnv reads OTEL_EXPORTER_OTLP_TRACES_<name>, else
// OTEL_EXPORTER_OTLP_<name>: the signal's own variable wins. It returns
// the variable's name for errors.
func tracesEnv(name string) (value, variable string) {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_" + name, "OTEL_EXPORTER_OTLP_" + name} {
		if s := strings.TrimSpace(os.Getenv(v)); s != "" {
			return s, v
		}
	}
	return "", ""
}

// newTraceSender configures a sender from the environment; a variable it
// cannot use is an error that names it.
func newTraceSender() (*traceSender, error) {
	s := &traceSender{headers: http.Header{}, timeout: 10 * time.Second}
	u, err := traceEndpoint()
	if err != nil {
		return nil, err
	}
	// As the SDK's exporter reads it: insecure true means plain HTTP,
	// false means HTTPS, whatever the endpoint's scheme.
	if v, _ := tracesEnv("INSECURE"); v != "" {
		if strings.EqualFold(v, "true") {
			u.Scheme = "http"
		} else {
			u.Scheme = "https"
		}
	}
	s.url = u.String()

	// The signal's own headers replace the generic ones, as in the SDK.
	if v, name := tracesEnv("HEADERS"); v != "" {
		if err := parseOTLPHeaders(v, name, s.headers); err != nil {
			return nil, err
		}
	}
	if v, name := tracesEnv("TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 0 {
			return nil, fmt.Errorf("set up OpenTelemetry traces: %s=%q is not a number of milliseconds", name, v)
		}
		s.timeout = time.Duration(ms) * time.Millisecond // 0: none, as in the SDK
	}
	switch v, name := tracesEnv("COMPRESSION"); strings.ToLower(v) {
	case "", "none":
	case "gzip":
		s.gzip = true
		s.zip = gzip.NewWriter(&s.zipBuf)
	default:
		return nil, fmt.Errorf("set up OpenTelemetry traces: %s=%q is not supported: use gzip or none", name, v)
	}
	tlsConf, err := traceTLS()
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConf
	s.http = &retryablehttp.Client{
		HTTPClient:   &http.Client{Transport: transport},
		RetryWaitMin: time.Second,
		RetryWaitMax: 5 * time.Second,
		RetryMax:     5,
		CheckRetry:   s.checkRetry,
		Backoff:      retryablehttp.DefaultBackoff, // honours Retry-After on 429 and 503
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	return s, nil
}

// traceEndpoint is where traces go: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as
// it is (its path, or "/"), else OTEL_EXPORTER_OTLP_ENDPOINT with
// /v1/traces appended to its path.
func traceEndpoint() (*url.URL, error) {
	name, suffix := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""
	raw := strings.TrimSpace(os.Getenv(name))
	if raw == "" {
		name, suffix = "OTEL_EXPORTER_OTLP_ENDPOINT", "v1/traces"
		raw = strings.TrimSpace(os.Getenv(name))
	}
	if raw == "" {
		return nil, errors.New("set up OpenTelemetry traces: neither OTEL_EXPORTER_OTLP_TRACES_ENDPOINT nor OTEL_EXPORTER_OTLP_ENDPOINT is set")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("set up OpenTelemetry traces: %s=%q is not an http:// or https:// URL (for example http://collector:4318)", name, raw)
	}
	if suffix != "" {
		u.Path = path.Join("/", u.Path, suffix)
	} else if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// parseOTLPHeaders adds the headers of an OTEL_EXPORTER_OTLP_*HEADERS
// value ("key1=value1,key2=value2", values percent-encoded) to h.
func parseOTLPHeaders(value, variable string, h http.Header) error {
	for pair := range strings.SplitSeq(value, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("set up OpenTelemetry traces: %s: %q is not key=value with a header name as key", variable, pair)
		}
		dec, err := url.PathUnescape(v)
		if err != nil {
			return fmt.Errorf("set up OpenTelemetry traces: %s: the value of %q: %w", variable, k, err)
		}
		dec = strings.TrimSpace(dec)
		if !httpguts.ValidHeaderFieldValue(dec) {
			return fmt.Errorf("set up OpenTelemetry traces: %s: the value of %q holds a control character", variable, k)
		}
		h.Set(k, dec)
	}
	return nil
}

// traceTLS is the TLS configuration the certificate variables give: the
// CA file to trust, and a client certificate and key. Nil when none is
// set, for the system's roots.
func traceTLS() (*tls.Config, error) {
	caFile, caVar := tracesEnv("CERTIFICATE")
	// A client certificate and its key are taken as a pair: the signal's
	// own, else the generic one.
	var certFile, certVar, keyFile, keyVar string
	for _, prefix := range []string{"OTEL_EXPORTER_OTLP_TRACES_", "OTEL_EXPORTER_OTLP_"} {
		certVar, keyVar = prefix+"CLIENT_CERTIFICATE", prefix+"CLIENT_KEY"
		certFile, keyFile = strings.TrimSpace(os.Getenv(certVar)), strings.TrimSpace(os.Getenv(keyVar))
		if certFile != "" || keyFile != "" {
			break
		}
	}
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("set up OpenTelemetry traces: %s: %w", caVar, err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("set up OpenTelemetry traces: %s: %s holds no PEM certificate", caVar, caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("set up OpenTelemetry traces: a client certificate needs both %s and %s", certVar, keyVar)
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("set up OpenTelemetry traces: %s and %s: %w", certVar, keyVar, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// checkRetry retries what OTLP/HTTP calls retryable: connection errors
// (as retryablehttp judges them), 429, 502, 503 and 504; and notes what
// each attempt met. It gives up at once on a Retry-After that ends past
// the export's deadline.
func (s *traceSender) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	s.attempts++
	if err != nil {
		s.lastFailure = err.Error()
	} else if resp != nil {
		s.lastFailure = resp.Status
	}
	if err != nil || ctx.Err() != nil {
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if deadline, ok := ctx.Deadline(); ok {
			if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil &&
				time.Now().Add(time.Duration(secs)*time.Second).After(deadline) {
				return false, nil
			}
		}
		return true, nil
	}
	return false, nil
}

// send posts one encoded ExportTraceServiceRequest. A partial success the
// collector reports (spans it rejected) is an error too.
func (s *traceSender) send(body []byte) error {
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if s.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
	}
	defer cancel()
	s.attempts, s.lastFailure = 0, ""
	if s.gzip {
		s.zipBuf.Reset()
		s.zip.Reset(&s.zipBuf)
		if _, err := s.zip.Write(body); err != nil {
			return fmt.Errorf("export execution spans: %w", err)
		}
		if err := s.zip.Close(); err != nil {
			return fmt.Errorf("export execution spans: %w", err)
		}
		body = s.zipBuf.Bytes()
	}
	s.body.begin(body)
	defer s.body.end()
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, s.url, retryablehttp.ReaderFunc(s.body.reader))
	if err != nil {
		return fmt.Errorf("export execution spans: %w", err)
	}
	for k, v := range s.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "runfleet")
	if s.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		if resp != nil {
			_ = resp.Body.Close()
		}
		if s.attempts > 0 && !strings.Contains(err.Error(), s.lastFailure) {
			return fmt.Errorf("export execution spans to %s: %w after %d attempts, the last: %s", s.url, err, s.attempts, s.lastFailure)
		}
		return fmt.Errorf("export execution spans to %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	buf := bytes.NewBuffer(s.lastBody[:0])
	_, rerr := io.Copy(buf, io.LimitReader(resp.Body, 64<<10))
	s.lastBody = buf.Bytes()
	protobuf := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-protobuf")
	if resp.StatusCode/100 != 2 {
		msg := string(bytes.TrimSpace(s.lastBody))
		if protobuf {
			// A google.rpc.Status: its message, field 2.
			msg = string(protoField(s.lastBody, 2))
		}
		return fmt.Errorf("export execution spans to %s: %s: %s", s.url, resp.Status, msg)
	}
	if rerr != nil {
		return fmt.Errorf("export execution spans to %s: reading the answer: %w", s.url, rerr)
	}
	if !protobuf {
		return nil
	}
	if rejected, msg := partialSuccess(s.lastBody); rejected > 0 || msg != "" {
		return fmt.Errorf("export execution spans to %s: the collector rejected %d spans: %s", s.url, rejected, msg)
	}
	return nil
}

// partialSuccess reads ExportTraceServiceResponse.partial_success
// (rejected_spans, error_message); zero and "" for a full success or an
// answer it cannot read.
func partialSuccess(b []byte) (rejected int64, msg string) {
	eachField(protoField(b, 1), func(num protowire.Number, bytes []byte, varint uint64) {
		switch num {
		case 1:
			rejected = int64(varint)
		case 2:
			msg = string(bytes)
		}
	})
	return rejected, msg
}

// protoField is the bytes of the last length-delimited field num of
// message b, nil when it has none.
func protoField(b []byte, num protowire.Number) []byte {
	var out []byte
	eachField(b, func(n protowire.Number, bytes []byte, _ uint64) {
		if n == num && bytes != nil {
			out = bytes
		}
	})
	return out
}

// eachField calls fn for each varint field (varint set) and each
// length-delimited one (bytes set, never nil) of message b, in order,
// skipping fields of other types; it stops where b cannot be read.
func eachField(b []byte, fn func(num protowire.Number, bytes []byte, varint uint64)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return
			}
			fn(num, nil, v)
			n = m
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return
			}
			fn(num, v, 0) // a slice of b: never nil, even when empty
			n = m
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return
			}
		}
		b = b[n:]
	}
}
