// Package functions_test runs the submit and sweep functions as Lambda
// runs them: bootstrap binaries built as they are deployed, under the AWS
// Lambda Runtime Interface Emulator, invoked with the event JSON AWS sends,
// against a real redis-server.
package functions_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// fleet is a real redis-server with clusters "dev" and "prod" that declare
// Noop v1.0, a client, and a submit-scope token.
type fleet struct {
	ctx    context.Context
	redis  *testenv.Redis
	client *workflows.Client
	token  string
}

func newFleet(tb testing.TB) *fleet {
	tb.Helper()
	r := testenv.NewRedis(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	tb.Cleanup(cancel)
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = c.Close() })
	for _, slug := range []string{"dev", "prod"} {
		_, err = c.Clusters().Create(ctx, slug, "")
		require.NoError(tb, err)
		require.NoError(tb, c.Clusters().Declare(ctx, slug, workflows.NewTaskIdentifier("Noop", "v1.0")))
	}
	_, tok, err := controlplane.CreateToken(ctx, c, controlplane.TokenSpec{Name: "functions", Scope: controlplane.ScopeSubmit, Rate: 1e6, Burst: 1e6})
	require.NoError(tb, err)
	return &fleet{ctx: ctx, redis: r, client: c, token: tok}
}

// start builds the function and runs it under the emulator, configured as
// the deployment configures it.
func (f *fleet) start(tb testing.TB, fn string) *testenv.Lambda {
	tb.Helper()
	bootstrap := testenv.BuildFunction(tb, "github.com/runfleet/runfleet/functions/"+fn)
	return testenv.StartLambda(tb, bootstrap, []string{
		"RUNFLEET_REDIS_URL=" + f.redis.URL(),
		"AWS_LAMBDA_FUNCTION_NAME=runfleet-" + fn,
	})
}

func (f *fleet) jobCount(tb testing.TB) int {
	tb.Helper()
	jobs, err := f.client.Jobs().List(f.ctx, workflows.ListOptions{Limit: 1000})
	require.NoError(tb, err)
	return len(jobs)
}

// event reads a sample event of the control plane's tests (the payloads
// are the same whoever invokes the handler) with its placeholders
// replaced; vars are NAME, value pairs.
func event(tb testing.TB, name string, vars ...string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "controlplane", "testdata", "events", name))
	require.NoError(tb, err)
	s := string(b)
	for i := 0; i+1 < len(vars); i += 2 {
		s = strings.ReplaceAll(s, "${"+vars[i]+"}", vars[i+1])
	}
	require.NotContains(tb, s, "${", "%s: a placeholder is left", name)
	return []byte(s)
}

func invokeHTTP(t *testing.T, l *testenv.Lambda, payload []byte) events.APIGatewayV2HTTPResponse {
	t.Helper()
	out, err := l.Invoke(t.Context(), payload)
	require.NoError(t, err, l.LogTail())
	var resp events.APIGatewayV2HTTPResponse
	require.NoError(t, json.Unmarshal(out, &resp), "%s", out)
	require.NotZero(t, resp.StatusCode, "not an API Gateway response: %s", out)
	return resp
}

func invokeEvent(t *testing.T, l *testenv.Lambda, payload []byte) controlplane.EventReport {
	t.Helper()
	out, err := l.Invoke(t.Context(), payload)
	require.NoError(t, err, l.LogTail())
	var rep controlplane.EventReport
	require.NoError(t, json.Unmarshal(out, &rep), "%s", out)
	return rep
}

func TestSubmitFunctionServesTheHTTPAPI(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	l := f.start(t, "submit")

	post := event(t, "apigw-v2-post-jobs.json", "TOKEN", f.token, "IDEMPOTENCY_KEY", "fn-1")
	created := invokeHTTP(t, l, post)
	require.Equal(t, 201, created.StatusCode, created.Body)
	var job workflows.Job
	require.NoError(t, json.Unmarshal([]byte(created.Body), &job))
	stored, err := f.client.Jobs().Get(f.ctx, job.ID)
	require.NoError(t, err, "the job is in Redis")
	require.Equal(t, "from-apigw", stored.Name)
	require.Equal(t, "/v1/jobs/"+job.ID, created.Headers["Location"])

	// A warm invocation of the same request: the same job.
	again := invokeHTTP(t, l, post)
	require.Equal(t, 200, again.StatusCode, again.Body)
	require.Contains(t, again.Body, job.ID)

	got := invokeHTTP(t, l, event(t, "apigw-v2-get-job-stage.json", "TOKEN", f.token, "JOB_ID", job.ID))
	require.Equal(t, 200, got.StatusCode, got.Body)
	require.Contains(t, got.Body, `"id":"`+job.ID+`"`)

	anon := invokeHTTP(t, l, event(t, "apigw-v2-post-jobs-no-token.json"))
	require.Equal(t, 401, anon.StatusCode, anon.Body)
	require.Equal(t, "application/problem+json", anon.Headers["Content-Type"])
	require.Contains(t, anon.Headers["Www-Authenticate"], "Bearer")
	require.Contains(t, anon.Body, `"status":401`)

	require.Equal(t, 1, f.jobCount(t))
	require.NotContains(t, l.Log(), f.token, "the token must never be logged")
}

