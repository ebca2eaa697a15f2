package console_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/console"
	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

const version = "v1.0"

// Build is a small pipeline: it submits three Steps, then a Fetch that
// waits for them.
type Build struct {
	Key string `json:"key"`
}

func (*Build) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Build", version)
}
func (b *Build) Execute(ctx context.Context) error {
	workflows.Progress(ctx, "steps").Add(4)
	workflows.Logger(ctx).Info("planning the build", "steps", 3)
	steps := make([]workflows.Task, 3)
	for i := range steps {
		steps[i] = &Step{Label: fmt.Sprintf("step %d", i+1)}
	}
	fs, err := workflows.SubmitSubtasks(ctx, steps)
	if err != nil {
		return err
	}
	_, err = workflows.SubmitSubtask(ctx, &Fetch{Key: b.Key}, workflows.WithDependencies(fs...), workflows.WithMaxRetries(0))
	return err
}

// Step sets its display name and counts one step.
type Step struct {
	Label string `json:"label"`
}

func (*Step) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Step", version)
}
func (s *Step) Execute(ctx context.Context) error {
	workflows.SetDisplay(ctx, s.Label)
	workflows.Progress(ctx, "steps").Done(1)
	return nil
}

// Fetch fails while its runner is broken (see fetchState), logging why;
// once fixed it waits for its gate, if set, and succeeds.
type Fetch struct {
	Key string `json:"key"`
}

func (*Fetch) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Fetch", version)
}
func (f *Fetch) Execute(ctx context.Context) error {
	st := fetchStateOf(f.Key)
	log := workflows.Logger(ctx)
	workflows.SetDisplay(ctx, "fetch the pages")
	if st.isBroken() {
		log.Error("fetch failed", "url", "http://pages.internal/1", "attempt_note", "runner has no route")
		return errors.New("fetch http://pages.internal/1: dial tcp: connection refused")
	}
	log.Info("fetching pages", "pages", 12)
	if gate := st.gateOf(); gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	workflows.Progress(ctx, "steps").Done(1)
	log.Info("fetched pages")
	return nil
}

// fetchState is what a test sets for its Fetch tasks: whether the runner
// is broken, and a gate the fixed task waits for.
type fetchState struct {
	mu     sync.Mutex
	broken bool
	gate   chan struct{}
}

func (s *fetchState) isBroken() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.broken }
func (s *fetchState) gateOf() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gate
}

// fix makes Fetch succeed; the returned function opens its gate.
func (s *fetchState) fix() func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broken = false
	s.gate = make(chan struct{})
	g := s.gate
	return sync.OnceFunc(func() { close(g) })
}

var fetchStates sync.Map // key -> *fetchState

func fetchStateOf(key string) *fetchState {
	v, _ := fetchStates.LoadOrStore(key, &fetchState{})
	return v.(*fetchState)
}

// testBundle is a real redis-server, a client, a cluster "dev" with a
// runner, and a gateway serving the HTTP API and the console on a real
// loopback port.
type testBundle struct {
	ctx    context.Context
	redis  *testenv.Redis
	client *workflows.Client
	con    *console.Console
	url    string
	log    *testenv.Buffer
}

func setup(t testing.TB) *testBundle { return setupWith(t, console.Config{}) }

// setupWith is setup with a console configured as cfg (Client and Logger
// are filled in).
func setupWith(t testing.TB, cfg console.Config) *testBundle {
	t.Helper()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	log := &testenv.Buffer{}
	logger := slog.New(slog.NewTextHandler(log, nil))
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()), workflows.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Clusters().Create(ctx, "dev", "")
	require.NoError(t, err)

	srv, err := controlplane.New(controlplane.Config{Client: c, Logger: logger})
	require.NoError(t, err)
	cfg.Client, cfg.Logger = c, logger
	con, err := console.New(cfg)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := &controlplane.Gateway{Server: srv, Handler: console.Mount(srv.Handler(), con), SweepEvery: -1}
	serveCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(serveCtx, l) }()
	t.Cleanup(func() {
		con.Close()
		stop()
		require.NoError(t, <-done)
	})
	return &testBundle{ctx: ctx, redis: r, client: c, con: con, url: "http://" + l.Addr().String(), log: log}
}

