package controlplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// testBundle is a real redis-server, a client, a cluster "dev" serving
// Noop v1.0 (declared, no runner), a control-plane server and its API over
// a real HTTP listener.
type testBundle struct {
	ctx    context.Context
	redis  *testenv.Redis
	rdb    *redis.Client
	client *workflows.Client
	srv    *controlplane.Server
	api    *httptest.Server
	log    *testenv.Buffer
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Clusters().Create(ctx, "dev", "")
	require.NoError(t, err)
	_, err = c.Clusters().Create(ctx, "prod", "")
	require.NoError(t, err)
	require.NoError(t, c.Clusters().Declare(ctx, "dev", workflows.NewTaskIdentifier("Noop", "v1.0")))
	require.NoError(t, c.Clusters().Declare(ctx, "prod", workflows.NewTaskIdentifier("Noop", "v1.0")))
	log := &testenv.Buffer{}
	srv, err := controlplane.New(controlplane.Config{Client: c, Logger: slog.New(slog.NewTextHandler(log, nil))})
	require.NoError(t, err)
	api := httptest.NewServer(srv.Handler())
	t.Cleanup(api.Close)
	ro, err := redis.ParseURL(r.URL())
	require.NoError(t, err)
	rdb := redis.NewClient(ro)
	t.Cleanup(func() { _ = rdb.Close() })
	return &testBundle{ctx: ctx, redis: r, rdb: rdb, client: c, srv: srv, api: api, log: log}
}

func (b *testBundle) token(t *testing.T, spec controlplane.TokenSpec) string {
	t.Helper()
	_, secret, err := controlplane.CreateToken(b.ctx, b.client, spec)
	require.NoError(t, err)
	return secret
}

type answer struct {
	status  int
	header  http.Header
	body    []byte
	problem map[string]any
}

func (b *testBundle) do(t *testing.T, method, path, token string, body []byte, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(b.ctx, method, b.api.URL+path, bytes.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	a.body, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.Header.Get("Content-Type") == "application/problem+json" {
		require.NoError(t, json.Unmarshal(a.body, &a.problem), "problem body: %s", a.body)
		require.EqualValues(t, resp.StatusCode, a.problem["status"])
		require.NotEmpty(t, a.problem["title"])
		require.NotEmpty(t, a.problem["type"])
	}
	return a
}

func (b *testBundle) jobCount(t *testing.T) int {
	t.Helper()
	n, err := b.rdb.ZCard(b.ctx, "rf:jobs").Result()
	require.NoError(t, err)
	return int(n)
}

func submitBody(cluster string) []byte {
	return []byte(`{"cluster":"` + cluster + `","name":"n","task":"Noop","version":"v1.0","input":{}}`)
}

func TestSubmitOverHTTPIsIdempotentPerKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := b.token(t, controlplane.TokenSpec{Name: "ci", Scope: controlplane.ScopeSubmit})

	first := b.do(t, "POST", "/v1/jobs", tok, submitBody("dev"), "Idempotency-Key", "k1")
	require.Equal(t, http.StatusCreated, first.status, "%s", first.body)
	var j1 workflows.Job
	require.NoError(t, json.Unmarshal(first.body, &j1))
	require.Equal(t, "/v1/jobs/"+j1.ID, first.header.Get("Location"))
	require.Equal(t, workflows.JobSubmitted, j1.State)

	again := b.do(t, "POST", "/v1/jobs", tok, submitBody("dev"), "Idempotency-Key", "k1")
	require.Equal(t, http.StatusOK, again.status)
	var j2 workflows.Job
	require.NoError(t, json.Unmarshal(again.body, &j2))
	require.Equal(t, j1.ID, j2.ID)

	other := b.do(t, "POST", "/v1/jobs", tok, submitBody("prod"), "Idempotency-Key", "k1")
	require.Equal(t, http.StatusUnprocessableEntity, other.status)
	require.Equal(t, "Idempotency-Key", other.problem["field"])

	noKey := b.do(t, "POST", "/v1/jobs", tok, submitBody("dev"))
	require.Equal(t, http.StatusCreated, noKey.status)
	require.Equal(t, 2, b.jobCount(t))

	got := b.do(t, "GET", "/v1/jobs/"+j1.ID, tok, nil)
	require.Equal(t, http.StatusOK, got.status)
	require.Contains(t, string(got.body), j1.ID)
	require.Equal(t, http.StatusNotFound, b.do(t, "GET", "/v1/jobs/nope", tok, nil).status)
	require.False(t, b.log.Contains(tok), "the token must never be logged")
}

func TestBadRequestsAreRefusedAndWriteNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	submit := b.token(t, controlplane.TokenSpec{Name: "submit", Scope: controlplane.ScopeSubmit})
	read := b.token(t, controlplane.TokenSpec{Name: "read", Scope: controlplane.ScopeRead})
	devOnly := b.token(t, controlplane.TokenSpec{Name: "dev-only", Scope: controlplane.ScopeSubmit, Clusters: []string{"dev"}})
	big := `{"cluster":"dev","name":"n","task":"Noop","version":"v1.0","input":{"x":"` + strings.Repeat("a", controlplane.MaxBodyBytes) + `"}}`

	for _, tc := range []struct {
		name   string
		token  string
		body   string
		status int
		field  string
	}{
		{"no token", "", string(submitBody("dev")), 401, ""},
		{"unknown token", "rf_notatoken", string(submitBody("dev")), 401, ""},
		{"not a runfleet token", "abc", string(submitBody("dev")), 401, ""},
		{"read scope cannot submit", read, string(submitBody("dev")), 403, ""},
		{"token limited to another cluster", devOnly, string(submitBody("prod")), 403, "cluster"},
		{"malformed JSON", submit, `{"cluster":"dev",`, 400, ""},
		{"wrong type", submit, `{"cluster":"dev","name":"n","task":"Noop","version":"v1.0","max_retries":"two"}`, 400, "max_retries"},
		{"unknown field", submit, `{"cluster":"dev","name":"n","task":"Noop","version":"v1.0","retries":2}`, 400, "retries"},
		{"missing cluster", submit, `{"name":"n","task":"Noop","version":"v1.0"}`, 422, "cluster"},
		{"unknown cluster", submit, string(submitBody("nowhere")), 422, "cluster"},
		{"unknown task", submit, `{"cluster":"dev","name":"n","task":"Nope","version":"v1.0"}`, 422, "task"},
		{"bad version", submit, `{"cluster":"dev","name":"n","task":"Noop","version":"1.0"}`, 422, "version"},
		{"input not an object", submit, `{"cluster":"dev","name":"n","task":"Noop","version":"v1.0","input":[1]}`, 422, "input"},
		{"negative retries", submit, `{"cluster":"dev","name":"n","task":"Noop","version":"v1.0","max_retries":-1}`, 422, "max_retries"},
		{"bad notify URL", submit, `{"cluster":"dev","name":"n","task":"Noop","version":"v1.0","notify":"ftp://x"}`, 422, "notify"},
		{"body over 1 MiB", submit, big, 413, ""},
	} {
		a := b.do(t, "POST", "/v1/jobs", tc.token, []byte(tc.body), "Idempotency-Key", "key-"+tc.name)
		require.Equal(t, tc.status, a.status, "%s: %s", tc.name, a.body)
		require.NotNil(t, a.problem, "%s: not a problem document: %s", tc.name, a.body)
		if tc.field != "" {
			require.Equal(t, tc.field, a.problem["field"], "%s: %s", tc.name, a.body)
		}
		if tc.status == 401 {
			require.Contains(t, a.header.Get("WWW-Authenticate"), "Bearer", tc.name)
		}
	}
	require.Equal(t, 0, b.jobCount(t), "no job may be written")
	keys, err := b.rdb.Keys(b.ctx, "rf:idem:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "no idempotency key may be reserved by a refused submission")
	for _, tok := range []string{submit, read, devOnly} {
		require.False(t, b.log.Contains(tok), "tokens must never be logged")
	}
}

