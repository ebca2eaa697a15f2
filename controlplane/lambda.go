package controlplane

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// ErrUnknownEvent is wrapped by InvokeSubmit for a payload that is none of
// the events the submit function accepts.
var ErrUnknownEvent = errors.New("unknown event")

// InvokeSubmit is the submit function's handler. One function serves every
// way a job gets submitted, so it tells the events apart by their JSON
// shape:
//
//   - an API Gateway HTTP API request, payload format 2.0 ("version":"2.0"
//     and requestContext.http; a Lambda function URL sends the same shape):
//     served by Handler, answered with events.APIGatewayV2HTTPResponse;
//   - an S3 event notification (Records whose eventSource is "aws:s3", or
//     "minio:s3" for MinIO's records relayed as they are): HandleS3Event,
//     answered with its EventReport;
//   - a schedule: the target input {"automation": ID, "scheduled_time":
//     RFC 3339} of an EventBridge Scheduler schedule or rule, or an
//     EventBridge event whose "detail" holds those fields (its "time" stands
//     in for a missing scheduled_time): HandleSchedule, answered with its
//     EventReport.
//
// Anything else is an error wrapping ErrUnknownEvent that says what was
// expected. HTTP errors are HTTP answers (a 401 is a successful
// invocation); an error returned for an S3 event or a schedule makes Lambda
// retry the asynchronous invocation, which idempotency makes safe.
func (s *Server) InvokeSubmit(ctx context.Context, payload json.RawMessage) (any, error) {
	ev, err := parseSubmitEvent(payload)
	if err != nil {
		return nil, err
	}
	switch {
	case ev.http != nil:
		return serveAPIGatewayV2(ctx, s.Handler(), ev.http)
	case ev.s3 != nil:
		if len(ev.s3.Records) == 0 {
			// The s3:TestEvent S3 sends when notifications are configured.
			return EventReport{Submitted: []EventJob{}, Ignored: []string{"s3:TestEvent: S3 checks the notification configuration"}}, nil
		}
		return s.HandleS3Event(ctx, *ev.s3)
	default:
		return s.HandleSchedule(ctx, *ev.schedule)
	}
}

// InvokeSweep is the sweep function's handler. EventBridge invokes it on
// rate(1 minute) with a "Scheduled Event" whose content does not matter:
// every invocation sweeps once.
func (s *Server) InvokeSweep(ctx context.Context, _ json.RawMessage) (SweepReport, error) {
	rep, err := s.Sweep(ctx)
	if err != nil {
		return rep, fmt.Errorf("sweep: %w", err)
	}
	return rep, nil
}

// submitEvent is one decoded submit-function payload: exactly one field is
// set.
type submitEvent struct {
	http     *events.APIGatewayV2HTTPRequest
	s3       *events.S3Event
	schedule *ScheduleEvent
}

// eventShape holds the fields that tell the accepted events apart. Each
// is a pointer or raw message so "absent" differs from "empty".
type eventShape struct {
	Version        string `json:"version"`
	RequestContext *struct {
		HTTP *struct {
			Method string `json:"method"`
		} `json:"http"`
	} `json:"requestContext"`
	Records []struct {
		EventSource string `json:"eventSource"`
	} `json:"Records"`
	// S3's test message: {"Service":"Amazon S3","Event":"s3:TestEvent",...}.
	Service string `json:"Service"`
	Event   string `json:"Event"`

	Automation    json.RawMessage `json:"automation"`
	ScheduledTime json.RawMessage `json:"scheduled_time"`

	DetailType *string         `json:"detail-type"`
	Detail     json.RawMessage `json:"detail"`
	Time       json.RawMessage `json:"time"`
}

const expectedEvents = `expected an API Gateway HTTP API request (payload format 2.0: "version":"2.0" with requestContext.http), ` +
	`an S3 event notification ("Records" with eventSource "aws:s3" or "minio:s3") ` +
	`or a schedule input ({"automation": ID, "scheduled_time": RFC 3339 time}, or an EventBridge event with them in "detail")`

