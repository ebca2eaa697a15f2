package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// chaosConfig sizes one chaos run.
type chaosConfig struct {
	outer, inner int           // root FanOut of outer FanOuts of inner Sleep tasks
	sleepMS      int           // each Sleep task's duration
	runners      int           // runner processes alive at any time
	concurrency  int           // --concurrency of each runner
	killEvery    time.Duration // one SIGKILL (and one replacement) per period
	restartAt    []float64     // restart redis-server when this share of the tasks is computed...
	restartAfter []time.Duration
	// ...or this long after submission, whichever comes first
	restartKill []bool        // SIGKILL redis-server instead of SIGTERM for that restart
	downtime    time.Duration // how long redis-server stays down
	deadline    time.Duration // from submission to a finished job
}

// tasks is the number of tasks the job must end with: the root, the outer
// FanOuts, their Sleep children, one merge Noop per outer FanOut, and the
// root's merge Noop.
func (c chaosConfig) tasks() int { return 1 + c.outer + c.outer*c.inner + c.outer + 1 }

var ciConfig = chaosConfig{
	outer: 50, inner: 100, sleepMS: 80, runners: 4, concurrency: 4,
	killEvery:    time.Second,
	restartAt:    []float64{0.3},
	restartAfter: []time.Duration{20 * time.Second},
	restartKill:  []bool{false},
	downtime:     500 * time.Millisecond,
	deadline:     3 * time.Minute,
}

var soakConfig = chaosConfig{
	outer: 100, inner: 200, sleepMS: 50, runners: 4, concurrency: 4,
	killEvery:    500 * time.Millisecond,
	restartAt:    []float64{0.2, 0.5, 0.8},
	restartAfter: []time.Duration{time.Minute, 3 * time.Minute, 5 * time.Minute},
	restartKill:  []bool{false, true, false},
	downtime:     time.Second,
	deadline:     15 * time.Minute,
}

const heartbeatTTL = 2 * time.Second

func TestChaos(t *testing.T) {
	cfg := ciConfig
	if os.Getenv("RUNFLEET_CHAOS_SOAK") != "" {
		cfg = soakConfig
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RUNFLEET_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "RUNFLEET_CHAOS_SEED")
		seed = n
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	t.Logf("chaos: seed %d (RUNFLEET_CHAOS_SEED=%d repeats the kill order), %d tasks, kill every %s", seed, seed, cfg.tasks(), cfg.killEvery)

	// Everything below ends by this context: the job deadline plus room
	// for the build, the start and the checks, within go test's -timeout.
	end := time.Now().Add(cfg.deadline + 4*time.Minute)
	if dl, ok := t.Deadline(); ok && dl.Add(-20*time.Second).Before(end) {
		end = dl.Add(-20 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	testStart := time.Now()

	bin := buildBench(ctx, t)
	dir := t.TempDir()
	redisDir := filepath.Join(dir, "redis")
	require.NoError(t, os.Mkdir(redisDir, 0o755))
	r, err := testenv.StartRedis(ctx, redisDir, "--appendonly", "yes", "--appendfsync", "everysec")
	require.NoError(t, err, "start redis-server with AOF: the chaos test needs a real redis-server (go tool task setup, or set RUNFLEET_REDIS_SERVER)")
	t.Cleanup(r.Stop)

	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Clusters().Create(ctx, "chaos", "chaos test")
	require.NoError(t, err)

	f := &fleet{t: t, bin: bin, dir: dir, args: []string{
		"--cluster", "chaos", "--redis", r.URL(), "--concurrency", strconv.Itoa(cfg.concurrency),
		"--heartbeat-ttl", heartbeatTTL.String(), "--reclaim-interval", "200ms", "--grace", "5s", "-v"}}
	t.Cleanup(f.killAll)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runner log tails:\n%s", f.tails(25))
			t.Logf("redis-server log tail:\n%s", tail(filepath.Join(redisDir, "redis.log"), 25))
		}
		if keep := os.Getenv("RUNFLEET_CHAOS_KEEP_LOGS"); keep != "" {
			if err := f.keepLogs(keep, filepath.Join(redisDir, "redis.log")); err != nil {
				t.Logf("keep logs: %v", err)
			} else {
				t.Logf("logs copied to %s", keep)
			}
		}
	})
	for range cfg.runners {
		require.NoError(t, f.start())
	}

	// Submit once some runner has registered the bench tasks.
	input := rootInput(cfg)
	var job workflows.Job
	regDeadline := time.Now().Add(10 * time.Second)
	for {
		job, err = c.Jobs().SubmitRaw(ctx, workflows.SubmitRequest{Name: "chaos", Cluster: "chaos",
			Task: workflows.NewTaskIdentifier("FanOut", "v1.0"), Input: input})
		if err == nil {
			break
		}
		require.Empty(t, f.reap(), "a runner exited before the job was submitted")
		require.True(t, time.Now().Before(regDeadline), "submit still refused 10s after starting %d runners: %v", cfg.runners, err)
		require.NoError(t, pause(ctx, 50*time.Millisecond))
	}
	submitted := time.Now()
	t.Logf("chaos: job %s submitted %s after the test started", job.ID, submitted.Sub(testStart).Round(time.Millisecond))

	// The chaos: kill a random runner every killEvery and start another;
	// restart redis-server at the configured points; poll the job.
	killTick := time.NewTicker(cfg.killEvery)
	defer killTick.Stop()
	pollTick := time.NewTicker(100 * time.Millisecond)
	defer pollTick.Stop()
	jobDeadline := time.NewTimer(cfg.deadline)
	defer jobDeadline.Stop()
	expected := cfg.tasks()
	restarts := 0
	lastComputed, lastChange, stallReported := int64(-1), time.Now(), false
	var last workflows.Job
	var pollErrs int
