package controlplane_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/workflows"
)

// A W3C traceparent header on a submit makes the job part of the caller's
// trace; without one the job starts a trace of its own.
func TestSubmitOverHTTPContinuesTheCallersTrace(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := b.token(t, controlplane.TokenSpec{Name: "ci", Scope: controlplane.ScopeSubmit})
	const caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

	a := b.do(t, "POST", "/v1/jobs", tok, submitBody("dev"), "traceparent", caller)
	require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
	var j workflows.Job
	require.NoError(t, json.Unmarshal(a.body, &j))
	require.Equal(t, caller, j.TraceParent, "the gateway does not trace: the caller's span is the job's parent")

	own := b.do(t, "POST", "/v1/jobs", tok, submitBody("dev"))
	require.Equal(t, http.StatusCreated, own.status)
	var j2 workflows.Job
	require.NoError(t, json.Unmarshal(own.body, &j2))
	require.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`, j2.TraceParent)
	require.NotEqual(t, caller[3:35], j2.TraceParent[3:35])

	got := b.do(t, "GET", "/v1/jobs/"+j.ID, tok, nil)
	require.Equal(t, http.StatusOK, got.status)
	require.Contains(t, string(got.body), `"traceparent":"`+caller+`"`)
}
