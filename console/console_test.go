package console_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/console"
	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/internal/jobgraph"
	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

func TestFailedJobIsExplainedAndRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t)
	j, st := b.failedJob(t, "nightly-build")
	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeSubmit))

	list := br.get("/jobs")
	require.Equal(t, http.StatusOK, list.status)
	has(t, list.body, `href="/jobs/`+j.ID+`">nightly-build</a>`)
	failed := br.get("/jobs?state=failed")
	has(t, failed.body, "nightly-build")
	has(t, br.get("/jobs?state=completed").body, "No jobs match these filters")
	has(t, br.get("/jobs?name=NIGHTLY").body, "nightly-build", "the name filter ignores case")
	hasNot(t, br.get("/jobs?name=weekly").body, "nightly-build")

	p := br.get("/jobs/" + j.ID)
	require.Equal(t, http.StatusOK, p.status)
	has(t, p.body, `data-job-state>failed</span>`)
	has(t, p.body, "<svg", "the graph is inline")
	has(t, p.body, "Fetch #4", "the graph and tables name the failed task")
	has(t, p.body, "fetch http://pages.internal/1: dial tcp: connection refused", "the failure is shown")
	has(t, p.body, "fetch failed", "the job's logs are shown")
	has(t, p.body, "planning the build")
	has(t, p.body, `id="retry"`, "a submit token gets a Retry button")
	hasNot(t, p.body, `id="cancel"`, "a failed job has nothing to cancel")

	task := br.get("/jobs/" + j.ID + "/tasks/4")
	require.Equal(t, http.StatusOK, task.status)
	has(t, task.body, `<pre class="error" id="task-error">fetch http://pages.internal/1: dial tcp: connection refused</pre>`)
	has(t, task.body, `state-failed">failed</span>`, "the attempt's outcome")
	has(t, task.body, "runner has no route", "the task's own log records with their attributes")
	has(t, task.body, "direct", "the attempt ran on a direct runner")

	release := st.fix()
	release()
	csrf := br.csrf("/jobs/" + j.ID)
	r := br.post("/jobs/"+j.ID+"/retry", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, "/jobs/"+j.ID+"?done=retry", r.header.Get("Location"))
	waitCtx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	done, err := b.client.Jobs().Wait(waitCtx, j.ID, 20*time.Millisecond, nil)
	require.NoError(t, err)
	require.Equal(t, workflows.JobCompleted, done.State)
	p = br.get("/jobs/" + j.ID + "?done=retry")
	has(t, p.body, "Retry requested")
	has(t, p.body, `data-job-state>completed</span>`)
	hasNot(t, p.body, `id="retry"`)
}

func TestWrongTokenIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	br := b.browser(t)
	p := br.get("/jobs")
	require.Equal(t, http.StatusSeeOther, p.status, "no session: to the login page")
	require.Equal(t, "/login?next=%2Fjobs", p.header.Get("Location"))

	p = br.post("/login", url.Values{"token": {"rf_not-a-real-token"}})
	require.Equal(t, http.StatusUnauthorized, p.status)
	has(t, p.body, "That token is unknown or revoked: login refused.")
	require.Empty(t, p.header.Values("Set-Cookie"), "a refused login opens no session")
	p = br.post("/login", url.Values{"token": {""}})
	require.Equal(t, http.StatusBadRequest, p.status)
	has(t, p.body, "Paste a token to log in.")
	require.Equal(t, http.StatusSeeOther, br.get("/jobs").status, "still logged out")

	p = br.post("/login", url.Values{"token": {b.token(t, controlplane.ScopeRead)}, "next": {"//evil.example/x"}})
	require.Equal(t, http.StatusSeeOther, p.status)
	require.Equal(t, "/jobs", p.header.Get("Location"), "the login sends nobody off-site")
	// Browsers drop tabs and newlines from a Location: "/\t/evil" is "//evil".
	for _, next := range []string{"/\t/evil.example/x", "/\n/evil.example/x", "/\r\n/evil.example/x"} {
		o := b.browser(t).post("/login", url.Values{"token": {b.token(t, controlplane.ScopeRead)}, "next": {next}})
		require.Equal(t, http.StatusSeeOther, o.status)
		require.Equal(t, "/jobs", o.header.Get("Location"), "next %q sends nobody off-site", next)
	}
	ck := p.header.Get("Set-Cookie")
	require.Contains(t, ck, "HttpOnly")
	require.Contains(t, ck, "SameSite=Strict")
	require.NotContains(t, ck, "Secure", "plain HTTP: a Secure cookie would never come back")
	require.Equal(t, http.StatusOK, br.get("/jobs").status)
}

