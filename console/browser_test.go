package console_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/console"
	"github.com/runfleet/runfleet/controlplane"
)

// chromium returns the path of Debian's Chromium, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium not found: install it with `go tool task setup-chromium` (apt-get install chromium)")
	return ""
}

// newTab starts a headless Chromium with a fresh profile and returns a
// context for one tab of it.
func newTab(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
	})
	return ctx
}

// screenshots writes full-page PNGs of the tab to the test's artifact
// directory and, when RUNFLEET_SCREENSHOTS names a directory, there too
// (the README's console picture comes from there).
type screenshots struct {
	t    *testing.T
	ctx  context.Context
	dirs []string
}

func newScreenshots(t *testing.T, ctx context.Context) *screenshots {
	dir := t.ArtifactDir()
	t.Logf("screenshots go to %s", dir)
	s := &screenshots{t: t, ctx: ctx, dirs: []string{dir}}
	if extra := os.Getenv("RUNFLEET_SCREENSHOTS"); extra != "" {
		require.NoError(t, os.MkdirAll(extra, 0o755))
		s.dirs = append(s.dirs, extra)
	}
	return s
}

func (s *screenshots) take(name string) {
	s.t.Helper()
	png, err := chromedp.Run(s.ctx, chromedp.FullScreenshot(100))
	require.NoError(s.t, err, "screenshot %s", name)
	require.True(s.t, strings.HasPrefix(string(png), "\x89PNG"), "%s is a PNG", name)
	for _, d := range s.dirs {
		require.NoError(s.t, os.WriteFile(filepath.Join(d, name), png, 0o644))
	}
}

func do(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, actions...))
}

func text(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	require.NoError(t, err, "text of %s", css)
	return s
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	require.NoError(t, err, js)
	return v
}

// waitJS waits until a JavaScript expression is true.
func waitJS(t *testing.T, ctx context.Context, what, js string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(time.Minute)))
	require.NoError(t, err, "waiting for %s", what)
}