func TestSubmitFunctionSubmitsOneJobPerEvent(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	storage, err := controlplane.CreateAutomation(f.ctx, f.client, controlplane.Automation{
		Name: "scans", Cluster: "dev", Task: "Noop", Version: "v1.0", Storage: "s3://inbox/incoming/"})
	require.NoError(t, err)
	cron, err := controlplane.CreateAutomation(f.ctx, f.client, controlplane.Automation{
		Name: "nightly", Cluster: "prod", Task: "Noop", Version: "v1.0", Cron: "*/15 * * * *"})
	require.NoError(t, err)
	l := f.start(t, "submit")

	for _, tc := range []struct {
		name       string
		payload    []byte
		automation string
		jobName    string
	}{
		{"S3 notification", event(t, "s3-object-created.json", "BUCKET", "inbox"), storage.ID, "scans incoming/scan 2026(01).tif"},
		{"MinIO notification", event(t, "minio-object-created.json", "BUCKET", "inbox"), storage.ID, "scans incoming/tile 1.tif"},
		{"EventBridge Scheduler input", event(t, "scheduler-input.json", "AUTOMATION", cron.ID), cron.ID, "nightly 2026-01-12T10:30:00Z"},
		{"EventBridge rule event", event(t, "eventbridge-rule-schedule.json", "AUTOMATION", cron.ID), cron.ID, "nightly 2026-01-12T10:45:00Z"},
	} {
		before := f.jobCount(t)
		first := invokeEvent(t, l, tc.payload)
		require.Len(t, first.Submitted, 1, "%s: %+v", tc.name, first)
		require.True(t, first.Submitted[0].Created, tc.name)
		require.Equal(t, tc.automation, first.Submitted[0].Automation, tc.name)
		job, err := f.client.Jobs().Get(f.ctx, first.Submitted[0].JobID)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.jobName, job.Name, tc.name)

		// Lambda delivers events at least once: the second delivery finds
		// the job the first made.
		second := invokeEvent(t, l, tc.payload)
		require.Len(t, second.Submitted, 1, "%s: %+v", tc.name, second)
		require.False(t, second.Submitted[0].Created, tc.name)
		require.Equal(t, first.Submitted[0].JobID, second.Submitted[0].JobID, tc.name)
		require.Equal(t, before+1, f.jobCount(t), "%s: one job however often it is delivered", tc.name)
	}

	test := invokeEvent(t, l, event(t, "s3-test-event.json", "BUCKET", "inbox"))
	require.Empty(t, test.Submitted)

	// A payload of another kind is a function error naming what the
	// function accepts.
	for _, payload := range [][]byte{event(t, "sqs-event.json"), event(t, "eventbridge-sweep.json"), []byte(`{"hello":"world"}`)} {
		_, err := l.Invoke(t.Context(), payload)
		var fe *testenv.FunctionError
		require.ErrorAs(t, err, &fe, "%s", payload)
		require.Contains(t, fe.Message, "unknown event")
		require.Contains(t, fe.Message, "expected an API Gateway HTTP API request")
	}
	require.Equal(t, 4, f.jobCount(t))
}

