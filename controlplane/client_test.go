package controlplane_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// clientBundle is a real API server over a real Redis, reached through a
// fault proxy, and a token for it.
type clientBundle struct {
	wc     *workflows.Client
	server *httptest.Server
	proxy  *testenv.FaultProxy
	// front is where the clients connect: the proxy, or a fault handler in
	// front of it when a test sets one.
	front string
	token string
	logs  *testenv.Buffer
}

func setupClient(t *testing.T, wrap func(http.Handler) http.Handler) *clientBundle {
	t.Helper()
	ctx := context.Background()
	logs := &testenv.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	wc, err := workflows.NewClient(ctx, workflows.WithRedisURL(testenv.NewRedis(t).URL()),
		workflows.WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = wc.Close() })
	srv, err := controlplane.New(controlplane.Config{Client: wc, Logger: logger})
	require.NoError(t, err)
	var h http.Handler = srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	proxy := testenv.NewFaultProxy(t, hs.URL)

	for _, cl := range []string{"dev", "prod"} {
		_, err = wc.Clusters().Create(ctx, cl, "")
		require.NoError(t, err)
		// Register the bench tasks so submissions are accepted; nothing runs.
		_, err = wc.NewRunner(ctx, cl, benchtask.All()...)
		require.NoError(t, err)
	}
	_, secret, err := controlplane.CreateToken(ctx, wc, controlplane.TokenSpec{Name: "ci", Scope: controlplane.ScopeSubmit})
	require.NoError(t, err)
	return &clientBundle{wc: wc, server: hs, proxy: proxy, front: proxy.URL, token: secret, logs: logs}
}

// client is an API client with short retry waits, logging at debug level.
func (b *clientBundle) client(t *testing.T, token string, opts ...controlplane.ClientOption) *controlplane.Client {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]controlplane.ClientOption{controlplane.WithRetryWait(time.Millisecond, 20*time.Millisecond),
		controlplane.WithLogger(logger)}, opts...)
	c, err := controlplane.NewClient(b.front, token, opts...)
	require.NoError(t, err)
	return c
}

func (b *clientBundle) jobCount(t *testing.T) int {
	t.Helper()
	jobs, err := b.wc.Jobs().List(context.Background(), workflows.ListOptions{Limit: 1000})
	require.NoError(t, err)
	return len(jobs)
}

func noopJob(cluster string) controlplane.SubmitJobRequest {
	return controlplane.SubmitJobRequest{Cluster: cluster, Name: "hello", Task: "Noop", Version: benchtask.Version}
}

func TestClientSubmitsGetsListsCancelsAndRetries(t *testing.T) {
	t.Parallel()
	b := setupClient(t, nil)
	c := b.client(t, b.token)
	ctx := context.Background()

	j, created, err := c.SubmitJob(ctx, controlplane.SubmitJobRequest{Cluster: "dev", Name: "sleep", Task: "Sleep",
		Version: benchtask.Version, Input: []byte(`{"ms": 5}`), MaxRetries: 2}, "")
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "sleep", j.Name)
	require.Equal(t, workflows.JobSubmitted, j.State)

	got, err := c.GetJob(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, j.ID, got.ID)
	require.Equal(t, int64(1), got.TaskCounts[workflows.TaskQueued])

	var ids []string
	for range 2 {
		j2, _, err := c.SubmitJob(ctx, noopJob("prod"), "")
		require.NoError(t, err)
		ids = append(ids, j2.ID)
	}
	p, err := c.ListJobs(ctx, controlplane.ListJobsQuery{Limit: 2})
	require.NoError(t, err)
	require.Equal(t, []string{ids[1], ids[0]}, jobIDs(p.Jobs), "newest first")
	require.NotEmpty(t, p.NextCursor)
	p, err = c.ListJobs(ctx, controlplane.ListJobsQuery{Limit: 2, Cursor: p.NextCursor})
	require.NoError(t, err)
	require.Equal(t, []string{j.ID}, jobIDs(p.Jobs))
	require.Empty(t, p.NextCursor, "last page")
	p, err = c.ListJobs(ctx, controlplane.ListJobsQuery{Cluster: "dev", State: workflows.JobSubmitted})
	require.NoError(t, err)
	require.Equal(t, []string{j.ID}, jobIDs(p.Jobs))

	canceled, err := c.CancelJob(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobCanceled, canceled.State)
	retried, err := c.RetryJob(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobSubmitted, retried.State)

	cls, err := c.Clusters(ctx)
	require.NoError(t, err)
	require.Len(t, cls, 2)
	require.Equal(t, "dev", cls[0].Slug)
}

