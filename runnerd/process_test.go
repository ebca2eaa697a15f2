package runnerd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/workflows"
)

// runnerdBinary builds cmd/runnerd once per test binary.
func runnerdBinary(t testing.TB) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildDone["runnerd"]; ok {
		return p
	}
	out := filepath.Join(buildDir, "runnerd")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/runnerd")
	cmd.Dir = ".."
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "build runnerd: %s", b)
	buildDone["runnerd"] = out
	return out
}

// A release runner killed with SIGKILL takes its worker with it, and
// another release runner finishes the job: the killed one's tasks are
// queued again once its heartbeat expires.
func TestRunnerdKilled(t *testing.T) {
	f := newFixture(t)
	rel := f.publish(t, "a", nil)
	f.deploy(t, rel)
	bin := runnerdBinary(t)
	start := func(name string) (*exec.Cmd, string) {
		log := filepath.Join(t.TempDir(), name+".log")
		out, err := os.Create(log)
		require.NoError(t, err)
		t.Cleanup(func() { _ = out.Close() })
		cmd := exec.Command(bin, "--cluster", f.cluster, "--redis", f.redis.URL(),
			"--store", "file://"+f.store.(*artifacts.FileStore).Root, "--cache-dir", t.TempDir(),
			"--concurrency", "4", "--heartbeat-ttl", "1s", "--reclaim-interval", "200ms", "--grace", "5s")
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		})
		return cmd, log
	}
	workerPID := func(log string) int {
		var pid int
		require.Eventually(t, func() bool {
			b, _ := os.ReadFile(log)
			m := regexp.MustCompile(`msg="worker started".* pid=(\d+)`).FindSubmatch(b)
			if m == nil {
				return false
			}
			pid, _ = strconv.Atoi(string(m[1]))
			return true
		}, 30*time.Second, 10*time.Millisecond, "runnerd log %s", log)
		return pid
	}
	doomed, doomedLog := start("doomed")
	doomedWorker := workerPID(doomedLog)

	// The job's tasks run on the doomed runner alone until it dies.
	j := f.submit(t, &benchtask.Probe{Children: 8, ChildMS: 3000})
	require.Eventually(t, func() bool {
		running := 0
		for _, task := range f.tasks(t, j.ID) {
			if task.State == workflows.TaskRunning {
				running++
			}
		}
		return running == 4
	}, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, doomed.Process.Kill())
	_, _ = doomed.Process.Wait()
	require.Eventually(t, func() bool { return syscall.Kill(doomedWorker, 0) != nil }, 10*time.Second, 10*time.Millisecond,
		"the worker dies with its runner")

	_, survivorLog := start("survivor")
	workerPID(survivorLog)
	require.Equal(t, workflows.JobCompleted, f.wait(t, j.ID).State)
	lost := 0
	for _, task := range f.tasks(t, j.ID) {
		require.Equal(t, workflows.TaskComputed, task.State)
		lost += task.Losses
	}
	require.Equal(t, 4, lost, "the four tasks running on the killed runner were queued again")
}
