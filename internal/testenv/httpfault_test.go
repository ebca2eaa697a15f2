package testenv

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFaultProxy(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("0123456789", 100)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Host", r.Host)
		io.WriteString(w, body)
	}))
	t.Cleanup(backend.Close)
	p := NewFaultProxy(t, backend.URL)
	// A fresh connection per request, so net/http never retries a request
	// on its own after a reset.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	do := func(method string) (*http.Response, string, error) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, p.URL+"/x", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}
	ok := func() {
		t.Helper()
		resp, got, err := do("GET")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, body, got)
		require.Equal(t, strings.TrimPrefix(p.URL, "http://"), resp.Header.Get("X-Host"), "Host is kept")
	}

	ok()
	require.EqualValues(t, 1, p.Requests())

	p.FailNext(2, http.StatusInternalServerError)
	for range 2 {
		resp, got, err := do("GET")
		require.NoError(t, err)
		require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
		require.Contains(t, got, "<Code>InternalError</Code>")
	}
	ok()

	p.ResetNext(1)
	_, _, err := do("GET")
	require.Error(t, err)
	ok()

	p.CutNext(1, 10)
	resp, got, err := do("GET")
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, body[:10], got)
	ok()

	p.CutNext(1, int64(len(body))) // no body is longer: nothing cut
	ok()
	require.Equal(t, 1, p.Pending())
	p.Clear()

	p.Inject(Fault{Kind: FaultStatus, Method: "PUT"})
	ok()
	resp, _, err = do("PUT")
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	require.EqualValues(t, 5, p.Injected())
	require.EqualValues(t, 11, p.Requests())

	p.Throttle(5000) // 1000 bytes: about 200ms
	start := time.Now()
	ok()
	require.Greater(t, time.Since(start), 150*time.Millisecond)
}