func jobIDs(jobs []workflows.Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func TestClientSubmitRetriedThroughFaultsCreatesOneJob(t *testing.T) {
	t.Parallel()
	b := setupClient(t, nil)
	c := b.client(t, b.token)

	b.proxy.FailNext(2, http.StatusServiceUnavailable)
	b.proxy.ResetNext(2)
	b.proxy.FailNext(1, http.StatusInternalServerError)
	b.proxy.FailNext(1, http.StatusTooManyRequests)
	j, created, err := c.SubmitJob(context.Background(), noopJob("dev"), "")
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, int64(6), b.proxy.Injected())
	require.Equal(t, int64(7), b.proxy.Requests(), "six failed attempts and the one that got through")
	require.Equal(t, 1, b.jobCount(t))
	got, err := b.wc.Jobs().Get(context.Background(), j.ID)
	require.NoError(t, err)
	require.Equal(t, "hello", got.Name)
}

func TestClientSubmitWhoseAnswerIsLostCreatesOneJob(t *testing.T) {
	t.Parallel()
	b := setupClient(t, nil)
	c := b.client(t, b.token)

	// The server creates the job; its answer is cut after 10 bytes. The
	// retry carries the same idempotency key and finds that job.
	b.proxy.CutNext(1, 10)
	j, created, err := c.SubmitJob(context.Background(), noopJob("dev"), "")
	require.NoError(t, err)
	require.True(t, created, "the job was created by this call's first attempt")
	require.Equal(t, int64(2), b.proxy.Requests())
	require.Equal(t, 1, b.jobCount(t))

	// A caller's own key: a later call with it returns the same job.
	first, created, err := c.SubmitJob(context.Background(), noopJob("dev"), "nightly-1")
	require.NoError(t, err)
	require.True(t, created)
	again, created, err := c.SubmitJob(context.Background(), noopJob("dev"), "nightly-1")
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first.ID, again.ID)
	require.NotEqual(t, j.ID, first.ID)
	require.Equal(t, 2, b.jobCount(t))

	// The same key with another request is refused, naming the header.
	other := noopJob("dev")
	other.Name = "other"
	_, _, err = c.SubmitJob(context.Background(), other, "nightly-1")
	var ae *controlplane.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusUnprocessableEntity, ae.Status)
	require.Equal(t, "Idempotency-Key", ae.Field)
	require.Equal(t, 2, b.jobCount(t))
}

// retryAfterFault answers the first n requests with 429 and Retry-After
// instead of passing them to the real server.
func retryAfterFault(n int64, retryAfter string, seen *atomic.Int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if seen.Add(1) <= n {
				w.Header().Set("Retry-After", retryAfter)
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusTooManyRequests)
				_, _ = w.Write([]byte(`{"type":"urn:runfleet:problem:rate-limited","title":"Too Many Requests","status":429,"detail":"slow down"}`))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestClientHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	var seen atomic.Int64
	b := setupClient(t, retryAfterFault(1, "1", &seen))
	// Retry waits without Retry-After would be 1 ms: the wait is the header's.
	c := b.client(t, b.token)
	start := time.Now()
	_, created, err := c.SubmitJob(context.Background(), noopJob("dev"), "")
	require.NoError(t, err)
	require.True(t, created)
	require.GreaterOrEqual(t, time.Since(start), time.Second)
	require.Equal(t, int64(2), seen.Load())
	require.Equal(t, 1, b.jobCount(t))
}

func TestClientRetriesTheServersRateLimit(t *testing.T) {
	t.Parallel()
	b := setupClient(t, nil)
	_, slow, err := controlplane.CreateToken(context.Background(), b.wc,
		controlplane.TokenSpec{Name: "slow", Scope: controlplane.ScopeSubmit, Rate: 2, Burst: 1})
	require.NoError(t, err)
	c := b.client(t, slow)
	start := time.Now()
	for range 3 {
		_, created, err := c.SubmitJob(context.Background(), noopJob("dev"), "")
		require.NoError(t, err)
		require.True(t, created)
	}
	// The server's Retry-After is whole seconds: the second and third
	// submissions each waited for one.
	require.GreaterOrEqual(t, time.Since(start), 2*time.Second)
	require.Equal(t, 3, b.jobCount(t))
}