// parseSubmitEvent recognises payload by its shape and decodes it.
func parseSubmitEvent(payload []byte) (submitEvent, error) {
	var shape eventShape
	if err := json.Unmarshal(payload, &shape); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field == "" {
			return submitEvent{}, fmt.Errorf("%w: payload is a JSON %s, not an object; %s", ErrUnknownEvent, ute.Value, expectedEvents)
		}
		return submitEvent{}, fmt.Errorf("%w: decode payload: %v; %s", ErrUnknownEvent, err, expectedEvents)
	}
	switch {
	case shape.Version == "2.0" && shape.RequestContext != nil && shape.RequestContext.HTTP != nil:
		var req events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(payload, &req); err != nil {
			return submitEvent{}, fmt.Errorf("decode API Gateway request: %w", err)
		}
		if req.RequestContext.HTTP.Method == "" {
			return submitEvent{}, errors.New("decode API Gateway request: requestContext.http.method is empty")
		}
		return submitEvent{http: &req}, nil

	case len(shape.Records) > 0:
		for i, r := range shape.Records {
			if r.EventSource != "aws:s3" && r.EventSource != "minio:s3" {
				return submitEvent{}, fmt.Errorf("%w: Records[%d] has eventSource %q, not aws:s3 or minio:s3; %s", ErrUnknownEvent, i, r.EventSource, expectedEvents)
			}
		}
		var ev events.S3Event
		if err := json.Unmarshal(payload, &ev); err != nil {
			return submitEvent{}, fmt.Errorf("decode S3 event: %w", err)
		}
		return submitEvent{s3: &ev}, nil

	case shape.Service == "Amazon S3" && shape.Event == "s3:TestEvent":
		return submitEvent{s3: &events.S3Event{}}, nil

	case shape.Automation != nil:
		ev, err := parseSchedule(shape.Automation, shape.ScheduledTime, nil)
		if err != nil {
			return submitEvent{}, fmt.Errorf("decode schedule input: %w", err)
		}
		return submitEvent{schedule: &ev}, nil

	case shape.DetailType != nil:
		var detail struct {
			Automation    json.RawMessage `json:"automation"`
			ScheduledTime json.RawMessage `json:"scheduled_time"`
		}
		if len(shape.Detail) > 0 {
			if err := json.Unmarshal(shape.Detail, &detail); err != nil {
				return submitEvent{}, fmt.Errorf("decode EventBridge %q event: detail: %w", *shape.DetailType, err)
			}
		}
		if detail.Automation == nil {
			return submitEvent{}, fmt.Errorf("%w: EventBridge %q event without detail.automation; %s", ErrUnknownEvent, *shape.DetailType, expectedEvents)
		}
		ev, err := parseSchedule(detail.Automation, detail.ScheduledTime, shape.Time)
		if err != nil {
			return submitEvent{}, fmt.Errorf("decode EventBridge %q event: %w", *shape.DetailType, err)
		}
		return submitEvent{schedule: &ev}, nil
	}
	return submitEvent{}, fmt.Errorf("%w: %s", ErrUnknownEvent, expectedEvents)
}

// parseSchedule decodes the fields of a schedule input; fallbackTime is the
// envelope's "time", used when scheduled_time is absent.
func parseSchedule(automation, scheduledTime, fallbackTime json.RawMessage) (ScheduleEvent, error) {
	var ev ScheduleEvent
	if err := json.Unmarshal(automation, &ev.Automation); err != nil || ev.Automation == "" {
		return ev, fmt.Errorf("automation must be a non-empty string, got %s", automation)
	}
	field, raw := "scheduled_time", scheduledTime
	if raw == nil {
		field, raw = "time", fallbackTime
	}
	if raw == nil {
		// The tick names the job (its idempotency key), so it cannot be
		// guessed from the clock: a retried delivery would make a new job.
		return ev, errors.New(`scheduled_time is missing (EventBridge Scheduler: "scheduled_time": "<aws.scheduler.scheduled-time>")`)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return ev, fmt.Errorf("%s must be an RFC 3339 time string, got %s", field, raw)
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return ev, fmt.Errorf("%s %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", field, s)
	}
	if t.IsZero() {
		return ev, fmt.Errorf("%s %q is the zero time", field, s)
	}
	ev.ScheduledTime = t
	return ev, nil
}