func TestRevokingTheTokenEndsTheSession(t *testing.T) {
	t.Parallel()
	b := setup(t)
	br := b.browser(t)
	secret := b.token(t, controlplane.ScopeRead)
	br.login(secret)
	require.Equal(t, http.StatusOK, br.get("/clusters").status)
	toks, err := controlplane.ListTokens(b.ctx, b.client)
	require.NoError(t, err)
	require.Len(t, toks, 1)
	_, err = controlplane.RevokeToken(b.ctx, b.client, toks[0].Name)
	require.NoError(t, err)
	require.Equal(t, http.StatusSeeOther, br.get("/clusters").status)

	br.login(b.token(t, controlplane.ScopeRead))
	csrf := br.csrf("/jobs")
	require.Equal(t, http.StatusSeeOther, br.post("/logout", url.Values{"csrf": {csrf}}).status)
	require.Equal(t, http.StatusSeeOther, br.get("/jobs").status, "logged out")
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t)
	j, _ := b.failedJob(t, "bad-input")
	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeSubmit))

	for _, c := range []struct {
		path, want string
		status     int
	}{
		{"/jobs/0196a3c4-0000-7000-8000-000000000000", `There is no job &#34;0196a3c4-0000-7000-8000-000000000000&#34;`, 404},
		{"/jobs/" + strings.Repeat("x", 500), "There is no job", 404},
		{"/jobs/0196a3c4-0000-7000-8000-000000000000/tasks/1", "There is no job", 404},
		{"/jobs/" + j.ID + "/tasks/99", "has no task &#34;99&#34;", 404},
		{"/jobs/" + j.ID + "/tasks/abc", "has no task &#34;abc&#34;; task ids are numbers", 404},
		{"/jobs/" + j.ID + "/tasks/-1", "has no task &#34;-1&#34;", 404},
		{"/no/such/page", "There is no page at /no/such/page.", 404},
		{"/jobs?state=exploded", "Bad filter: state", 400},
		{"/jobs?state=exploded", "State &#34;exploded&#34; is not one of submitted, running, completed, failed, canceled.", 400},
		{"/jobs?cluster=Not_A_Slug", "Bad filter: cluster", 400},
		{"/jobs?cluster=prod", "There is no cluster &#34;prod&#34;.", 400},
		{"/jobs?cursor=garbage", "Bad filter: cursor", 400},
		{"/jobs?limit=0", "Bad filter: limit", 400},
		{"/jobs?limit=many", "Bad filter: limit", 400},
		{"/jobs?name=" + strings.Repeat("n", 201), "Bad filter: name", 400},
		{"/jobs/" + j.ID + "?tasks=exploded", "Bad filter: tasks", 400},
		{"/jobs/" + j.ID + "?after=x", "Bad filter: after", 400},
		{"/jobs/" + j.ID + "?after=-2", "Bad filter: after", 400},
		{"/jobs/" + j.ID + "/logs?after=1-0-0", "Bad filter: after", 400},
		{"/jobs/" + j.ID + "/logs?task=x", "Bad filter: task", 400},
	} {
		p := br.get(c.path)
		require.Equal(t, c.status, p.status, "%s: %s", c.path, p.body)
		has(t, p.body, c.want, c.path)
		require.Equal(t, "text/html; charset=utf-8", p.header.Get("Content-Type"), c.path)
	}

	// A cancel without the session's CSRF token changes nothing.
	running, _ := b.runningJob(t)
	for _, form := range []url.Values{{}, {"csrf": {"forged"}}} {
		p := br.post("/jobs/"+running.ID+"/cancel", form)
		require.Equal(t, http.StatusForbidden, p.status)
		has(t, p.body, "security (CSRF) token, so nothing was changed")
	}
	got, err := b.client.Jobs().Get(b.ctx, running.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobRunning, got.State, "the job was not canceled")

	// Nor does one from another site, even with the token.
	csrf := br.csrf("/jobs/" + running.ID)
	req, err := http.NewRequest(http.MethodPost, b.url+"/jobs/"+running.ID+"/cancel", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	resp, err := br.hc.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	got, err = b.client.Jobs().Get(b.ctx, running.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobRunning, got.State)

	// With it, the cancel works.
	p := br.post("/jobs/"+running.ID+"/cancel", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	got, err = b.client.Jobs().Get(b.ctx, running.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobCanceled, got.State)
}

// runningJob submits a Build whose Fetch blocks at its gate, and waits
// until the job runs it.
func (b *testBundle) runningJob(t *testing.T) (workflows.Job, func()) {
	t.Helper()
	key := t.Name() + "-running"
	release := fetchStateOf(key).fix()
	t.Cleanup(release)
	j, err := b.client.Jobs().Submit(b.ctx, "held", "dev", &Build{Key: key})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		j, err = b.client.Jobs().Get(b.ctx, j.ID)
		require.NoError(t, err)
		return j.TaskCounts[workflows.TaskRunning] == 1 && j.TaskCounts[workflows.TaskComputed] == 4
	}, time.Minute, 10*time.Millisecond)
	return j, release
}