func TestScopesAndClustersLimitWhatATokenSees(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin := b.token(t, controlplane.TokenSpec{Name: "admin", Scope: controlplane.ScopeAdmin})
	devRead := b.token(t, controlplane.TokenSpec{Name: "dev-read", Scope: controlplane.ScopeRead, Clusters: []string{"dev"}})
	a := b.do(t, "POST", "/v1/jobs", admin, submitBody("prod"))
	require.Equal(t, 201, a.status)
	var prodJob workflows.Job
	require.NoError(t, json.Unmarshal(a.body, &prodJob))

	require.Equal(t, 403, b.do(t, "GET", "/v1/jobs/"+prodJob.ID, devRead, nil).status)
	require.Equal(t, 403, b.do(t, "GET", "/v1/jobs?cluster=prod", devRead, nil).status)
	require.Equal(t, 403, b.do(t, "POST", "/v1/jobs/"+prodJob.ID+"/cancel", devRead, nil).status)

	var page controlplane.JobPage
	list := b.do(t, "GET", "/v1/jobs", devRead, nil)
	require.Equal(t, 200, list.status)
	require.NoError(t, json.Unmarshal(list.body, &page))
	require.Empty(t, page.Jobs, "a dev-only token lists dev jobs only")

	var cl controlplane.ClusterList
	require.NoError(t, json.Unmarshal(b.do(t, "GET", "/v1/clusters", devRead, nil).body, &cl))
	require.Len(t, cl.Clusters, 1)
	require.Equal(t, "dev", cl.Clusters[0].Slug)
	require.NoError(t, json.Unmarshal(b.do(t, "GET", "/v1/clusters", admin, nil).body, &cl))
	require.Len(t, cl.Clusters, 2)

	canceled := b.do(t, "POST", "/v1/jobs/"+prodJob.ID+"/cancel", admin, nil)
	require.Equal(t, 200, canceled.status, "%s", canceled.body)
	require.Contains(t, string(canceled.body), `"state":"canceled"`)
	retried := b.do(t, "POST", "/v1/jobs/"+prodJob.ID+"/retry", admin, nil)
	require.Equal(t, 200, retried.status)
	require.NotContains(t, string(retried.body), `"state":"canceled"`)

	require.Equal(t, 400, b.do(t, "GET", "/v1/jobs?state=bogus", admin, nil).status)
	require.Equal(t, 400, b.do(t, "GET", "/v1/jobs?limit=0", admin, nil).status)
	require.Equal(t, 400, b.do(t, "GET", "/v1/jobs?cursor=zzz", admin, nil).status)
	require.Equal(t, 404, b.do(t, "GET", "/v2/nothing", admin, nil).status)

	// Revoked tokens stop working at once.
	_, err := controlplane.RevokeToken(b.ctx, b.client, "dev-read")
	require.NoError(t, err)
	require.Equal(t, 401, b.do(t, "GET", "/v1/clusters", devRead, nil).status)
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 200, b.do(t, "GET", "/healthz", "", nil).status)
	b.redis.Stop()
	require.Equal(t, 503, b.do(t, "GET", "/healthz", "", nil).status)
}

func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := b.token(t, controlplane.TokenSpec{Name: "slow", Scope: controlplane.ScopeRead, Rate: 0.5, Burst: 2})
	require.Equal(t, 200, b.do(t, "GET", "/v1/clusters", tok, nil).status)
	require.Equal(t, 200, b.do(t, "GET", "/v1/clusters", tok, nil).status)
	a := b.do(t, "GET", "/v1/clusters", tok, nil)
	require.Equal(t, 429, a.status)
	after, err := strconv.Atoi(a.header.Get("Retry-After"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, after, 1)
	require.LessOrEqual(t, after, 2)
	// Another token has its own bucket.
	other := b.token(t, controlplane.TokenSpec{Name: "other", Scope: controlplane.ScopeRead})
	require.Equal(t, 200, b.do(t, "GET", "/v1/clusters", other, nil).status)
}

func TestListJobsPagesWithACursor(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := b.token(t, controlplane.TokenSpec{Name: "ci", Scope: controlplane.ScopeSubmit})
	want := map[string]bool{}
	for range 5 {
		a := b.do(t, "POST", "/v1/jobs", tok, submitBody("dev"))
		require.Equal(t, 201, a.status)
		var j workflows.Job
		require.NoError(t, json.Unmarshal(a.body, &j))
		want[j.ID] = true
	}
	seen := map[string]bool{}
	cursor, pages := "", 0
	for {
		a := b.do(t, "GET", "/v1/jobs?cluster=dev&limit=2&cursor="+cursor, tok, nil)
		require.Equal(t, 200, a.status, "%s", a.body)
		var p controlplane.JobPage
		require.NoError(t, json.Unmarshal(a.body, &p))
		pages++
		for _, j := range p.Jobs {
			require.False(t, seen[j.ID], "job %s listed twice", j.ID)
			seen[j.ID] = true
		}
		require.LessOrEqual(t, len(p.Jobs), 2)
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
		require.Less(t, pages, 10)
	}
	require.Equal(t, want, seen)
}

// runNoopJobs runs the cluster's queued jobs to completion with a real
// runner serving the bench tasks.
func (b *testBundle) runJobs(t *testing.T, cluster string) {
	t.Helper()
	r, err := b.client.NewRunner(b.ctx, cluster, benchtask.All()...)
	require.NoError(t, err)
	require.NoError(t, r.RunAll(b.ctx))
}
