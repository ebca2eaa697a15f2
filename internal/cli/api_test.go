package cli

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/internal/testenv"
)

// deadRedis is a Redis URL where nothing answers: commands in --api mode
// must work without Redis.
const deadRedis = "redis://127.0.0.1:1/0"

// apiFixture is a fixture with the HTTP API served over its Redis, behind a
// fault proxy, and a submit token made with token create.
type apiFixture struct {
	*fixture
	proxy *testenv.FaultProxy
	url   string
	token string
}

func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	f := newFixture(t)
	srv, err := controlplane.New(controlplane.Config{Client: f.client(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	proxy := testenv.NewFaultProxy(t, hs.URL)
	f.cluster("dev")
	f.register("dev")
	return &apiFixture{fixture: f, proxy: proxy, url: proxy.URL, token: f.newToken("cli", "submit")}
}

// newToken creates a token with token create and returns it.
func (f *fixture) newToken(name, scope string, extra ...string) string {
	f.t.Helper()
	r := f.ok(append([]string{"token", "create", "--name", name, "--scope", scope}, extra...)...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	return lines[len(lines)-1]
}

// api runs runfleet in --api mode with the fixture's token; Redis is out
// of reach.
func (f *apiFixture) api(args ...string) result {
	f.t.Helper()
	r := runCLI(f.t, "", append([]string{"--redis", deadRedis, "--api", f.url, "--token", f.token}, args...)...)
	require.NotContains(f.t, r.stdout+r.stderr, f.token, "the token is never printed")
	return r
}

// apiOK runs api and requires exit code 0.
func (f *apiFixture) apiOK(args ...string) result {
	f.t.Helper()
	r := f.api(args...)
	require.Equal(f.t, 0, r.code, "runfleet --api %v\nstdout: %s\nstderr: %s", args, r.stdout, r.stderr)
	return r
}

func TestAPIJobCommandsMatchRedisMode(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)

	r := f.apiOK("job", "submit", "--cluster", "dev", "--name", "test-sleep", "--task", "Sleep", "--version", "v1.0",
		"--input", `{"ms": 5}`, "--max-retries", "2")
	id := strings.TrimSpace(r.stdout)
	require.Regexp(t, `^[0-9a-f-]{36}$`, id)
	require.Empty(t, r.stderr)
	other := f.submit("dev", "Noop", "{}") // through Redis

	require.Equal(t, f.ok("job", "get", id).stdout, f.apiOK("job", "get", id).stdout)
	require.JSONEq(t, f.ok("job", "get", id, "--json").stdout, f.apiOK("job", "get", id, "--json").stdout)
	require.JSONEq(t, f.ok("job", "list", "--json").stdout, f.apiOK("job", "list", "--json").stdout)
	require.JSONEq(t, f.ok("job", "list", "--json", "--limit", "1").stdout, f.apiOK("job", "list", "--json", "--limit", "1").stdout)
	lines := strings.Split(strings.TrimSpace(f.apiOK("job", "list").stdout), "\n")
	require.Len(t, lines, 3)
	require.Regexp(t, `^ID\s+NAME\s+CLUSTER\s+STATE\s+TASKS\s+FAILED\s+CREATED\s+AGE$`, lines[0])
	require.Regexp(t, `^`+other+`\s+test-noop\s+dev\s+submitted\s+0/1\s+0\s+\d{4}-`, lines[1])
	require.True(t, strings.HasPrefix(lines[2], id))

	// The root task got the input and max retries.
	var tasks []map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.ok("job", "tasks", id, "--json").stdout), &tasks))
	require.JSONEq(t, `{"ms": 5}`, tasks[0]["input"].(string))
	require.Equal(t, 2.0, tasks[0]["max_retries"])

	r = f.apiOK("job", "cancel", id)
	require.Equal(t, "canceled job "+id+"; running tasks finish (resume with: runfleet job retry "+id+")\n", r.stdout)
	require.Equal(t, "job "+id+" is already canceled; nothing to cancel\n", f.apiOK("job", "cancel", id).stdout)
	require.Equal(t, "retried job "+id+"; it is submitted (1 queued)\n", f.apiOK("job", "retry", id).stdout)
	require.Equal(t, "job "+id+" is submitted; nothing to retry\n", f.apiOK("job", "retry", id).stdout)

	r = f.api("job", "list", "--state", "done")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, `runfleet: api: 400 Bad Request: state "done" is not one of submitted, running, completed, failed, canceled (field "state")`)

	r = f.api("job", "list", "--cluster", "gpu", "--state", "failed")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stdout)
	require.Equal(t, "no jobs found\n", r.stderr)
}