// runner runs the test tasks on cluster "dev" until the test ends.
func (b *testBundle) runner(t testing.TB) {
	t.Helper()
	r, err := b.client.NewRunner(b.ctx, "dev", &Build{}, &Step{}, &Fetch{})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- r.RunForever(runCtx, workflows.WithConcurrency(4), workflows.WithGracePeriod(100*time.Millisecond))
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

func (b *testBundle) token(t testing.TB, scope string, clusters ...string) string {
	t.Helper()
	_, secret, err := controlplane.CreateToken(b.ctx, b.client, controlplane.TokenSpec{
		Name: fmt.Sprintf("%s-%d", scope, time.Now().UnixNano()), Scope: scope, Clusters: clusters})
	require.NoError(t, err)
	return secret
}

// failedJob submits a Build whose Fetch fails, and waits for the job to
// fail. It returns the job and the Fetch's state, broken.
func (b *testBundle) failedJob(t testing.TB, name string) (workflows.Job, *fetchState) {
	t.Helper()
	key := fmt.Sprintf("%s-%d", name, time.Now().UnixNano())
	st := fetchStateOf(key)
	st.mu.Lock()
	st.broken = true
	st.mu.Unlock()
	j, err := b.client.Jobs().Submit(b.ctx, name, "dev", &Build{Key: key})
	require.NoError(t, err)
	waitCtx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	j, err = b.client.Jobs().Wait(waitCtx, j.ID, 20*time.Millisecond, nil)
	require.NoError(t, err)
	require.Equal(t, workflows.JobFailed, j.State)
	// Runners store log records in batches, up to 100 ms after the fact.
	require.Eventually(t, func() bool {
		recs, err := b.client.Jobs().Logs(b.ctx, j.ID, workflows.LogQuery{Task: -1})
		require.NoError(t, err)
		return len(recs) >= 2
	}, 30*time.Second, 10*time.Millisecond, "the job's log records are stored")
	return j, st
}

// browser is an HTTP client with a cookie jar, as a browser would be.
type browser struct {
	t    testing.TB
	base string
	hc   *http.Client
}

func (b *testBundle) browser(t testing.TB) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browser{t: t, base: b.url, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type page struct {
	status int
	header http.Header
	body   string
}

func (br *browser) do(method, path string, form url.Values) page {
	br.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, br.base+path, body)
	require.NoError(br.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", br.base)
	}
	resp, err := br.hc.Do(req)
	require.NoError(br.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(br.t, err)
	return page{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (br *browser) get(path string) page { return br.do(http.MethodGet, path, nil) }

func (br *browser) post(path string, form url.Values) page { return br.do(http.MethodPost, path, form) }

// login logs in with token and requires it to work.
func (br *browser) login(token string) {
	br.t.Helper()
	p := br.post("/login", url.Values{"token": {token}, "next": {"/jobs"}})
	require.Equal(br.t, http.StatusSeeOther, p.status, p.body)
	require.Equal(br.t, "/jobs", p.header.Get("Location"))
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token of the forms on a page.
func (br *browser) csrf(path string) string {
	br.t.Helper()
	p := br.get(path)
	require.Equal(br.t, http.StatusOK, p.status, p.body)
	m := csrfInput.FindStringSubmatch(p.body)
	require.NotNil(br.t, m, "the page has a form with a CSRF token")
	return m[1]
}

func regexpMust(pattern string) *regexp.Regexp { return regexp.MustCompile(pattern) }

// has requires page text to contain want; on failure it shows the page's
// main part, not the whole document.
func has(t testing.TB, page, want string, msgAndArgs ...any) {
	t.Helper()
	if !strings.Contains(page, want) {
		t.Fatalf("the page lacks %q %v\n%s", want, msgAndArgs, mainOf(page))
	}
}

func hasNot(t testing.TB, page, unwanted string, msgAndArgs ...any) {
	t.Helper()
	if strings.Contains(page, unwanted) {
		t.Fatalf("the page has %q %v\n%s", unwanted, msgAndArgs, mainOf(page))
	}
}

// mainOf is the <main> of a page, cut to 4,000 bytes.
func mainOf(page string) string {
	if _, m, ok := strings.Cut(page, "<main id=\"main\">"); ok {
		page = m
	}
	if len(page) > 4000 {
		page = page[:4000] + "…"
	}
	return page
}
