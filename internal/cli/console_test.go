package cli

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestConsoleServesUntilSIGTERM starts runfleet console, logs in with a
// token made by runfleet token create, reads the jobs page, and stops it.
func TestConsoleServesUntilSIGTERM(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	token := lastLine(f.ok("token", "create", "--name", "me", "--scope", "read").stdout)
	a, out, subscribed := signalApp()
	code := make(chan int, 1)
	go func() {
		code <- a.run(context.Background(), []string{"--redis", f.url, "console", "--listen", "127.0.0.1:0"})
	}()
	sigs := <-subscribed
	var base string
	waitFor(t, "the console's address", func() bool {
		m := regexp.MustCompile(`console listening on (http://\S+)`).FindStringSubmatch(out.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	})

	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(base + "/jobs")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "not logged in")
	resp, err = hc.PostForm(base+"/login", url.Values{"token": {token}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "runfleet_session" {
			session = c
		}
	}
	require.NotNil(t, session, "a valid token opens a session")
	req, err := http.NewRequest(http.MethodGet, base+"/clusters", nil)
	require.NoError(t, err)
	req.AddCookie(session)
	resp, err = hc.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), `id="cluster-dev"`)

	sigs <- syscall.SIGTERM
	select {
	case c := <-code:
		require.Equal(t, ExitOK, c)
	case <-time.After(20 * time.Second):
		t.Fatal("the console did not stop on SIGTERM")
	}
}

func TestConsoleFlagErrors(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "", "console", "--tls-cert", "c.pem")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, "--tls-cert and --tls-key go together")
	r = runCLI(t, "", "console", "--session", "0s")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, "--session must be positive")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
