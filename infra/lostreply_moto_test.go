package infra_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/infra"
)

// loseReplies is an HTTP client that sends the first request of each named
// IAM action on, then answers it with a 500 as if the reply were lost: the
// SDK retries, and the retry finds what the first request created.
type loseReplies struct {
	next    aws.HTTPClient
	actions []string
	mu      sync.Mutex
	lost    map[string]bool
}

func (l *loseReplies) Do(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := l.next.Do(r)
	for _, a := range l.actions {
		if !strings.Contains(string(body), "Action="+a+"&") {
			continue
		}
		l.mu.Lock()
		first := !l.lost[a]
		l.lost[a] = true
		l.mu.Unlock()
		if first && err == nil {
			_ = resp.Body.Close()
			return &http.Response{StatusCode: http.StatusInternalServerError, Status: "500 Internal Server Error",
				Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
		}
	}
	return resp, err
}

// A create whose reply is lost is retried by the SDK and then finds the
// resource there: the deploy checks it is the stack's and goes on.
func TestDeploySurvivesALostCreateReply(t *testing.T) {
	t.Parallel()
	m := startMoto(t)
	cfg := m.config()
	lose := &loseReplies{next: cfg.HTTPClient, actions: []string{"CreatePolicy", "CreateRole"}, lost: map[string]bool{}}
	cfg.HTTPClient = lose
	e := newEngine(t, cfg, localStackOn("lossy", writeZips(t, "v1")), infra.Options{AutomationsKnown: true,
		Automations: []controlplane.Automation{{ID: "au_l", Storage: "s3://runfleet-lossy/in/"}}})
	_, err := e.Deploy(context.Background(), nil)
	require.NoError(t, err)
	require.True(t, lose.lost["CreatePolicy"] && lose.lost["CreateRole"], "both creates lost their reply")
	again, err := e.Deploy(context.Background(), nil)
	require.NoError(t, err)
	require.Zero(t, again.Changes, "the stack is whole")
}