func TestClientRefusesLongRetryAfter(t *testing.T) {
	t.Parallel()
	var seen atomic.Int64
	b := setupClient(t, retryAfterFault(1, "120", &seen))
	c := b.client(t, b.token, controlplane.WithMaxRetryAfter(10*time.Second))
	_, _, err := c.SubmitJob(context.Background(), noopJob("dev"), "")
	var ae *controlplane.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusTooManyRequests, ae.Status)
	require.Equal(t, 2*time.Minute, ae.RetryAfter)
	require.Equal(t, "api: 429 Too Many Requests: slow down (retry after 2m0s)", err.Error())
	require.Equal(t, int64(1), seen.Load())
}

func TestClientDoesNotRetry4xx(t *testing.T) {
	t.Parallel()
	b := setupClient(t, nil)
	ctx := context.Background()
	_, devOnly, err := controlplane.CreateToken(ctx, b.wc,
		controlplane.TokenSpec{Name: "dev-only", Scope: controlplane.ScopeSubmit, Clusters: []string{"dev"}})
	require.NoError(t, err)
	_, reader, err := controlplane.CreateToken(ctx, b.wc, controlplane.TokenSpec{Name: "reader", Scope: controlplane.ScopeRead})
	require.NoError(t, err)

	bad := noopJob("dev")
	bad.MaxRetries = -1
	badInput := noopJob("dev")
	badInput.Input = []byte(`[1,2]`)
	for _, tc := range []struct {
		name   string
		token  string
		req    controlplane.SubmitJobRequest
		status int
		field  string
		want   string
	}{
		{"cluster not allowed", devOnly, noopJob("prod"), http.StatusForbidden, "cluster",
			`api: 403 Forbidden: token "dev-only" may not submit to cluster "prod" (field "cluster")`},
		{"scope too low", reader, noopJob("dev"), http.StatusForbidden, "", `api: 403 Forbidden: token "reader" has scope read; this request needs submit`},
		{"unknown token", "rf_" + strings.Repeat("x", 43), noopJob("dev"), http.StatusUnauthorized, "", "api: 401 Unauthorized: the token is unknown or revoked"},
		{"negative retries", b.token, bad, http.StatusUnprocessableEntity, "max_retries", `(field "max_retries")`},
		{"input not an object", b.token, badInput, http.StatusUnprocessableEntity, "input", `(field "input")`},
		{"unknown cluster", b.token, noopJob("nope"), http.StatusUnprocessableEntity, "cluster", `cluster not found: "nope"`},
	} {
		before := b.proxy.Requests()
		_, _, err := b.client(t, tc.token).SubmitJob(ctx, tc.req, "")
		var ae *controlplane.APIError
		require.ErrorAs(t, err, &ae, tc.name)
		require.Equal(t, tc.status, ae.Status, tc.name)
		require.Equal(t, tc.field, ae.Field, tc.name)
		require.Contains(t, err.Error(), tc.want, tc.name)
		require.NotContains(t, err.Error(), tc.token, tc.name)
		require.Equal(t, before+1, b.proxy.Requests(), "%s: not retried", tc.name)
	}
	require.Equal(t, 0, b.jobCount(t))

	_, err = b.client(t, b.token).GetJob(ctx, "no-such-job")
	var ae *controlplane.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusNotFound, ae.Status)
	require.Equal(t, `api: 404 Not Found: no job "no-such-job"`, err.Error())
}

func TestClientErrorFromANonProblemBody(t *testing.T) {
	t.Parallel()
	b := setupClient(t, nil)
	c := b.client(t, b.token, controlplane.WithRetryMax(2))
	b.proxy.FailNext(3, http.StatusBadGateway)
	_, _, err := c.SubmitJob(context.Background(), noopJob("dev"), "")
	var ae *controlplane.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusBadGateway, ae.Status)
	require.Equal(t, "api: 502 Bad Gateway: InternalError testenv: injected 502 fault", err.Error())
	require.Equal(t, int64(3), b.proxy.Requests(), "the first attempt and two retries")
	require.Equal(t, 0, b.jobCount(t))
}