chaos:
	for {
		select {
		case <-ctx.Done():
			f.failWithDiagnostics(ctx, c, job.ID, last, "test context ended before the job finished: %v", ctx.Err())
		case <-jobDeadline.C:
			f.failWithDiagnostics(ctx, c, job.ID, last, "job not finished %s after submission (state %q, counts %v)", cfg.deadline, last.State, last.TaskCounts)
		case <-killTick.C:
			// A finished job ends the chaos: no runner is started just to
			// be stopped at once.
			callCtx, callCancel := context.WithTimeout(ctx, 2*time.Second)
			j, err := c.Jobs().Get(callCtx, job.ID)
			callCancel()
			if err == nil && workflows.Finished(j.State) {
				last = j
				break chaos
			}
			f.replaceExited()
			f.killRandom(rng)
			require.NoError(t, f.start())
		case <-pollTick.C:
			callCtx, callCancel := context.WithTimeout(ctx, 2*time.Second)
			j, err := c.Jobs().Get(callCtx, job.ID)
			callCancel()
			if err != nil {
				pollErrs++ // Redis may be restarting: try again next tick
				continue
			}
			last = j
			if n := j.TaskCounts[workflows.TaskComputed]; n != lastComputed {
				lastComputed, lastChange, stallReported = n, time.Now(), false
			} else if !stallReported && time.Since(lastChange) > 20*time.Second {
				stallReported = true
				t.Logf("chaos: no task computed for 20s (state %q, counts %v); live runners %v", j.State, j.TaskCounts, f.livePIDs())
				f.logUnfinished(ctx, c, job.ID)
			}
			if workflows.Finished(j.State) {
				break chaos
			}
			if restarts < len(cfg.restartAt) &&
				(float64(j.TaskCounts[workflows.TaskComputed]) >= cfg.restartAt[restarts]*float64(expected) ||
					time.Since(submitted) >= cfg.restartAfter[restarts]) {
				how := "SIGTERM"
				if cfg.restartKill[restarts] {
					how = "SIGKILL"
				}
				t.Logf("chaos: restarting redis-server (%s) at %s, %d of %d tasks computed", how,
					time.Since(submitted).Round(time.Millisecond), j.TaskCounts[workflows.TaskComputed], expected)
				if cfg.restartKill[restarts] {
					r.Kill()
				} else {
					r.Stop()
				}
				// A runner also dies while Redis is down; its replacement
				// starts once Redis is back (bench does not wait for Redis
				// at start-up).
				f.killRandom(rng)
				require.NoError(t, pause(ctx, cfg.downtime))
				require.NoError(t, r.Restart(ctx), "restart redis-server on the same port and data directory")
				restarts++
				require.NoError(t, f.start())
			}
		}
	}
	jobWall := time.Since(submitted)
	t.Logf("chaos: job %s %s after %s; stopping %d runners", job.ID, last.State, jobWall.Round(time.Millisecond), len(f.live))

	// Graceful stop: every runner still alive must exit 0 within the grace.
	stopProblems := f.stopAll(30 * time.Second)
	unexpected := f.unexpected

	final, err := retry(ctx, 20*time.Second, func(ctx context.Context) (workflows.Job, error) { return c.Jobs().Get(ctx, job.ID) })
	require.NoError(t, err, "get job after the chaos")
	tasks, err := retry(ctx, 20*time.Second, func(ctx context.Context) ([]workflows.TaskInfo, error) { return c.Jobs().Tasks(ctx, job.ID) })
	require.NoError(t, err, "list tasks after the chaos")

	st := summarize(tasks)
	summary := fmt.Sprintf("tasks=%d executions_beyond_one=%d (tasks run more than once: %d) runner_kills=%d losses=%d (max per task %d) redis_restarts=%d runners_started=%d job_wall=%s test_wall=%s",
		len(tasks), st.attempts-len(tasks), st.rerun, f.kills, st.losses, st.maxLosses, restarts, len(f.all),
		jobWall.Round(time.Millisecond), time.Since(testStart).Round(time.Millisecond))
	t.Logf("chaos: %s; failed job polls while Redis restarted: %d", summary, pollErrs)

	require.Empty(t, unexpected, "runners exited without being killed or stopped")
	require.Empty(t, stopProblems, "runners must exit 0 on SIGTERM")
	require.GreaterOrEqual(t, restarts, 1, "the job finished before redis-server was restarted: make the job larger")
	require.Equal(t, workflows.JobCompleted, final.State, "job state (counts %v)", final.TaskCounts)
	require.Equal(t, map[string]int64{
		workflows.TaskQueued: 0, workflows.TaskRunning: 0, workflows.TaskComputed: int64(expected),
		workflows.TaskFailed: 0, workflows.TaskSkipped: 0, workflows.TaskFailedOptional: 0,
	}, final.TaskCounts, "task counts of the finished job")
	require.Len(t, tasks, expected, "tasks listed for the job")
	require.Empty(t, st.notComputed, "tasks not computed (or not complete) after the job completed")
	require.Empty(t, checkOrder(tasks), "tasks started before what they wait for was complete")
	require.LessOrEqual(t, st.maxLosses, 10, "a task lost its runner more than 10 times and was still run")
	t.Logf("chaos summary: %s", summary)
}