func TestAPIJobSubmitIsRetriedAndCreatesOneJob(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.proxy.FailNext(1, http.StatusServiceUnavailable)
	f.proxy.ResetNext(1)
	f.proxy.CutNext(1, 10) // the job is created, its answer lost
	r := f.apiOK("job", "submit", "--cluster", "dev", "--name", "n", "--task", "Noop", "--version", "v1.0")
	id := strings.TrimSpace(r.stdout)
	require.Empty(t, r.stderr, "the job was created by this invocation")
	require.Equal(t, 1, f.jobCount())
	require.Equal(t, "n", f.job(id)["name"])
	require.Equal(t, 0, f.proxy.Pending())
}

func TestAPIJobSubmitIdempotencyKeyAndNotify(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	args := []string{"job", "submit", "--cluster", "dev", "--name", "nightly", "--task", "Noop", "--version", "v1.0",
		"--idempotency-key", "nightly-2025-06-01", "--notify", "https://hooks.example.com/runfleet"}
	first := f.apiOK(args...)
	require.Empty(t, first.stderr)
	again := f.apiOK(args...)
	require.Equal(t, first.stdout, again.stdout)
	id := strings.TrimSpace(first.stdout)
	require.Equal(t, "job "+id+` was already submitted with idempotency key "nightly-2025-06-01"; not submitted again`+"\n", again.stderr)
	require.Equal(t, 1, f.jobCount())

	// Redis mode takes the same flags.
	redisArgs := append([]string{}, args...)
	redisArgs[len(redisArgs)-3] = "redis-key"
	first = f.ok(redisArgs...)
	again = f.ok(redisArgs...)
	require.Equal(t, first.stdout, again.stdout)
	require.Contains(t, again.stderr, `was already submitted with idempotency key "redis-key"`)
	require.Equal(t, 2, f.jobCount())

	r := f.api("job", "submit", "--cluster", "dev", "--name", "n", "--task", "Noop", "--version", "v1.0", "--notify", "ftp://x")
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, `runfleet: api: 422 Unprocessable Content: submit job "n": notify URL "ftp://x" is not an absolute http:// or https:// URL (field "notify")`+"\n", r.stderr)

	r = f.api("job", "submit", "--cluster", "dev", "--name", "n", "--task", "Noop", "--version", "v1.0", "--input", "{ms: 5}")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, `runfleet: submit job "n": input must be a JSON object: invalid character 'm'`)
	require.Equal(t, 2, f.jobCount())
}

func TestAPIJobSubmitWaitAndJobWait(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.runner("dev")
	r := f.apiOK("job", "submit", "--cluster", "dev", "--name", "fan", "--task", "FanOut", "--version", "v1.0",
		"--input", `{"n": 3}`, "--wait", "--interval", "20ms", "--timeout", "30s")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	id := lines[0]
	require.Regexp(t, `^job `+id+` completed after \S+: 4/4 tasks done \(4 computed\)$`, lines[len(lines)-1])

	r = f.apiOK("job", "wait", id, "--interval", "20ms")
	require.Regexp(t, `(?m)^job `+id+` completed after \S+: 4/4 tasks done \(4 computed\)\n\z`, r.stdout)

	r = f.api("job", "submit", "--cluster", "dev", "--name", "fail", "--task", "Fail", "--version", "v1.0",
		"--wait", "--interval", "20ms", "--timeout", "30s")
	require.Equal(t, ExitFailure, r.code, r.stderr)
	require.Contains(t, r.stdout, "1/1 tasks done (1 failed)")

	f.cluster("idle")
	f.register("idle") // accepts submissions, runs nothing
	r = f.apiOK("job", "submit", "--cluster", "idle", "--name", "stuck", "--task", "Noop", "--version", "v1.0")
	id = strings.TrimSpace(r.stdout)
	// A second, not 300 ms: on a loaded machine the first read through the
	// gateway alone can take longer, and then there is no state to print.
	r = f.api("job", "wait", id, "--interval", "20ms", "--timeout", "1s")
	require.Equal(t, ExitTimeout, r.code, r.stderr)
	require.Contains(t, r.stdout, "job "+id+" is still submitted after 1s: 0/1 tasks done (1 queued)\n")
	require.Equal(t, "runfleet: timed out after 1s waiting for job "+id+"\n", r.stderr)
}