// TestConsoleInABrowser drives the console in a real Chromium: a wrong
// token is refused; with a valid one the user opens a failed job, sees its
// graph, the failed task's error and its logs; the runner is fixed, Retry
// pressed, and the job page shows the job complete without reloading,
// through its event stream.
func TestConsoleInABrowser(t *testing.T) {
	exe := chromium(t)
	b := setup(t)
	b.runner(t)
	_, err := controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{Name: "nightly", Cluster: "dev",
		Task: "Build", Version: version, Cron: "0 3 * * *", Timezone: "Europe/Berlin"})
	require.NoError(t, err)
	j, st := b.failedJob(t, "nightly-build")
	_, secret, err := controlplane.CreateToken(b.ctx, b.client, controlplane.TokenSpec{Name: "ops", Scope: controlplane.ScopeSubmit})
	require.NoError(t, err)

	ctx := newTab(t, exe)
	shots := newScreenshots(t, ctx)

	// Not logged in: the login page. A wrong token is refused.
	do(t, ctx, chromedp.Navigate(b.url+"/jobs/"+j.ID),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), "rf_this-is-not-a-token"),
		chromedp.Click(chromedp.CSS(".login button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(".problem")))
	require.Contains(t, text(t, ctx, ".problem"), "That token is unknown or revoked: login refused.")
	shots.take("console-login-refused.png")

	// A valid token: back to the page first asked for, the failed job.
	do(t, ctx, chromedp.SendKeys(chromedp.ID("token"), secret),
		chromedp.Click(chromedp.CSS(".login button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("figure.graph svg")))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	require.Equal(t, b.url+"/jobs/"+j.ID, loc)
	require.Equal(t, "failed", text(t, ctx, "[data-job-state]"))
	graph := text(t, ctx, "figure.graph")
	require.Contains(t, graph, "Fetch #4")
	require.Contains(t, graph, "Step #1")
	require.Contains(t, text(t, ctx, ".failures"), "fetch http://pages.internal/1: dial tcp: connection refused")
	require.Contains(t, text(t, ctx, "[data-live=logs]"), "fetch failed", "the failed task's log")
	shots.take("console-job.png")

	// The jobs list, and the failed-only view.
	do(t, ctx, chromedp.Navigate(b.url+"/jobs?state=failed"), chromedp.WaitVisible(chromedp.CSS("table.list")))
	require.Contains(t, text(t, ctx, "table.list"), "nightly-build")
	shots.take("console-jobs.png")

	// The failed task: its error, its attempt and where it ran, its logs.
	do(t, ctx, chromedp.Navigate(b.url+"/jobs/"+j.ID+"/tasks/4"), chromedp.WaitVisible(chromedp.ID("task-error")))
	require.Equal(t, "fetch http://pages.internal/1: dial tcp: connection refused", text(t, ctx, "#task-error"))
	attempts := text(t, ctx, "section[aria-labelledby=attempts-h]")
	require.Contains(t, attempts, "failed")
	require.Contains(t, attempts, "direct")
	require.Contains(t, text(t, ctx, "section[aria-labelledby=logs-h]"), "runner has no route")
	shots.take("console-task.png")

	do(t, ctx, chromedp.Navigate(b.url+"/clusters"), chromedp.WaitVisible(chromedp.ID("cluster-dev")))
	require.Contains(t, text(t, ctx, "section.cluster"), "1 live runner")
	shots.take("console-clusters.png")
	do(t, ctx, chromedp.Navigate(b.url+"/automations"), chromedp.WaitVisible(chromedp.CSS("table.list")))
	require.Contains(t, text(t, ctx, "table.list"), "nightly")
	shots.take("console-automations.png")

	// Fix the runner and retry. The retried Fetch waits at its gate, so
	// the page shows the job running before it completes.
	release := st.fix()
	t.Cleanup(release)
	do(t, ctx, chromedp.Navigate(b.url+"/jobs/"+j.ID), chromedp.WaitVisible(chromedp.ID("retry")),
		chromedp.Click(chromedp.ID("retry")), chromedp.WaitVisible(chromedp.CSS(".notice")))
	require.Contains(t, text(t, ctx, ".notice"), "Retry requested")
	require.Equal(t, "running", text(t, ctx, "[data-job-state]"))
	waitJS(t, ctx, "the event stream", `Number(document.body.getAttribute('data-live-events') || 0) >= 1`)
	// A mark that a reload would wipe out.
	eval[chromedp.Void](t, ctx, `window.runfleetMark = 'not reloaded'`)
	release()
	waitJS(t, ctx, "the job to complete on the page", `document.querySelector('[data-job-state]').textContent === 'completed'`)
	require.Equal(t, "not reloaded", eval[string](t, ctx, `window.runfleetMark`), "the update came live, not by a reload")
	waitJS(t, ctx, "the graph to show the retried task computed",
		`[...document.querySelectorAll('figure.graph g > title')].some(t => t.textContent.startsWith('Fetch #4 (Fetch@v1.0): computed'))`)
	require.Equal(t, "5", text(t, ctx, `[data-count=computed]`))
	require.Equal(t, "not reloaded", eval[string](t, ctx, `window.runfleetMark`))
	shots.take("console-job-completed.png")

	// Pause stops the live updates.
	do(t, ctx, chromedp.Click(chromedp.CSS("[data-live-toggle]")))
	require.Equal(t, "Paused", text(t, ctx, "[data-live-status]"))
	require.Equal(t, "Resume live updates", text(t, ctx, "[data-live-toggle]"))
}

// A job above Config.InlineGraphTasks gets its page without the graph,
// which the page then loads and shows in place, clickable as inline.
func TestBigJobGraphLoadsAfterThePage(t *testing.T) {
	exe := chromium(t)
	b := setupWith(t, console.Config{InlineGraphTasks: 10})
	id := b.bigJob(t, 300)
	_, secret, err := controlplane.CreateToken(b.ctx, b.client, controlplane.TokenSpec{Name: "ops", Scope: controlplane.ScopeRead})
	require.NoError(t, err)

	plain := b.browser(t)
	plain.login(secret)
	p := plain.get("/jobs/" + id)
	has(t, p.body, `data-graph-src="/jobs/`+id+`/graph.svg"`)
	hasNot(t, p.body, "Tile ×300", "the page answers before the graph is drawn")

	ctx := newTab(t, exe)
	do(t, ctx, chromedp.Navigate(b.url+"/jobs/"+id),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), secret),
		chromedp.Click(chromedp.CSS(".login button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("figure.graph svg")))
	require.Contains(t, text(t, ctx, "figure.graph"), "Tile ×300")
	require.Contains(t, text(t, ctx, "figure.graph"), "298 computed, 2 failed_optional")
}
