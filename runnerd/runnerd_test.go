package runnerd_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/runnerd"
	"github.com/runfleet/runfleet/workflows"
)

func where(label, id string) string {
	return fmt.Sprintf("build=%s release=%s ", label, id[:12])
}

// Publish → deploy → the runner picks the release up → a job runs on it, in
// the worker process, with its subtasks.
func TestPublishDeployRun(t *testing.T) {
	f := newFixture(t)
	rel := f.publish(t, "a", nil)
	again, isNew, err := f.catalog.Publish(f.ctx, f.pack(t, benchManifest(), benchBinary(t, "a")), nil)
	require.NoError(t, err)
	require.False(t, isNew, "publishing the same artifact twice gives one release")
	require.Equal(t, rel.ID, again.ID)
	all, err := f.catalog.Releases(f.ctx, "bench")
	require.NoError(t, err)
	require.Len(t, all, 1)

	f.deploy(t, rel)
	d := f.start(t, nil)
	st := waitStatus(t, d, "release a running", onlyRunning(rel.ID))
	require.NotEqual(t, os.Getpid(), st[0].PID)

	j := f.submit(t, &benchtask.Probe{Children: 3})
	require.Equal(t, workflows.JobCompleted, f.wait(t, j.ID).State)
	ts := f.tasks(t, j.ID)
	require.Len(t, ts, 4)
	for _, task := range ts {
		require.Equal(t, workflows.TaskComputed, task.State)
		require.Contains(t, task.Display, where("a", rel.ID))
		require.Contains(t, task.Display, fmt.Sprintf("pid=%d", st[0].PID))
	}
	require.DirExists(t, filepath.Join(f.cache, rel.ID), "the release is unpacked in the cache")
}

// A new deployment while a job runs: the task in flight finishes on the old
// release, the tasks after it run on the new one, nothing is lost and
// nothing runs twice; the old worker stops once drained.
func TestRedeployWhileRunning(t *testing.T) {
	f := newFixture(t)
	a, b := f.publish(t, "a", nil), f.publish(t, "b", nil)
	require.NotEqual(t, a.ID, b.ID)
	f.deploy(t, a)
	d := f.start(t, nil)
	st := waitStatus(t, d, "release a running", onlyRunning(a.ID))
	oldPID := st[0].PID

	// The root stays in flight until release b runs: only then may its
	// children be queued, or release a (not yet draining) could take them.
	gate := filepath.Join(t.TempDir(), "release-b-runs")
	j := f.submit(t, &benchtask.Probe{Until: gate, Children: 6})
	require.Eventually(t, func() bool { return f.tasks(t, j.ID)[0].State == workflows.TaskRunning },
		20*time.Second, 5*time.Millisecond)
	f.deploy(t, b)
	waitStatus(t, d, "release b running", func(st []runnerd.Status) bool {
		return slices.ContainsFunc(st, func(s runnerd.Status) bool { return s.Release == b.ID && s.State == "running" })
	})
	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	require.Equal(t, workflows.JobCompleted, f.wait(t, j.ID).State)

	ts := f.tasks(t, j.ID)
	require.Len(t, ts, 7)
	require.Contains(t, ts[0].Display, where("a", a.ID), "the task in flight finished on the old release")
	for _, task := range ts {
		require.Equal(t, 1, task.Attempts, "task %d ran once", task.Seq)
		require.Equal(t, 0, task.Losses)
		if task.Seq != ts[0].Seq {
			require.Contains(t, task.Display, where("b", b.ID), "later tasks run on the new release")
		}
	}
	waitStatus(t, d, "release b alone", onlyRunning(b.ID))
	require.Eventually(t, func() bool { return syscall.Kill(oldPID, 0) != nil }, 10*time.Second, 10*time.Millisecond,
		"the old worker process exits once drained")
}

