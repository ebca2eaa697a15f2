package controlplane

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/require"
)

// The request a handler sees is the one API Gateway received, and the
// answer keeps what format 2.0 can carry.
func TestAPIGatewayV2RoundTrip(t *testing.T) {
	t.Parallel()
	var seen *http.Request
	var seenBody []byte
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r
		seenBody, _ = io.ReadAll(r.Body)
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		http.SetCookie(w, &http.Cookie{Name: "one", Value: "1"})
		http.SetCookie(w, &http.Cookie{Name: "two", Value: "2"})
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte{0xff, 0x00, 0xfe}) // not UTF-8
	})
	ev := &events.APIGatewayV2HTTPRequest{
		Version:         "2.0",
		RawPath:         "/stage1/v1/jobs/a%2Fb",
		RawQueryString:  "cluster=dev&state=queued",
		Cookies:         []string{"session=abc", "theme=dark"},
		Headers:         map[string]string{"authorization": "Bearer t", "x-forwarded-for": "1.2.3.4, 5.6.7.8", "host": "api.example.com"},
		Body:            base64.StdEncoding.EncodeToString([]byte(`{"x":1}`)),
		IsBase64Encoded: true,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			Stage:      "stage1",
			DomainName: "ignored.example.com",
			HTTP:       events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "PUT", Protocol: "HTTP/1.1", SourceIP: "2001:db8::1"},
		},
	}
	resp, err := serveAPIGatewayV2(context.Background(), h, ev)
	require.NoError(t, err)

	require.Equal(t, "PUT", seen.Method)
	require.Equal(t, "/v1/jobs/a/b", seen.URL.Path, "stage stripped, path decoded")
	require.Equal(t, "/v1/jobs/a%2Fb", seen.URL.EscapedPath(), "the encoded path is kept")
	require.Equal(t, "dev", seen.URL.Query().Get("cluster"))
	require.Equal(t, "/v1/jobs/a%2Fb?cluster=dev&state=queued", seen.RequestURI)
	require.Equal(t, "api.example.com", seen.Host)
	require.Empty(t, seen.Header.Get("Host"))
	require.Equal(t, "Bearer t", seen.Header.Get("Authorization"))
	require.Equal(t, "1.2.3.4, 5.6.7.8", seen.Header.Get("X-Forwarded-For"))
	c, err := seen.Cookie("theme")
	require.NoError(t, err)
	require.Equal(t, "dark", c.Value)
	require.Equal(t, "[2001:db8::1]:0", seen.RemoteAddr)
	require.Equal(t, `{"x":1}`, string(seenBody))
	require.EqualValues(t, len(seenBody), seen.ContentLength)

	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Equal(t, "a, b", resp.Headers["X-Multi"])
	require.NotContains(t, resp.Headers, "Set-Cookie")
	require.Equal(t, []string{"one=1", "two=2"}, resp.Cookies)
	require.True(t, resp.IsBase64Encoded)
	raw, err := base64.StdEncoding.DecodeString(resp.Body)
	require.NoError(t, err)
	require.Equal(t, []byte{0xff, 0x00, 0xfe}, raw)
}

func TestAPIGatewayV2DefaultsAndBadBodies(t *testing.T) {
	t.Parallel()
	silent := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	resp, err := serveAPIGatewayV2(context.Background(), silent, &events.APIGatewayV2HTTPRequest{
		RawPath:        "",
		RequestContext: events.APIGatewayV2HTTPRequestContext{HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "GET"}},
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "a handler that writes nothing answers 200, as net/http does")
	require.Empty(t, resp.Body)
	require.False(t, resp.IsBase64Encoded)

	_, err = serveAPIGatewayV2(context.Background(), silent, &events.APIGatewayV2HTTPRequest{
		RawPath: "/", Body: "%%%", IsBase64Encoded: true,
		RequestContext: events.APIGatewayV2HTTPRequestContext{HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "POST"}},
	})
	require.ErrorContains(t, err, "base64 body")

	_, err = serveAPIGatewayV2(context.Background(), silent, &events.APIGatewayV2HTTPRequest{
		RawPath:        "/",
		RequestContext: events.APIGatewayV2HTTPRequestContext{HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "BAD METHOD"}},
	})
	require.Error(t, err, "an invalid method is an error, not a panic")
}

func TestStripStage(t *testing.T) {
	for _, tc := range []struct{ path, stage, want string }{
		{"/v1/jobs", "$default", "/v1/jobs"},
		{"/v1/jobs", "", "/v1/jobs"},
		{"/prod/v1/jobs", "prod", "/v1/jobs"},
		{"/prod", "prod", "/"},
		{"/production/v1", "prod", "/production/v1"},
		{"/v1/jobs", "prod", "/v1/jobs"}, // custom domain: no stage in the path
	} {
		require.Equal(t, tc.want, stripStage(tc.path, tc.stage), "%s in stage %s", tc.path, tc.stage)
	}
}

// Every sample event is recognised as what it is.
func TestParseSubmitEventKinds(t *testing.T) {
	t.Parallel()
	for name, kind := range map[string]string{
		"apigw-v2-post-jobs.json":          "http",
		"apigw-v2-post-jobs-base64.json":   "http",
		"apigw-v2-post-jobs-no-token.json": "http",
		"apigw-v2-get-job-stage.json":      "http",
		"s3-object-created.json":           "s3",
		"minio-object-created.json":        "s3",
		"s3-test-event.json":               "s3",
		"scheduler-input.json":             "schedule",
		"eventbridge-rule-schedule.json":   "schedule",
		"eventbridge-sweep.json":           "error",
		"sqs-event.json":                   "error",
	} {
		b, err := os.ReadFile(filepath.Join("testdata", "events", name))
		require.NoError(t, err)
		ev, err := parseSubmitEvent(b)
		got := "error"
		switch {
		case err != nil:
		case ev.http != nil:
			got = "http"
		case ev.s3 != nil:
			got = "s3"
		case ev.schedule != nil:
			got = "schedule"
		}
		require.Equal(t, kind, got, "%s: %v", name, err)
	}
}

// FuzzParseSubmitEvent: any payload is recognised as one kind or refused
// with an error, and a recognised API Gateway request becomes an
// *http.Request or an error, never a panic.
func FuzzParseSubmitEvent(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "events"))
	require.NoError(f, err)
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".json" {
			b, err := os.ReadFile(filepath.Join("testdata", "events", e.Name()))
			require.NoError(f, err)
			f.Add(b)
		}
	}
	f.Add([]byte(`{"automation":"a","detail-type":"x","detail":{"automation":"b"},"time":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		ev, err := parseSubmitEvent(payload)
		if err != nil {
			return
		}
		set := 0
		for _, p := range []bool{ev.http != nil, ev.s3 != nil, ev.schedule != nil} {
			if p {
				set++
			}
		}
		if set != 1 {
			t.Fatalf("%d kinds recognised in %s", set, payload)
		}
		if ev.http != nil {
			_, _ = newHTTPRequest(context.Background(), ev.http)
		}
		if ev.schedule != nil && (ev.schedule.Automation == "" || ev.schedule.ScheduledTime.IsZero()) {
			t.Fatalf("schedule without automation or time accepted: %s", payload)
		}
		if _, err := json.Marshal(ev.s3); err != nil {
			t.Fatalf("marshal: %v", err)
		}
	})
}