func TestClientGivesUpOnConnectionErrors(t *testing.T) {
	t.Parallel()
	b := setupClient(t, nil)
	c := b.client(t, b.token, controlplane.WithRetryMax(2))
	b.proxy.ResetNext(3)
	_, err := c.GetJob(context.Background(), "x")
	require.Error(t, err)
	require.Contains(t, err.Error(), "api: GET "+b.proxy.URL+"/v1/jobs/x: giving up after 3 attempts: ")
	require.NotContains(t, err.Error(), b.token)

	dead, err := controlplane.NewClient("http://127.0.0.1:1", b.token, controlplane.WithRetryMax(1),
		controlplane.WithRetryWait(time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	_, err = dead.Clusters(context.Background())
	require.ErrorContains(t, err, "api: GET http://127.0.0.1:1/v1/clusters: giving up after 2 attempts: dial tcp 127.0.0.1:1: connect: connection refused")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.GetJob(ctx, "x")
	require.ErrorIs(t, err, context.Canceled)
}

func TestClientNeverLogsOrShowsTheToken(t *testing.T) {
	t.Parallel()
	b := setupClient(t, nil)
	c := b.client(t, b.token)
	b.proxy.FailNext(1, http.StatusServiceUnavailable)
	b.proxy.ResetNext(1)
	_, _, err := c.SubmitJob(context.Background(), noopJob("dev"), "")
	require.NoError(t, err)
	_, err = c.GetJob(context.Background(), "nope")
	require.Error(t, err)
	logs := b.logs.String()
	require.Contains(t, logs, "retrying request", "the retries were logged")
	require.NotContains(t, logs, b.token)
	require.NotContains(t, logs, b.token[3:])
	require.NotContains(t, err.Error(), b.token)
}

func TestNewClientRefusesBadURLsAndTokens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, want string }{
		{"", "invalid API base URL: it is empty"},
		{"runfleet.example.com", `invalid API base URL "runfleet.example.com": want http:// or https://`},
		{"ftp://runfleet.example.com", `invalid API base URL "ftp://runfleet.example.com": want http:// or https://`},
		{"http://", `invalid API base URL "http://": no host`},
		{"https://u:s3cret@runfleet.example.com", `invalid API base URL "https://u:xxxxx@runfleet.example.com": must not hold credentials`},
		{"https://runfleet.example.com/?x=1", "must not have a query or fragment"},
		{"http://[::1", "invalid API base URL: missing ']' in host"},
	} {
		_, err := controlplane.NewClient(tc.url, "rf_token")
		require.ErrorIs(t, err, controlplane.ErrInvalidBaseURL, tc.url)
		require.ErrorContains(t, err, tc.want, tc.url)
		require.NotContains(t, err.Error(), "s3cret")
	}
	for _, tok := range []string{"", "rf_with space", "rf_line\nbreak"} {
		_, err := controlplane.NewClient("https://runfleet.example.com", tok)
		require.ErrorIs(t, err, controlplane.ErrInvalidToken, "%q", tok)
		if tok != "" {
			require.NotContains(t, err.Error(), tok)
		}
	}
	c, err := controlplane.NewClient("https://runfleet.example.com/prefix/", "rf_token")
	require.NoError(t, err)
	require.Equal(t, "https://runfleet.example.com/prefix", c.BaseURL())
}

func TestAPIErrorText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e    controlplane.APIError
		want string
	}{
		{controlplane.APIError{Status: 403, Title: "Forbidden", Detail: `token may not submit to cluster "prod"`},
			`api: 403 Forbidden: token may not submit to cluster "prod"`},
		{controlplane.APIError{Status: 422, Title: "Unprocessable Content", Detail: "bad input", Field: "input"},
			`api: 422 Unprocessable Content: bad input (field "input")`},
		{controlplane.APIError{Status: 404}, "api: 404 Not Found"},
		{controlplane.APIError{Status: 503, Detail: "busy", RetryAfter: 3 * time.Second}, "api: 503 Service Unavailable: busy (retry after 3s)"},
	} {
		require.Equal(t, tc.want, tc.e.Error())
	}
	var err error = &controlplane.APIError{Status: 400}
	var ae *controlplane.APIError
	require.True(t, errors.As(err, &ae))
}