// Undeploy drains and stops the worker.
func TestUndeploy(t *testing.T) {
	f := newFixture(t)
	rel := f.publish(t, "a", nil)
	f.deploy(t, rel)
	d := f.start(t, nil)
	pid := waitStatus(t, d, "running", onlyRunning(rel.ID))[0].PID
	_, err := f.client.Deployments().Undeploy(f.ctx, f.cluster, "bench")
	require.NoError(t, err)
	waitStatus(t, d, "nothing running", func(st []runnerd.Status) bool { return len(st) == 0 })
	require.Eventually(t, func() bool { return syscall.Kill(pid, 0) != nil }, 10*time.Second, 10*time.Millisecond)
}

// Deleting the cluster deletes its deployments: its release runners drain.
func TestClusterDeletedDrains(t *testing.T) {
	f := newFixture(t)
	rel := f.publish(t, "a", nil)
	f.deploy(t, rel)
	d := f.start(t, nil)
	waitStatus(t, d, "running", onlyRunning(rel.ID))
	require.NoError(t, f.client.Clusters().Delete(f.ctx, f.cluster))
	waitStatus(t, d, "nothing running", func(st []runnerd.Status) bool { return len(st) == 0 })
}

// A worker that crashes under a task is restarted, and the task runs again
// on the new process, counted as a loss, not a failure.
func TestWorkerCrashRestarts(t *testing.T) {
	f := newFixture(t)
	rel := f.publish(t, "a", nil)
	f.deploy(t, rel)
	d := f.start(t, nil)
	pid := waitStatus(t, d, "running", onlyRunning(rel.ID))[0].PID
	marker := filepath.Join(t.TempDir(), "crashed")
	j := f.submit(t, &benchtask.Crash{Marker: marker})
	require.Equal(t, workflows.JobCompleted, f.wait(t, j.ID).State)
	require.FileExists(t, marker, "the first execution crashed its worker")
	ts := f.tasks(t, j.ID)
	require.Equal(t, 1, ts[0].Losses)
	require.Equal(t, 0, ts[0].Failures)
	require.Equal(t, 2, ts[0].Attempts)
	st := waitStatus(t, d, "restarted worker", func(st []runnerd.Status) bool {
		return len(st) == 1 && st[0].Restarts == 1 && st[0].PID > 0
	})
	require.NotEqual(t, pid, st[0].PID)
	require.True(t, f.logs.Contains("worker process exited; restarting it"))
}

// A crashed worker whose helper process still holds its output is noticed
// all the same: restarted, its task run again, the helper killed with it.
func TestWorkerCrashLeavingAChild(t *testing.T) {
	f := newFixture(t)
	rel := f.publish(t, "a", nil)
	f.deploy(t, rel)
	d := f.start(t, nil)
	waitStatus(t, d, "running", onlyRunning(rel.ID))
	j := f.submit(t, &benchtask.Crash{Marker: filepath.Join(t.TempDir(), "crashed"), Orphan: true})
	require.Equal(t, workflows.JobCompleted, f.wait(t, j.ID).State)
	require.Equal(t, 1, f.tasks(t, j.ID)[0].Losses)
	waitStatus(t, d, "restarted worker", func(st []runnerd.Status) bool {
		return len(st) == 1 && st[0].Restarts == 1 && st[0].PID > 0
	})
}

// Two runner processes cannot share a cache directory: each evicts what it
// does not use itself.
func TestCacheDirLocked(t *testing.T) {
	f := newFixture(t)
	f.start(t, nil)
	require.Eventually(t, func() bool { return f.logs.Contains("release runner started") }, 10*time.Second, time.Millisecond)
	d, err := runnerd.New(runnerd.Config{Client: f.client, Cluster: f.cluster, Store: f.store, CacheDir: f.cache})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Second)
	defer cancel()
	require.ErrorContains(t, d.Run(ctx), "in use by another release runner process")
}

// refused waits for a failed status of the release and checks that nothing
// ran and nothing is left unpacked.
func requireRefused(t *testing.T, f *fixture, d *runnerd.Daemon, id, why string) {
	t.Helper()
	st := waitStatus(t, d, "release refused", func(st []runnerd.Status) bool {
		return len(st) == 1 && st[0].State == "failed"
	})
	require.Equal(t, id, st[0].Release)
	require.Contains(t, st[0].Error, why)
	require.Zero(t, st[0].PID)
	require.NoDirExists(t, filepath.Join(f.cache, id), "nothing is left unpacked")
	require.False(t, f.logs.Contains("worker started"), "no worker was started")
}