// serveAPIGatewayV2 serves one API Gateway HTTP API request (payload format
// 2.0) through h and turns the answer into the response format 2.0.
func serveAPIGatewayV2(ctx context.Context, h http.Handler, ev *events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	req, err := newHTTPRequest(ctx, ev)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	rec := newResponseRecorder()
	h.ServeHTTP(rec, req)
	return rec.apiGatewayV2Response(), nil
}

// newHTTPRequest rebuilds the HTTP request API Gateway received.
func newHTTPRequest(ctx context.Context, ev *events.APIGatewayV2HTTPRequest) (*http.Request, error) {
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			return nil, fmt.Errorf("decode API Gateway request: base64 body: %w", err)
		}
		body = b
	}
	host := ev.Headers["host"]
	if host == "" {
		host = ev.RequestContext.DomainName
	}
	u := &url.URL{Scheme: "https", Host: host, RawQuery: ev.RawQueryString}
	rawPath := stripStage(ev.RawPath, ev.RequestContext.Stage)
	if rawPath == "" {
		rawPath = "/"
	}
	if p, err := url.PathUnescape(rawPath); err == nil {
		u.Path, u.RawPath = p, rawPath
	} else {
		u.Path = rawPath
	}
	req, err := http.NewRequestWithContext(ctx, ev.RequestContext.HTTP.Method, "/", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("decode API Gateway request: %w", err)
	}
	req.URL = u
	req.RequestURI = u.RequestURI()
	req.Host = host
	// API Gateway joins repeated headers with commas, which is what a
	// repeated header means in HTTP anyway.
	for k, v := range ev.Headers {
		req.Header.Set(k, v)
	}
	// As net/http's server does: the host is in req.Host only.
	req.Header.Del("Host")
	if len(ev.Cookies) > 0 {
		req.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	if p := ev.RequestContext.HTTP.Protocol; p != "" {
		if major, minor, ok := http.ParseHTTPVersion(p); ok {
			req.Proto, req.ProtoMajor, req.ProtoMinor = p, major, minor
		}
	}
	if ip := ev.RequestContext.HTTP.SourceIP; ip != "" {
		req.RemoteAddr = net.JoinHostPort(ip, "0")
	}
	return req, nil
}

// stripStage removes a named stage from the front of the path: API Gateway
// puts it there when the API is called on its execute-api URL (not on a
// custom domain, and never for the $default stage), and the routes know
// nothing of stages.
func stripStage(rawPath, stage string) string {
	if stage == "" || stage == "$default" {
		return rawPath
	}
	prefix := "/" + stage
	if rawPath == prefix {
		return "/"
	}
	if strings.HasPrefix(rawPath, prefix+"/") {
		return rawPath[len(prefix):]
	}
	return rawPath
}

// responseRecorder collects what a handler writes, for one Lambda answer.
// (httptest.ResponseRecorder would do, but it belongs in tests.)
type responseRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newResponseRecorder() *responseRecorder {
	return &responseRecorder{header: make(http.Header)}
}

func (r *responseRecorder) Header() http.Header { return r.header }

func (r *responseRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *responseRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}

// apiGatewayV2Response is the answer in response format 2.0: one value per
// header (repeated ones joined with commas), Set-Cookie in cookies, and the
// body base64-encoded when it is not UTF-8 text.
func (r *responseRecorder) apiGatewayV2Response() events.APIGatewayV2HTTPResponse {
	status := r.status
	if status == 0 {
		status = http.StatusOK
	}
	resp := events.APIGatewayV2HTTPResponse{StatusCode: status, Headers: make(map[string]string, len(r.header))}
	for k, vs := range r.header {
		if k == "Set-Cookie" {
			resp.Cookies = append(resp.Cookies, vs...)
			continue
		}
		resp.Headers[k] = strings.Join(vs, ", ")
	}
	if b := r.body.Bytes(); utf8.Valid(b) {
		resp.Body = string(b)
	} else {
		resp.Body = base64.StdEncoding.EncodeToString(b)
		resp.IsBase64Encoded = true
	}
	return resp
}