func TestReadTokenSeesNoActions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t)
	j, _ := b.failedJob(t, "read-only")
	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeRead))
	p := br.get("/jobs/" + j.ID)
	require.Equal(t, http.StatusOK, p.status)
	hasNot(t, p.body, `id="retry"`)
	hasNot(t, p.body, `action="/jobs/`+j.ID+`/retry"`)
	csrf := br.csrf("/jobs/" + j.ID) // the logout form's
	r := br.post("/jobs/"+j.ID+"/retry", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusForbidden, r.status)
	has(t, r.body, "has scope read; to retry a job it needs submit or admin")
	got, err := b.client.Jobs().Get(b.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, workflows.JobFailed, got.State)
}

func TestClusterTokenSeesItsClustersOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t)
	_, err := b.client.Clusters().Create(b.ctx, "prod", "")
	require.NoError(t, err)
	j, _ := b.failedJob(t, "dev-job")
	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeSubmit, "prod"))
	require.Equal(t, http.StatusForbidden, br.get("/jobs/"+j.ID).status)
	require.Equal(t, http.StatusForbidden, br.get("/jobs?cluster=dev").status)
	list := br.get("/jobs")
	require.Equal(t, http.StatusOK, list.status)
	hasNot(t, list.body, "dev-job")
	clusters := br.get("/clusters")
	has(t, clusters.body, `id="cluster-prod"`)
	hasNot(t, clusters.body, `id="cluster-dev"`)
}

func TestGraphMatchesTheCLI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t)
	j, _ := b.failedJob(t, "graph")
	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeRead))
	p := br.get("/jobs/" + j.ID + "/graph.svg")
	require.Equal(t, http.StatusOK, p.status)
	require.Equal(t, "image/svg+xml", p.header.Get("Content-Type"))

	tasks, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	var want bytes.Buffer
	require.NoError(t, jobgraph.Build(j, tasks, jobgraph.Options{}).WriteSVG(&want))
	require.Equal(t, want.String(), p.body, "the console draws what runfleet job graph draws")
	has(t, p.body, "step 1", "display names come from the full records")
}

func TestPagesOfTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t)
	var ids []string
	for range 3 {
		j, _ := b.failedJob(t, "paged")
		ids = append(ids, j.ID)
	}
	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeRead))
	p := br.get("/jobs?limit=2")
	has(t, p.body, ids[2])
	has(t, p.body, ids[1])
	hasNot(t, p.body, ids[0])
	next := regexpFind(t, `rel="next" href="(/jobs\?[^"]+)"`, p.body)
	p = br.get(strings.ReplaceAll(next, "&amp;", "&"))
	require.Equal(t, http.StatusOK, p.status)
	has(t, p.body, ids[0])
	hasNot(t, p.body, ids[1])

	job := br.get("/jobs/" + ids[0] + "?after=1")
	hasNot(t, job.body, `tasks/1">1</a>`)
	has(t, job.body, `tasks/2">2</a>`)
	failed := br.get("/jobs/" + ids[0] + "?tasks=failed")
	has(t, failed.body, `tasks/4">4</a>`)
	hasNot(t, failed.body, `tasks/2">2</a>`)
}

// TestLiveUpdatesStreamTheJob reads the job page's event stream while the
// job is retried: the stream reports the job failed, then running, then
// completed.
func TestLiveUpdatesStreamTheJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t)
	j, st := b.failedJob(t, "live")
	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeSubmit))

	req, err := http.NewRequest(http.MethodGet, b.url+"/jobs/"+j.ID+"/events", nil)
	require.NoError(t, err)
	hc := *br.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	states := make(chan string, 64)
	go func() {
		defer close(states)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				_, rest, _ := strings.Cut(data, `"state":"`)
				state, _, _ := strings.Cut(rest, `"`)
				states <- state
			}
		}
	}()
	next := func() string {
		select {
		case s := <-states:
			return s
		case <-time.After(30 * time.Second):
			t.Fatal("no event within 30 s")
		}
		return ""
	}
	require.Equal(t, "failed", next())
	release := st.fix()
	require.NoError(t, b.client.Jobs().Retry(b.ctx, j.ID))
	require.Equal(t, "running", next())
	release()
	for s := next(); s != "completed"; s = next() {
		require.Equal(t, "running", s)
	}
}

func TestClustersAndAutomationsPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t)
	_, err := controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{Name: "hourly-build", Cluster: "dev",
		Task: "Build", Version: version, Cron: "0 * * * *"})
	require.NoError(t, err)
	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeRead))
	require.Eventually(t, func() bool {
		return strings.Contains(br.get("/clusters").body, "Build@v1.0")
	}, 30*time.Second, 50*time.Millisecond, "the runner registers its tasks")
	p := br.get("/clusters")
	has(t, p.body, "1 live runner ·")
	has(t, p.body, "<td>Fetch@v1.0</td>")
	a := br.get("/automations")
	has(t, a.body, "hourly-build")
	has(t, a.body, "cron <code>0 * * * *</code>")
	require.Regexp(t, `\d{4}-\d\d-\d\d \d\d:00:00Z`, a.body, "the next run is on the hour")
}

func TestAPIStillServedBesideTheConsole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	secret := b.token(t, controlplane.ScopeRead)
	req, err := http.NewRequest(http.MethodGet, b.url+"/v1/clusters", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Get(b.url + "/v1/nope")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), "API paths keep API errors")
	resp, err = http.Get(b.url + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Get(b.url + "/static/console.css")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
}

func regexpFind(t *testing.T, pattern, s string) string {
	t.Helper()
	m := regexpMust(pattern).FindStringSubmatch(s)
	require.NotNil(t, m, "no match for %s", pattern)
	return m[1]
}

// TestArchivedJobIsShownReadOnly archives a failed job to a file store: its
// page comes from the archive, with graph, failures, attempts and logs, and
// offers no actions and no live updates.
func TestArchivedJobIsShownReadOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t)
	j, _ := b.failedJob(t, "archived")
	dir := t.TempDir()
	store, err := artifacts.OpenStore("file://" + dir)
	require.NoError(t, err)
	n, err := b.client.ArchiveJobs(b.ctx, store, "file://"+dir, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = b.client.Queue().GetJob(b.ctx, j.ID)
	require.ErrorIs(t, err, queue.ErrJobNotFound, "the job left Redis")

	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeSubmit))
	p := br.get("/jobs/" + j.ID)
	require.Equal(t, http.StatusOK, p.status)
	has(t, p.body, "This job is archived")
	has(t, p.body, "Fetch #4")
	has(t, p.body, "fetch http://pages.internal/1: dial tcp: connection refused")
	has(t, p.body, "fetch failed")
	hasNot(t, p.body, `id="retry"`, "archived jobs are read-only")
	hasNot(t, p.body, "data-events=", "archived jobs do not change")
	task := br.get("/jobs/" + j.ID + "/tasks/4")
	require.Equal(t, http.StatusOK, task.status)
	has(t, task.body, "runner has no route")
	has(t, task.body, `state-failed">failed</span>`)
	require.Equal(t, http.StatusNoContent, br.get("/jobs/"+j.ID+"/events").status)
	require.Equal(t, http.StatusNotFound, br.get("/jobs/"+j.ID+"/tasks/9").status)
	csrf := br.csrf("/jobs/" + j.ID)
	r := br.post("/jobs/"+j.ID+"/retry", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusConflict, r.status)
	has(t, r.body, "is archived and read-only")
}

// TestBigJobPage pages through the tasks of a 302-task fan-out (staged,
// as every set over 200 is): the graph is collapsed, the table holds one
// page, and the failed_optional filter finds the two tiles that failed.
func TestBigJobPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.bigJob(t, 300)
	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeRead))
	p := br.get("/jobs/" + id)
	require.Equal(t, http.StatusOK, p.status)
	has(t, p.body, "Tile ×300")
	has(t, p.body, "298 computed, 2 failed_optional")
	require.Equal(t, 50, strings.Count(p.body, `<td class="num"><a href="/jobs/`+id+`/tasks/`), "one page of tasks")
	has(t, p.body, `href="/jobs/`+id+`?after=49#tasks-h"`, "a link to the next page")
	last := br.get("/jobs/" + id + "?after=299")
	require.Equal(t, 2, strings.Count(last.body, `<td class="num"><a href="/jobs/`+id+`/tasks/`), "tiles 300 and the stitch")
	hasNot(t, last.body, "Next tasks")
	failed := br.get("/jobs/" + id + "?tasks=failed_optional")
	require.Equal(t, 2, strings.Count(failed.body, `<td class="num"><a href="/jobs/`+id+`/tasks/`))
	has(t, failed.body, "tile 7: out of memory")
	has(t, failed.body, "tile 157: out of memory")
}