// One byte changed in the stored artifact: the digest check refuses it
// before anything is unpacked or run.
func TestTamperedArtifactRefused(t *testing.T) {
	f := newFixture(t)
	rel := f.publish(t, "a", nil)
	path := filepath.Join(f.store.(*artifacts.FileStore).Root, "releases", "bench", rel.ID+".tar.zst")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)/2] ^= 0x01
	require.NoError(t, os.WriteFile(path, b, 0o644))
	f.deploy(t, rel)
	d := f.start(t, nil)
	requireRefused(t, f, d, rel.ID, "digest")
}

func TestSignatures(t *testing.T) {
	trusted, trustedKey, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	_, otherKey, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	withKeys := func(c *runnerd.Config) { c.TrustedKeys = []ed25519.PublicKey{trusted} }

	t.Run("unsigned", func(t *testing.T) {
		f := newFixture(t)
		rel := f.publish(t, "a", nil)
		f.deploy(t, rel)
		requireRefused(t, f, f.start(t, withKeys), rel.ID, "unsigned")
	})
	t.Run("wrong key", func(t *testing.T) {
		f := newFixture(t)
		rel := f.publish(t, "a", otherKey)
		f.deploy(t, rel)
		requireRefused(t, f, f.start(t, withKeys), rel.ID, "signature")
	})
	t.Run("trusted", func(t *testing.T) {
		f := newFixture(t)
		rel := f.publish(t, "a", trustedKey)
		f.deploy(t, rel)
		d := f.start(t, withKeys)
		waitStatus(t, d, "signed release running", onlyRunning(rel.ID))
		j := f.submit(t, &benchtask.Noop{})
		require.Equal(t, workflows.JobCompleted, f.wait(t, j.ID).State)
	})
}

// A manifest that disagrees with what the binary serves is refused when
// the worker says hello, before it takes any task.
func TestManifestMismatchRefused(t *testing.T) {
	f := newFixture(t)
	m := benchManifest()
	m.Tasks = m.Tasks[:len(m.Tasks)-1]
	rel, _, err := f.catalog.Publish(f.ctx, f.pack(t, m, benchBinary(t, "a")), nil)
	require.NoError(t, err)
	f.deploy(t, rel)
	d := f.start(t, nil)
	st := waitStatus(t, d, "release refused", func(st []runnerd.Status) bool {
		return len(st) == 1 && st[0].State == "failed"
	})
	require.Contains(t, st[0].Error, "manifest disagrees with the binary")
}

// Two releases exposing the same task name and major version cannot both
// run: the later deployment is refused, naming both.
func TestConflictingDeploymentsRefused(t *testing.T) {
	now := time.Now()
	a := workflows.Deployment{Workflow: "tiles", Release: strings.Repeat("a", 64), DeployedAt: now,
		Tasks: []workflows.TaskIdentifier{{Name: "Resize", Version: "v1.2"}}}
	b := workflows.Deployment{Workflow: "thumbs", Release: strings.Repeat("b", 64), DeployedAt: now.Add(time.Second),
		Tasks: []workflows.TaskIdentifier{{Name: "Crop", Version: "v1.0"}, {Name: "Resize", Version: "v1.5"}}}
	c := workflows.Deployment{Workflow: "other", Release: strings.Repeat("c", 64), DeployedAt: now.Add(2 * time.Second),
		Tasks: []workflows.TaskIdentifier{{Name: "Resize", Version: "v2.0"}}}
	accepted, refused := runnerd.AcceptDeployments([]workflows.Deployment{c, b, a})
	require.Equal(t, []workflows.Deployment{a, c}, accepted)
	require.Len(t, refused, 1)
	require.Contains(t, refused["thumbs"], "workflow tiles")
	require.Contains(t, refused["thumbs"], "workflow thumbs")
	require.Contains(t, refused["thumbs"], "Resize@v1")
}
