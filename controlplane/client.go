package controlplane

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/runfleet/runfleet/workflows"
)

// Client calls the HTTP API v1 for callers that may submit jobs but hold no
// Redis credentials, such as the CLI's --api mode.
//
// It retries connection errors, 429 and every 5xx answer (RetryMax times,
// default 5), waiting as long as a Retry-After header asks and otherwise
// backing off exponentially with jitter. Other 4xx answers are final. Every
// submission carries an idempotency key, so a retried submission never
// creates a second job. The token is sent only in the Authorization header:
// it is never logged and never part of an error.
type Client struct {
	base  *url.URL // without a trailing slash
	token string
	http  *retryablehttp.Client
	// maxRetryAfter is the longest Retry-After the client waits for; a
	// longer one ends the call with the answer's error.
	maxRetryAfter time.Duration
}

// ClientOption configures a Client.
type ClientOption func(*clientConfig)

type clientConfig struct {
	retryMax         int
	waitMin, waitMax time.Duration
	maxRetryAfter    time.Duration
	logger           *slog.Logger
	httpClient       *http.Client
}

// WithRetryMax sets how often a failed request is retried. Default 5.
func WithRetryMax(n int) ClientOption { return func(c *clientConfig) { c.retryMax = max(n, 0) } }

// WithRetryWait sets the shortest and longest wait between retries without
// a Retry-After header; waits double from waitMin up to waitMax (with
// jitter). Default 250ms, 8s.
func WithRetryWait(waitMin, waitMax time.Duration) ClientOption {
	return func(c *clientConfig) { c.waitMin, c.waitMax = waitMin, waitMax }
}

// WithMaxRetryAfter sets the longest Retry-After the client waits for
// before retrying; an answer asking for longer is returned as an error.
// Default 1 minute.
func WithMaxRetryAfter(d time.Duration) ClientOption {
	return func(c *clientConfig) { c.maxRetryAfter = d }
}

// WithLogger makes the client log each request and retry at debug level
// (method, URL without credentials, status, wait; never headers). Default:
// no logging.
func WithLogger(l *slog.Logger) ClientOption { return func(c *clientConfig) { c.logger = l } }

// WithHTTPClient sets the HTTP client of each attempt. Default: a client
// with its own connection pool and a 30 s timeout per attempt.
func WithHTTPClient(hc *http.Client) ClientOption { return func(c *clientConfig) { c.httpClient = hc } }

// ErrInvalidBaseURL is wrapped by NewClient's errors about the base URL.
var ErrInvalidBaseURL = errors.New("invalid API base URL")

// ErrInvalidToken is wrapped by NewClient's errors about the token. They
// never include the token.
var ErrInvalidToken = errors.New("invalid API token")

// NewClient returns a client of the API at baseURL (http:// or https://,
// optionally with a path prefix, such as https://runfleet.example.com or
// http://127.0.0.1:8080/runfleet) that authenticates with token.
func NewClient(baseURL, token string, opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{
		retryMax: 5,
		waitMin:  250 * time.Millisecond, waitMax: 8 * time.Second,
		maxRetryAfter: time.Minute,
	}
	for _, o := range opts {
		o(&cfg)
	}
	base, err := parseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	switch {
	case token == "":
		return nil, fmt.Errorf("%w: it is empty", ErrInvalidToken)
	case strings.IndexFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		return nil, fmt.Errorf("%w: it contains spaces or control characters", ErrInvalidToken)
	}
	if cfg.httpClient == nil {
		cfg.httpClient = &http.Client{
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			Timeout:   30 * time.Second,
		}
	}
	c := &Client{base: base, token: token, maxRetryAfter: cfg.maxRetryAfter}
	c.http = &retryablehttp.Client{
		HTTPClient:   cfg.httpClient,
		RetryWaitMin: cfg.waitMin,
		RetryWaitMax: cfg.waitMax,
		RetryMax:     cfg.retryMax,
		CheckRetry:   c.checkRetry,
		Backoff:      c.backoff,
		ErrorHandler: c.giveUp,
	}
	if cfg.logger != nil {
		// A nil *slog.Logger in the interface would not be a nil Logger.
		c.http.Logger = retryLogger{cfg.logger}
	}
	return c, nil
}

func parseBaseURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("%w: it is empty", ErrInvalidBaseURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole URL; a URL with credentials in it
		// would show them, so say only what is wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidBaseURL, err)
	}
	shown := raw
	if u.User != nil {
		shown = u.Redacted()
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%w %q: want http:// or https://", ErrInvalidBaseURL, shown)
	case u.Host == "":
		return nil, fmt.Errorf("%w %q: no host", ErrInvalidBaseURL, shown)
	case u.User != nil:
		return nil, fmt.Errorf("%w %q: must not hold credentials; pass the token separately", ErrInvalidBaseURL, shown)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("%w %q: must not have a query or fragment", ErrInvalidBaseURL, shown)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// BaseURL is the API's base URL as the client uses it.
func (c *Client) BaseURL() string { return c.base.String() }

// ListJobsQuery filters ListJobs; zero values match everything.
type ListJobsQuery struct {
	Cluster string
	State   string
	Limit   int    // 1..1000; 0: the server's default (100)
	Cursor  string // NextCursor of the previous page; "" for the first
}

// SubmitJob submits a job. idempotencyKey identifies this submission: the
// same key returns the job the first submission created (created false)
// instead of creating another. An empty key gets a random one, used for
// every retry of this call (then created is true also when a retry found
// the job an earlier attempt of this call created).
func (c *Client) SubmitJob(ctx context.Context, req SubmitJobRequest, idempotencyKey string) (job workflows.Job, created bool, err error) {
	own := idempotencyKey == ""
	if own {
		idempotencyKey = NewIdempotencyKey()
	}
	status, attempts, err := c.do(ctx, http.MethodPost, "/v1/jobs", nil, req, map[string]string{"Idempotency-Key": idempotencyKey}, &job)
	if err != nil {
		return workflows.Job{}, false, err
	}
	// A 200 to a retry with a key of this call's own means an earlier
	// attempt created the job and its answer was lost.
	return job, status == http.StatusCreated || (own && attempts > 1), nil
}

// NewIdempotencyKey returns a random idempotency key (128 bits, hex).
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// GetJob returns a job, also an archived one.
func (c *Client) GetJob(ctx context.Context, id string) (workflows.Job, error) {
	var j workflows.Job
	_, _, err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, nil, nil, &j)
	return j, err
}

// ListJobs returns one page of jobs, newest first.
func (c *Client) ListJobs(ctx context.Context, q ListJobsQuery) (JobPage, error) {
	v := url.Values{}
	for k, s := range map[string]string{"cluster": q.Cluster, "state": q.State, "cursor": q.Cursor} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var p JobPage
	_, _, err := c.do(ctx, http.MethodGet, "/v1/jobs", v, nil, nil, &p)
	return p, err
}

// CancelJob cancels a job and returns it after the change.
func (c *Client) CancelJob(ctx context.Context, id string) (workflows.Job, error) {
	var j workflows.Job
	_, _, err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/cancel", nil, nil, nil, &j)
	return j, err
}

// RetryJob re-queues the failed tasks of a job and returns it after the
// change.
func (c *Client) RetryJob(ctx context.Context, id string) (workflows.Job, error) {
	var j workflows.Job
	_, _, err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/retry", nil, nil, nil, &j)
	return j, err
}

// Clusters returns the clusters the token may see.
func (c *Client) Clusters(ctx context.Context) ([]workflows.Cluster, error) {
	var l ClusterList
	_, _, err := c.do(ctx, http.MethodGet, "/v1/clusters", nil, nil, nil, &l)
	return l.Clusters, err
}

// maxClientResponse bounds what the client reads of one answer (a full
// page of 1000 jobs is far smaller).
const maxClientResponse = 32 << 20

// do sends one call (with retries) and decodes a 2xx answer into out. It
// returns the final status and how many attempts were made.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any, header map[string]string, out any) (status, attempts int, err error) {
	// path is already escaped: callers escape the ids they put in it.
	target := c.base.String() + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var raw []byte
	if body != nil {
		if raw, err = json.Marshal(body); err != nil {
			return 0, 0, fmt.Errorf("api: encode %s %s: %w", method, path, err)
		}
	}
	// The body is a ReaderFunc, called once per attempt: that counts them.
	var rb retryablehttp.ReaderFunc = func() (io.Reader, error) {
		attempts++
		if raw == nil {
			return http.NoBody, nil
		}
		return bytes.NewReader(raw), nil
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, target, rb)
	if err != nil {
		return 0, 0, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	attempts = 0 // NewRequest called rb once to learn the length
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json, application/problem+json")
	req.Header.Set("User-Agent", "runfleet-client")
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// Read the final answer inside the retry loop, so that an answer lost
	// half-way (a connection cut mid-body) is retried like one never sent.
	var data []byte
	read := false
	req.SetResponseHandler(func(resp *http.Response) error {
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxClientResponse+1))
		if err != nil {
			resp.Body = http.NoBody
			return fmt.Errorf("read answer: %w", err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		data, read = b, true
		return nil
	})
	resp, err := c.http.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return 0, attempts, fmt.Errorf("api: %s %s: %w", method, path, context.Cause(ctx))
		}
		return 0, attempts, fmt.Errorf("api: %s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	if !read { // a retryable answer after the last retry
		if data, err = io.ReadAll(io.LimitReader(resp.Body, maxClientResponse+1)); err != nil {
			return resp.StatusCode, attempts, fmt.Errorf("api: %s %s: read answer: %w", method, path, err)
		}
	}
	if len(data) > maxClientResponse {
		return resp.StatusCode, attempts, fmt.Errorf("api: %s %s: answer is over %d bytes", method, path, maxClientResponse)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, attempts, c.apiError(resp, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, attempts, fmt.Errorf("api: %s %s: decode answer (%d, %s): %w", method, path,
				resp.StatusCode, resp.Header.Get("Content-Type"), err)
		}
	}
	return resp.StatusCode, attempts, nil
}