// The sweep function prints one embedded-metric-format line per cluster on
// stdout, which Lambda (and the emulator) passes on to the log.
func TestSweepFunctionPrintsMetricsPerCluster(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	for range 3 {
		_, err := f.client.Jobs().SubmitRaw(f.ctx, workflows.SubmitRequest{
			Name: "queued", Cluster: "dev", Task: workflows.NewTaskIdentifier("Noop", "v1.0"), Input: []byte(`{}`)})
		require.NoError(t, err)
	}
	l := f.start(t, "sweep")

	out, err := l.Invoke(t.Context(), event(t, "eventbridge-sweep.json"))
	require.NoError(t, err, l.LogTail())
	var rep controlplane.SweepReport
	require.NoError(t, json.Unmarshal(out, &rep), "%s", out)

	type emf struct {
		AWS struct {
			Timestamp         int64 `json:"Timestamp"`
			CloudWatchMetrics []struct {
				Namespace  string     `json:"Namespace"`
				Dimensions [][]string `json:"Dimensions"`
			} `json:"CloudWatchMetrics"`
		} `json:"_aws"`
		Cluster    string `json:"Cluster"`
		ReadyTasks int64  `json:"ReadyTasks"`
	}
	var lines []emf
	// The function's output may reach the log just after the answer.
	require.Eventually(t, func() bool {
		lines = lines[:0]
		for line := range strings.Lines(l.Log()) {
			if !strings.HasPrefix(line, `{"_aws"`) {
				continue
			}
			var m emf
			require.NoError(t, json.Unmarshal([]byte(line), &m), line)
			lines = append(lines, m)
		}
		return len(lines) >= 2
	}, 5*time.Second, 20*time.Millisecond, "no EMF lines in the log:\n%s", l.LogTail())
	require.Len(t, lines, 2, "one line per cluster")
	slices.SortFunc(lines, func(a, b emf) int { return strings.Compare(a.Cluster, b.Cluster) })
	require.Equal(t, "dev", lines[0].Cluster)
	require.Equal(t, "prod", lines[1].Cluster)
	require.EqualValues(t, 3, lines[0].ReadyTasks, "three queued root tasks in dev")
	require.EqualValues(t, 0, lines[1].ReadyTasks)
	for _, m := range lines {
		require.Equal(t, controlplane.MetricsNamespace, m.AWS.CloudWatchMetrics[0].Namespace)
		require.Equal(t, [][]string{{"Cluster"}}, m.AWS.CloudWatchMetrics[0].Dimensions)
		require.InDelta(t, time.Now().UnixMilli(), m.AWS.Timestamp, float64(time.Minute.Milliseconds()))
	}

	// Every minute another invocation, warm: another line per cluster.
	_, err = l.Invoke(t.Context(), event(t, "eventbridge-sweep.json"))
	require.NoError(t, err, l.LogTail())
	require.Eventually(t, func() bool {
		return strings.Count(l.Log(), `{"_aws"`) == 4
	}, 5*time.Second, 20*time.Millisecond, l.LogTail())
}

// A function that cannot start says why: the invocation fails and the log
// names the variable.
func TestFunctionWithoutRedisURLFailsAtInit(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.BuildFunction(t, "github.com/runfleet/runfleet/functions/submit")
	// An empty value counts as unset, whatever the caller's environment.
	l := testenv.StartLambda(t, bootstrap, []string{"RUNFLEET_REDIS_URL="})
	_, err := l.Invoke(t.Context(), []byte(`{}`))
	require.ErrorContains(t, err, "502", "the emulator answers a failed init with 502 Bad Gateway")
	require.Eventually(t, func() bool {
		return strings.Contains(l.Log(), "RUNFLEET_REDIS_URL is not set")
	}, 5*time.Second, 20*time.Millisecond, l.LogTail())
}

// BenchmarkSubmitFunctionWarmInvoke measures warm invocations of the
// submit function under the emulator: API Gateway POST /v1/jobs, each a
// new job (its own Idempotency-Key). The latency includes the emulator's
// HTTP hop and the runtime API round trip, so it is an upper bound on the
// handler's share of a Lambda invocation.
func BenchmarkSubmitFunctionWarmInvoke(b *testing.B) {
	f := newFleet(b)
	l := f.start(b, "submit")
	ctx := context.Background()
	payload := func(i int) []byte {
		return event(b, "apigw-v2-post-jobs.json", "TOKEN", f.token, "IDEMPOTENCY_KEY", "bench-"+strconv.Itoa(i))
	}
	// The first invocation is the cold start.
	if _, err := l.Invoke(ctx, payload(-1)); err != nil {
		b.Fatalf("cold invoke: %v; %s", err, l.LogTail())
	}
	payloads := make([][]byte, b.N)
	for i := range payloads {
		payloads[i] = payload(i)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		out, err := l.Invoke(ctx, payloads[i])
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatalf("invoke %d: %v; %s", i, err, l.LogTail())
		}
		var resp events.APIGatewayV2HTTPResponse
		if err := json.Unmarshal(out, &resp); err != nil || resp.StatusCode != 201 {
			b.Fatalf("invoke %d: want 201, got %s (%v)", i, out, err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(q float64) float64 {
		return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(0.50), "p50_ms")
	b.ReportMetric(ms(0.99), "p99_ms")
}
