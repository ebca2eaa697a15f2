package controlplane_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/workflows"
)

// loadEvent reads testdata/events/name and replaces its ${NAME}
// placeholders; vars are NAME, value pairs.
func loadEvent(t testing.TB, name string, vars ...string) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "events", name))
	require.NoError(t, err)
	s := string(b)
	for i := 0; i+1 < len(vars); i += 2 {
		s = strings.ReplaceAll(s, "${"+vars[i]+"}", vars[i+1])
	}
	require.NotContains(t, s, "${", "%s: a placeholder is left", name)
	require.True(t, json.Valid([]byte(s)), "%s is not JSON", name)
	return json.RawMessage(s)
}

// invokeHTTP invokes the submit handler with an API Gateway request and
// returns the HTTP answer, after a round trip through JSON as Lambda makes
// it.
func invokeHTTP(t *testing.T, b *testBundle, payload json.RawMessage) events.APIGatewayV2HTTPResponse {
	t.Helper()
	out, err := b.srv.InvokeSubmit(b.ctx, payload)
	require.NoError(t, err)
	wire, err := json.Marshal(out)
	require.NoError(t, err)
	var resp events.APIGatewayV2HTTPResponse
	require.NoError(t, json.Unmarshal(wire, &resp))
	return resp
}

func TestInvokeSubmitServesAPIGatewayRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := b.token(t, controlplane.TokenSpec{Name: "apigw", Scope: controlplane.ScopeSubmit})

	post := loadEvent(t, "apigw-v2-post-jobs.json", "TOKEN", tok, "IDEMPOTENCY_KEY", "apigw-1")
	created := invokeHTTP(t, b, post)
	require.Equal(t, 201, created.StatusCode, created.Body)
	require.Equal(t, "application/json", created.Headers["Content-Type"])
	require.False(t, created.IsBase64Encoded, "JSON goes out as text")
	var job workflows.Job
	require.NoError(t, json.Unmarshal([]byte(created.Body), &job))
	require.Equal(t, "/v1/jobs/"+job.ID, created.Headers["Location"])
	stored, err := b.client.Jobs().Get(b.ctx, job.ID)
	require.NoError(t, err)
	require.Equal(t, "from-apigw", stored.Name)
	require.Equal(t, "dev", stored.Cluster)

	// The Idempotency-Key header reaches the handler: a redelivery finds
	// the same job.
	again := invokeHTTP(t, b, post)
	require.Equal(t, 200, again.StatusCode, again.Body)
	require.Contains(t, again.Body, job.ID)

	b64 := invokeHTTP(t, b, loadEvent(t, "apigw-v2-post-jobs-base64.json", "TOKEN", tok))
	require.Equal(t, 201, b64.StatusCode, b64.Body)
	require.Contains(t, b64.Body, `"name":"from-base64"`)

	// A named stage prefixes rawPath on the execute-api URL.
	got := invokeHTTP(t, b, loadEvent(t, "apigw-v2-get-job-stage.json", "TOKEN", tok, "JOB_ID", job.ID))
	require.Equal(t, 200, got.StatusCode, got.Body)
	require.Contains(t, got.Body, `"id":"`+job.ID+`"`)

	anon := invokeHTTP(t, b, loadEvent(t, "apigw-v2-post-jobs-no-token.json"))
	require.Equal(t, 401, anon.StatusCode, anon.Body)
	require.Equal(t, "application/problem+json", anon.Headers["Content-Type"])
	require.Contains(t, anon.Headers["Www-Authenticate"], "Bearer")
	var problem map[string]any
	require.NoError(t, json.Unmarshal([]byte(anon.Body), &problem))
	require.EqualValues(t, 401, problem["status"])

	require.Equal(t, 2, b.jobCount(t))
	require.False(t, b.log.Contains(tok), "the token must never be logged")
}

func TestInvokeSubmitSubmitsOneJobPerObjectVersion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	auto, err := controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{
		Name: "scans", Cluster: "dev", Task: "Noop", Version: "v1.0", Storage: "s3://inbox/incoming/"})
	require.NoError(t, err)

	s3ev := loadEvent(t, "s3-object-created.json", "BUCKET", "inbox")
	var first controlplane.EventReport
	for i := range 2 {
		out, err := b.srv.InvokeSubmit(b.ctx, s3ev)
		require.NoError(t, err)
		rep, ok := out.(controlplane.EventReport)
		require.True(t, ok, "an S3 event is answered with an EventReport, got %T", out)
		require.Len(t, rep.Submitted, 1, "%+v", rep)
		require.Equal(t, auto.ID, rep.Submitted[0].Automation)
		require.Equal(t, i == 0, rep.Submitted[0].Created, "delivery %d", i+1)
		if i == 0 {
			first = rep
		} else {
			require.Equal(t, first.Submitted[0].JobID, rep.Submitted[0].JobID, "a redelivery finds the same job")
		}
	}
	job, err := b.client.Jobs().Get(b.ctx, first.Submitted[0].JobID)
	require.NoError(t, err)
	// The key arrives URL-encoded ("+" for a space).
	require.Equal(t, "scans incoming/scan 2026(01).tif", job.Name)

	out, err := b.srv.InvokeSubmit(b.ctx, loadEvent(t, "minio-object-created.json", "BUCKET", "inbox"))
	require.NoError(t, err)
	rep := out.(controlplane.EventReport)
	require.Len(t, rep.Submitted, 1, "%+v", rep)
	require.True(t, rep.Submitted[0].Created)

	out, err = b.srv.InvokeSubmit(b.ctx, loadEvent(t, "s3-object-created.json", "BUCKET", "elsewhere"))
	require.NoError(t, err)
	rep = out.(controlplane.EventReport)
	require.Empty(t, rep.Submitted)
	require.NotEmpty(t, rep.Ignored, "a bucket nobody watches is reported")

	out, err = b.srv.InvokeSubmit(b.ctx, loadEvent(t, "s3-test-event.json", "BUCKET", "inbox"))
	require.NoError(t, err)
	rep = out.(controlplane.EventReport)
	require.Empty(t, rep.Submitted)
	require.Contains(t, rep.Ignored[0], "s3:TestEvent")

	require.Equal(t, 2, b.jobCount(t))
}