// checkRetry retries connection errors (but not bad URLs, TLS certificate
// failures and the like), 429 and every 5xx, unless the answer asks to wait
// longer than maxRetryAfter.
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500 {
		return false, nil
	}
	if d, ok := retryAfter(resp.Header, time.Now()); ok && d > c.maxRetryAfter {
		return false, nil
	}
	return true, nil
}

// backoff waits as long as Retry-After asks, else doubles from min to max,
// with jitter so that many clients do not retry in step.
func (c *Client) backoff(waitMin, waitMax time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500) {
		if d, ok := retryAfter(resp.Header, time.Now()); ok {
			return d
		}
	}
	d := waitMin << min(attempt, 30)
	if d > waitMax || d <= 0 {
		d = waitMax
	}
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// giveUp is called when retries are exhausted or a check failed: an answer
// is returned as it is, so its problem document becomes the error.
func (c *Client) giveUp(resp *http.Response, err error, tries int) (*http.Response, error) {
	if resp != nil && err == nil {
		return resp, nil
	}
	if resp != nil {
		resp.Body.Close()
	}
	// The caller names the method and URL; *url.Error would repeat them.
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		err = ue.Err
	}
	if tries > 1 {
		return nil, fmt.Errorf("giving up after %d attempts: %w", tries, err)
	}
	return nil, err
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, 1<<31)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// APIError is an error answer of the API: its RFC 9457 problem document,
// or what could be read of a body that was none.
type APIError struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title,omitempty"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Field names the request field that is wrong (a JSON path such as
	// "input" or "max_retries"), when one is.
	Field string `json:"field,omitempty"`
	// RetryAfter is how long the server asked to wait (429, 503), when it
	// said.
	RetryAfter time.Duration `json:"-"`
}

// Error reads like `api: 403 Forbidden: token may not submit to cluster
// "prod"`, naming the field when there is one.
func (e *APIError) Error() string {
	var b strings.Builder
	title := e.Title
	if title == "" {
		title = http.StatusText(e.Status)
	}
	fmt.Fprintf(&b, "api: %d", e.Status)
	if title != "" {
		b.WriteString(" " + title)
	}
	if e.Detail != "" && e.Detail != title {
		b.WriteString(": " + e.Detail)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, " (field %q)", e.Field)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

var (
	markupTag  = regexp.MustCompile(`<[^>]*>`)
	whitespace = regexp.MustCompile(`\s+`)
)

// apiError reads an error answer. A body that is not a problem document
// still gives its status and the start of its text.
func (c *Client) apiError(resp *http.Response, body []byte) error {
	e := &APIError{}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	decoded := false
	if ct == "application/problem+json" || ct == "application/json" {
		decoded = json.Unmarshal(body, e) == nil && (e.Title != "" || e.Detail != "")
	}
	if !decoded {
		*e = APIError{Detail: bodySnippet(body, ct)}
	}
	e.Status = resp.StatusCode // the answer's status is the truth
	if d, ok := retryAfter(resp.Header, time.Now()); ok {
		e.RetryAfter = d
	}
	if c.token != "" {
		// A proxy that echoes the request must not put the token in an error.
		for _, s := range []*string{&e.Type, &e.Title, &e.Detail, &e.Field} {
			*s = strings.ReplaceAll(*s, c.token, "[token]")
		}
	}
	return e
}

// bodySnippet is the start of a body as one line of text, markup removed.
func bodySnippet(body []byte, contentType string) string {
	if !utf8.Valid(body) {
		return ""
	}
	s := string(bytes.TrimSpace(body))
	if strings.Contains(contentType, "html") || strings.Contains(contentType, "xml") ||
		strings.HasPrefix(s, "<") {
		s = markupTag.ReplaceAllString(s, " ")
	}
	s = strings.TrimSpace(whitespace.ReplaceAllString(s, " "))
	const limit = 200
	if utf8.RuneCountInString(s) > limit {
		s = string([]rune(s)[:limit-1]) + "…"
	}
	return s
}

// retryLogger hands go-retryablehttp's records to slog at debug level. Its
// records hold the method and the URL (without credentials), never headers.
type retryLogger struct{ l *slog.Logger }

func (r retryLogger) Error(msg string, kv ...any) { r.l.Debug(msg, kv...) }
func (r retryLogger) Info(msg string, kv ...any)  { r.l.Debug(msg, kv...) }
func (r retryLogger) Debug(msg string, kv ...any) { r.l.Debug(msg, kv...) }
func (r retryLogger) Warn(msg string, kv ...any)  { r.l.Debug(msg, kv...) }