// rootInput is the job: a FanOut of cfg.outer FanOuts, each of cfg.inner
// Sleep tasks and a merge Noop depending on them, and a merge Noop over the
// outer FanOuts (so over their whole subtrees).
func rootInput(cfg chaosConfig) json.RawMessage {
	in, _ := json.Marshal(map[string]any{
		"n": cfg.outer, "child": "FanOut", "merge": true,
		"child_input": map[string]any{"n": cfg.inner, "child": "Sleep", "merge": true,
			"child_input": map[string]any{"ms": cfg.sleepMS}},
	})
	return in
}

// buildBench builds examples/bench once for this test.
func buildBench(ctx context.Context, t *testing.T) string {
	t.Helper()
	root, err := moduleRoot(ctx)
	require.NoError(t, err)
	bctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "bench")
	cmd := exec.CommandContext(bctx, "go", "build", "-o", bin, "./examples/bench")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ./examples/bench:\n%s", out)
	return bin
}

// moduleRoot finds the directory of go.mod: go env GOMOD, else the nearest
// parent directory holding one.
func moduleRoot(ctx context.Context) (string, error) {
	if out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output(); err == nil {
		if p := strings.TrimSpace(string(out)); p != "" && p != os.DevNull {
			return filepath.Dir(p), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retry calls fn, each call bounded by 3s, until it succeeds or within
// passes: the client must ride out a restarting Redis too.
func retry[T any](ctx context.Context, within time.Duration, fn func(context.Context) (T, error)) (T, error) {
	end := time.Now().Add(within)
	for {
		callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		v, err := fn(callCtx)
		cancel()
		if err == nil || time.Now().After(end) {
			return v, err
		}
		if perr := pause(ctx, 100*time.Millisecond); perr != nil {
			return v, errors.Join(err, perr)
		}
	}
}

// taskStats sums up the task records.
type taskStats struct {
	attempts, rerun, losses, maxLosses int
	notComputed                        []string
}

func summarize(tasks []workflows.TaskInfo) taskStats {
	var s taskStats
	for _, x := range tasks {
		s.attempts += x.Attempts
		if x.Attempts > 1 {
			s.rerun++
		}
		s.losses += x.Losses
		s.maxLosses = max(s.maxLosses, x.Losses)
		if (x.State != workflows.TaskComputed || !x.Complete) && len(s.notComputed) < 20 {
			s.notComputed = append(s.notComputed, describe(x))
		}
	}
	return s
}

func describe(x workflows.TaskInfo) string {
	return fmt.Sprintf("task %d %s (parent %d): state %s complete=%v runner %q attempts %d losses %d queued %s started %s first started %s ended %s error %q",
		x.Seq, x.Name, x.Parent, x.State, x.Complete, x.Runner, x.Attempts, x.Losses, ms(x.QueuedAt), ms(x.StartedAt),
		ms(x.FirstStartedAt), ms(x.EndedAt), x.Error)
}

func ms(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format("15:04:05.000")
}

// checkOrder returns (up to 20) violations of the ordering rules: a
// dependent must not start before each of its dependencies is complete (the
// latest end over the dependency's whole subtree), and a subtask must not
// start before its parent committed it. Times are unix milliseconds from the
// clocks of processes on this machine, so equal times pass.
func checkOrder(tasks []workflows.TaskInfo) []string {
	bySeq := make(map[int64]*workflows.TaskInfo, len(tasks))
	for i := range tasks {
		bySeq[tasks[i].Seq] = &tasks[i]
	}
	done := make(map[int64]time.Time, len(tasks))
	var completion func(seq int64) time.Time
	completion = func(seq int64) time.Time {
		if t, ok := done[seq]; ok {
			return t
		}
		x := bySeq[seq]
		if x == nil {
			return time.Time{}
		}
		end := x.EndedAt
		for _, ch := range x.Children {
			if ct := completion(ch); ct.After(end) {
				end = ct
			}
		}
		done[seq] = end
		return end
	}
	var out []string
	add := func(s string) {
		if len(out) < 20 {
			out = append(out, s)
		}
	}
	for _, x := range tasks {
		if x.FirstStartedAt.IsZero() || x.EndedAt.IsZero() {
			add(fmt.Sprintf("task %d %s has no first start or no end time: %s", x.Seq, x.Name, describe(x)))
		}
		for _, ch := range x.Children {
			c := bySeq[ch]
			if c == nil {
				add(fmt.Sprintf("task %d lists child %d, which is not listed", x.Seq, ch))
			} else if c.FirstStartedAt.Before(x.EndedAt) {
				add(fmt.Sprintf("subtask %d %s first started at %s, before its parent %d committed at %s",
					c.Seq, c.Name, ms(c.FirstStartedAt), x.Seq, ms(x.EndedAt)))
			}
		}
		if len(x.Dependents) == 0 {
			continue
		}
		xDone := completion(x.Seq)
		for _, d := range x.Dependents {
			dep := bySeq[d]
			if dep == nil {
				add(fmt.Sprintf("task %d lists dependent %d, which is not listed", x.Seq, d))
				continue
			}
			if dep.FirstStartedAt.Before(xDone) {
				add(fmt.Sprintf("dependent %d %s first started at %s, before its dependency %d %s was complete at %s (%s early)",
					dep.Seq, dep.Name, ms(dep.FirstStartedAt), x.Seq, x.Name, ms(xDone), xDone.Sub(dep.FirstStartedAt)))
			}
		}
	}
	return out
}

// runnerProc is one bench process.
type runnerProc struct {
	n       int
	cmd     *exec.Cmd
	logPath string
	started time.Time
	done    chan struct{}
	waitErr error // set before done closes
	killed  bool  // we sent SIGKILL
	stopped bool  // we sent SIGTERM
}

func (p *runnerProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// fleet is the set of runner processes. Only the test goroutine uses it.
type fleet struct {
	t          *testing.T
	bin, dir   string
	args       []string
	all, live  []*runnerProc
	kills      int
	unexpected []string
}

func (f *fleet) start() error {
	n := len(f.all)
	logPath := filepath.Join(f.dir, fmt.Sprintf("runner-%03d.log", n))
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(f.bin, f.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start runner %d: %w", n, err)
	}
	_ = logf.Close() // the child has its own descriptor
	p := &runnerProc{n: n, cmd: cmd, logPath: logPath, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	f.all = append(f.all, p)
	f.live = append(f.live, p)
	return nil
}

// reap drops runners that exited on their own from the live set and records
// them as unexpected; it returns their descriptions.
func (f *fleet) reap() []string {
	var gone []string
	f.live = slices.DeleteFunc(f.live, func(p *runnerProc) bool {
		if !p.exited() {
			return false
		}
		msg := fmt.Sprintf("runner %d (pid %d) exited on its own: %v; log tail:\n%s", p.n, p.cmd.Process.Pid, p.waitErr, tail(p.logPath, 10))
		gone = append(gone, msg)
		return true
	})
	f.unexpected = append(f.unexpected, gone...)
	return gone
}

// replaceExited starts a new runner for each one that exited on its own,
// so the job can go on; the exits still fail the test at the end.
func (f *fleet) replaceExited() {
	for _, msg := range f.reap() {
		f.t.Logf("chaos: %s", msg)
		require.NoError(f.t, f.start())
	}
}

// killRandom SIGKILLs a random live runner and waits until it is gone.
func (f *fleet) killRandom(rng *rand.Rand) {
	if len(f.live) == 0 {
		return
	}
	i := rng.IntN(len(f.live))
	p := f.live[i]
	f.live = slices.Delete(f.live, i, i+1)
	p.killed = true
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		require.FailNow(f.t, fmt.Sprintf("runner %d (pid %d) still running 10s after SIGKILL", p.n, p.cmd.Process.Pid))
	}
	f.kills++
}

// stopAll sends SIGTERM to every live runner and waits for them; it returns
// what went wrong (a non-zero exit, no exit within timeout).
//
// One exit is let through: a runner started by the last chaos tick, younger
// than startupWindow when the signal came, that died of the SIGTERM itself.
// bench installs its signal handler only after connecting to Redis and
// registering (examples/bench/main.go), so a SIGTERM during start-up takes
// Go's default action; the runner held nothing yet. It is logged.
func (f *fleet) stopAll(timeout time.Duration) []string {
	const startupWindow = 2 * time.Second
	f.replaceExitedNoStart()
	signaled := make(map[*runnerProc]time.Duration, len(f.live))
	for _, p := range f.live {
		p.stopped = true
		signaled[p] = time.Since(p.started)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var problems []string
	deadline := time.After(timeout)
	for _, p := range f.live {
		select {
		case <-p.done:
			if age := signaled[p]; p.waitErr != nil && age < startupWindow && diedOf(p.waitErr, syscall.SIGTERM) {
				f.t.Logf("chaos: runner %d (pid %d) got SIGTERM %s after it started and died of the signal instead of exiting 0: "+
					"it was still starting (bench installs its handler after connecting to Redis); tolerated",
					p.n, p.cmd.Process.Pid, age.Round(time.Millisecond))
			} else if p.waitErr != nil {
				problems = append(problems, fmt.Sprintf("runner %d (pid %d) exited with %v after SIGTERM; log tail:\n%s", p.n, p.cmd.Process.Pid, p.waitErr, tail(p.logPath, 10)))
			}
		case <-deadline:
			problems = append(problems, fmt.Sprintf("runner %d (pid %d) still running %s after SIGTERM; log tail:\n%s", p.n, p.cmd.Process.Pid, timeout, tail(p.logPath, 10)))
		}
	}
	f.live = nil
	return problems
}

// diedOf reports whether a process ended by signal sig.
func diedOf(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

func (f *fleet) replaceExitedNoStart() {
	for _, msg := range f.reap() {
		f.t.Logf("chaos: %s", msg)
	}
}

// killAll SIGKILLs every runner still running (test cleanup).
func (f *fleet) killAll() {
	for _, p := range f.all {
		if !p.exited() {
			p.killed = true
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
			}
		}
	}
}

func (f *fleet) livePIDs() []int {
	pids := make([]int, 0, len(f.live))
	for _, p := range f.live {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

// fate says what became of the runner process with pid: live, killed, ...
func (f *fleet) fate(pid int) string {
	for _, p := range f.all {
		if p.cmd.Process.Pid != pid {
			continue
		}
		switch {
		case p.killed:
			return fmt.Sprintf("runner %d, killed", p.n)
		case p.stopped:
			return fmt.Sprintf("runner %d, stopped", p.n)
		case p.exited():
			return fmt.Sprintf("runner %d, exited on its own", p.n)
		default:
			return fmt.Sprintf("runner %d, alive", p.n)
		}
	}
	return "not a runner of this test"
}

// runnerPID reads the pid out of a runner id "<host>-<pid>-<hex>".
func runnerPID(id string) int {
	parts := strings.Split(id, "-")
	if len(parts) < 3 {
		return 0
	}
	pid, _ := strconv.Atoi(parts[len(parts)-2])
	return pid
}

// logUnfinished logs the tasks that are not computed yet (up to 20), with
// what became of the runner each one last belonged to.
func (f *fleet) logUnfinished(ctx context.Context, c *workflows.Client, jobID string) {
	tasks, err := retry(ctx, 10*time.Second, func(ctx context.Context) ([]workflows.TaskInfo, error) { return c.Jobs().Tasks(ctx, jobID) })
	if err != nil {
		f.t.Logf("chaos: list tasks: %v", err)
		return
	}
	byState := map[string]int{}
	var lines []string
	for _, x := range tasks {
		byState[x.State]++
		if x.State == workflows.TaskComputed {
			continue
		}
		if len(lines) < 20 {
			line := describe(x)
			if x.Runner != "" {
				line += " [" + f.fate(runnerPID(x.Runner)) + "]"
			}
			lines = append(lines, line)
		}
	}
	f.t.Logf("chaos: %d tasks listed, by state %v; not computed:\n%s", len(tasks), byState, strings.Join(lines, "\n"))
}

func (f *fleet) failWithDiagnostics(ctx context.Context, c *workflows.Client, jobID string, last workflows.Job, format string, args ...any) {
	f.t.Helper()
	f.t.Logf("chaos: last job poll: state %q counts %v; live runners %v", last.State, last.TaskCounts, f.livePIDs())
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	f.logUnfinished(dctx, c, jobID)
	require.FailNow(f.t, fmt.Sprintf(format, args...))
}

// tails returns the last lines of every runner log that has any.
func (f *fleet) tails(lines int) string {
	var b strings.Builder
	for _, p := range f.all {
		s := tail(p.logPath, lines)
		if s == "" {
			continue
		}
		state := "alive"
		switch {
		case p.killed:
			state = "killed"
		case p.stopped:
			state = "stopped"
		case p.exited():
			state = "exited"
		}
		fmt.Fprintf(&b, "--- runner %d (pid %d, %s) %s\n%s\n", p.n, p.cmd.Process.Pid, state, p.logPath, s)
	}
	return b.String()
}

func (f *fleet) keepLogs(dst string, redisLog string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	files := []string{redisLog}
	for _, p := range f.all {
		files = append(files, p.logPath)
	}
	for _, src := range files {
		if err := copyFile(src, filepath.Join(dst, filepath.Base(src))); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// tail returns the last n lines of a file ("" when it is missing or empty).
func tail(path string, n int) string {
	fh, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer fh.Close()
	var ring []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		ring = append(ring, sc.Text())
		if len(ring) > n {
			ring = ring[1:]
		}
	}
	return strings.Join(ring, "\n")
}