func TestInvokeSubmitSubmitsOneJobPerScheduledTick(t *testing.T) {
	t.Parallel()
	b := setup(t)
	auto, err := controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{
		Name: "nightly", Cluster: "dev", Task: "Noop", Version: "v1.0", Cron: "*/15 * * * *"})
	require.NoError(t, err)

	for _, name := range []string{"scheduler-input.json", "eventbridge-rule-schedule.json"} {
		ev := loadEvent(t, name, "AUTOMATION", auto.ID)
		var jobID string
		for i := range 2 {
			out, err := b.srv.InvokeSubmit(b.ctx, ev)
			require.NoError(t, err, name)
			rep, ok := out.(controlplane.EventReport)
			require.True(t, ok, "%s: want an EventReport, got %T", name, out)
			require.Len(t, rep.Submitted, 1, "%s: %+v", name, rep)
			require.Equal(t, i == 0, rep.Submitted[0].Created, "%s delivery %d", name, i+1)
			if i == 0 {
				jobID = rep.Submitted[0].JobID
			}
			require.Equal(t, jobID, rep.Submitted[0].JobID, name)
		}
		job, err := b.client.Jobs().Get(b.ctx, jobID)
		require.NoError(t, err)
		// The tick names the job: scheduled_time, or the envelope's time.
		want := map[string]string{
			"scheduler-input.json":           "nightly 2026-01-12T10:30:00Z",
			"eventbridge-rule-schedule.json": "nightly 2026-01-12T10:45:00Z",
		}[name]
		require.Equal(t, want, job.Name)
	}
	require.Equal(t, 2, b.jobCount(t), "one job per tick")
}

func TestInvokeSubmitRefusesPayloadsItDoesNotKnow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name    string
		payload string
		unknown bool   // wraps ErrUnknownEvent and lists what is accepted
		says    string // part of the message
	}{
		{"SQS event", string(loadEvent(t, "sqs-event.json")), true, `eventSource "aws:sqs"`},
		{"sweep's scheduled event", string(loadEvent(t, "eventbridge-sweep.json")), true, "without detail.automation"},
		{"empty object", `{}`, true, "expected"},
		{"null", `null`, true, "expected"},
		{"array", `[1,2]`, true, "not an object"},
		{"string", `"hello"`, true, "not an object"},
		{"not JSON", `{"version":`, true, "decode payload"},
		{"API Gateway v1 (REST API)", `{"resource":"/","path":"/","httpMethod":"GET","requestContext":{"stage":"prod"}}`, true, "expected"},
		{"version 2.0 without http", `{"version":"2.0","requestContext":{}}`, true, "expected"},
		{"schedule without time", `{"automation":"au_x"}`, false, "scheduled_time is missing"},
		{"schedule with a bad time", `{"automation":"au_x","scheduled_time":"yesterday"}`, false, `scheduled_time "yesterday" is not an RFC 3339 time`},
		{"schedule with a numeric automation", `{"automation":7,"scheduled_time":"2026-01-12T10:30:00Z"}`, false, "automation must be a non-empty string"},
	} {
		_, err := b.srv.InvokeSubmit(b.ctx, json.RawMessage(tc.payload))
		require.Error(t, err, tc.name)
		require.Equal(t, tc.unknown, errors.Is(err, controlplane.ErrUnknownEvent), "%s: %v", tc.name, err)
		if tc.unknown {
			require.ErrorContains(t, err, "expected an API Gateway HTTP API request", tc.name)
		}
		require.ErrorContains(t, err, tc.says, tc.name)
	}
	require.Equal(t, 0, b.jobCount(t))
}

func TestInvokeSweepSweepsAndWritesMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	metrics := &strings.Builder{}
	srv, err := controlplane.New(controlplane.Config{Client: b.client, Metrics: metrics})
	require.NoError(t, err)
	_, err = srv.InvokeSweep(b.ctx, loadEvent(t, "eventbridge-sweep.json"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(metrics.String()), "\n")
	require.Len(t, lines, 2, "one line per cluster (dev, prod):\n%s", metrics)
	for _, l := range lines {
		require.Contains(t, l, `"_aws"`)
	}
}