func TestSessionCookieIsSecureOverTLS(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := httptest.NewTLSServer(b.con)
	t.Cleanup(srv.Close)
	hc := srv.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/login",
		strings.NewReader(url.Values{"token": {b.token(t, controlplane.ScopeRead)}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	ck := resp.Header.Get("Set-Cookie")
	require.Contains(t, ck, "; Secure")
	require.Contains(t, ck, "; HttpOnly")
	require.Contains(t, ck, "; SameSite=Strict")
}

// TestLiveStreamsAreBounded: each watched job holds a Redis connection
// while it blocks, so the console watches at most 8 jobs at once; the page
// of a ninth is refused the stream (and its script polls instead), and
// closing a stream frees its place.
func TestLiveStreamsAreBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t)
	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeRead))
	hc := *br.hc
	hc.Timeout = 0
	var cancels []context.CancelFunc
	open := func(id string) int {
		ctx, cancel := context.WithCancel(b.ctx)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url+"/jobs/"+id+"/events", nil)
		require.NoError(t, err)
		resp, err := hc.Do(req)
		require.NoError(t, err)
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			cancel()
			return resp.StatusCode
		}
		cancels = append(cancels, func() { cancel(); resp.Body.Close() })
		return resp.StatusCode
	}
	var ids []string
	for i := range 9 {
		j, _ := b.failedJob(t, fmt.Sprintf("watched-%d", i))
		ids = append(ids, j.ID)
	}
	for _, id := range ids[:8] {
		require.Equal(t, http.StatusOK, open(id))
	}
	require.Equal(t, http.StatusOK, open(ids[0]), "a second page of a watched job shares its watcher")
	require.Equal(t, http.StatusServiceUnavailable, open(ids[8]))
	require.Equal(t, http.StatusOK, br.get("/jobs/"+ids[8]).status, "pages still load")
	cancels[1]()
	require.Eventually(t, func() bool { return open(ids[8]) == http.StatusOK }, 10*time.Second, 20*time.Millisecond,
		"a closed stream frees its watcher")
	for _, c := range cancels {
		c()
	}
}

// An open live stream ends once its session does: a logged-out browser
// stops receiving the job's updates.
func TestLiveStreamEndsWithItsSession(t *testing.T) {
	t.Parallel()
	b := setupWith(t, console.Config{LivePing: 50 * time.Millisecond})
	b.runner(t)
	j, _ := b.failedJob(t, "watched-then-logged-out")
	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeRead))
	hc := *br.hc
	hc.Timeout = 0
	req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, b.url+"/jobs/"+j.ID+"/events", nil)
	require.NoError(t, err)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); ended <- err }()
	select {
	case <-ended:
		t.Fatal("the stream ended while its session was live")
	case <-time.After(300 * time.Millisecond):
	}
	csrf := br.csrf("/jobs")
	require.Equal(t, http.StatusSeeOther, br.post("/logout", url.Values{"csrf": {csrf}}).status)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived its session")
	}
}

// A task whose input is in the payload store shows where it is, not an
// empty input.
func TestStoredInputIsNamed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.runner(t)
	c, err := workflows.NewClient(b.ctx, workflows.WithRedisURL(b.redis.URL()), workflows.WithPayloadStore("file://"+t.TempDir()))
	require.NoError(t, err)
	defer c.Close()
	j, err := c.Jobs().Submit(b.ctx, "stored", "dev", &Step{Label: strings.Repeat("x", 100<<10)})
	require.NoError(t, err)
	task, err := c.Jobs().Task(b.ctx, j.ID, 0)
	require.NoError(t, err)
	require.NotNil(t, task.InputPayload)
	br := b.browser(t)
	br.login(b.token(t, controlplane.ScopeRead))
	p := br.get("/jobs/" + j.ID + "/tasks/0")
	require.Equal(t, http.StatusOK, p.status)
	has(t, p.body, fmt.Sprintf("Stored in the payload store: %d bytes, sha256:%s", task.InputPayload.Bytes, task.InputPayload.SHA256))
}