func TestAPIErrorsHaveHints(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)

	r := f.api("job", "get", "no-such-job")
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, "runfleet: api: 404 Not Found: no job \"no-such-job\"\nhint: list recent jobs with: runfleet job list\n", r.stderr)

	reader := f.newToken("reader", "read")
	r = runCLI(t, "", "--api", f.url, "--token", reader, "job", "submit", "--cluster", "dev", "--name", "n", "--task", "Noop", "--version", "v1.0")
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, "runfleet: api: 403 Forbidden: token \"reader\" has scope read; this request needs submit\n"+
		"hint: the token's scope or clusters do not allow this; an admin can show them with: runfleet token list\n", r.stderr)
	require.NotContains(t, r.stderr, reader)

	f.ok("token", "revoke", "reader")
	r = runCLI(t, "", "--api", f.url, "--token", reader, "job", "list")
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, "runfleet: api: 401 Unauthorized: the token is unknown or revoked\n"+
		"hint: check the token in $RUNFLEET_API_TOKEN or --token; an admin creates one with: runfleet token create\n", r.stderr)

	f.proxy.Close()
	r = f.api("job", "get", "x")
	require.Equal(t, ExitFailure, r.code)
	require.Regexp(t, `^runfleet: api: GET `+regexp.QuoteMeta(f.url)+`/v1/jobs/x: giving up after 6 attempts: `, r.stderr)
	require.Contains(t, r.stderr, "\nhint: is the runfleet API reachable at "+f.url+" (from --api)?\n")
}

// Not parallel: it sets the environment.
func TestAPIModeFromEnvironmentAndUsageErrors(t *testing.T) {
	f := newAPIFixture(t)
	t.Setenv(envAPIURL, f.url)
	t.Setenv(envAPIToken, f.token)
	r := runCLI(t, "", "--redis", deadRedis, "job", "list", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "[]\n", r.stdout)

	t.Setenv(envAPIToken, "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"job", "list"}, "runfleet: $RUNFLEET_API_URL is set but no token is: set $RUNFLEET_API_TOKEN (or pass --token)\n"},
		{[]string{"--api", f.url, "job", "get", "x"}, "runfleet: --api is set but no token is: set $RUNFLEET_API_TOKEN (or pass --token)\n"},
		{[]string{"--api", "ftp://host", "--token", "t", "job", "cancel", "x"},
			`runfleet: --api: invalid API base URL "ftp://host": want http:// or https://` + "\n"},
		{[]string{"--api", "http://u:s3cret@host", "--token", "t", "job", "retry", "x"},
			`runfleet: --api: invalid API base URL "http://u:xxxxx@host": must not hold credentials; pass the token separately` + "\n"},
		{[]string{"--token", "rf_a b", "job", "wait", "x"}, "runfleet: --token: invalid API token: it contains spaces or control characters\n"},
	} {
		r := runCLI(t, "", append([]string{"--redis", deadRedis}, tc.args...)...)
		require.Equal(t, ExitUsage, r.code, "%v: %s", tc.args, r.stderr)
		require.True(t, strings.HasPrefix(r.stderr, tc.want), "%v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, "--help' for usage.")
		require.NotContains(t, r.stderr, "s3cret")
		require.Empty(t, r.stdout)
	}

	t.Setenv(envAPIURL, "not a url")
	t.Setenv(envAPIToken, "t")
	r = runCLI(t, "", "job", "submit", "--cluster", "dev", "--name", "n", "--task", "Noop", "--version", "v1.0")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, `runfleet: $RUNFLEET_API_URL: invalid API base URL "not a url": want http:// or https://`)

	// Commands outside the API keep using Redis.
	r = runCLI(t, "", "--redis", deadRedis, "job", "tasks", "x")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "runfleet: connect to redis")
}
