package workflows

import (
	"encoding/json"
	"os"
	"runtime"
	"sync"

	"github.com/runfleet/runfleet/queue"
)

// contextRecorder gets a runner's context (queue.RunnerContext) into each
// job it executes tasks of, once per job: attempts name only the runner
// id, and a job's reader finds where that runner ran in the job itself,
// even after the runner has left the fleet. The context rides on the
// runner's next commit (queue.Commit.Contexts), so it costs no round trip
// of its own and never delays a task.
type contextRecorder struct {
	mu      sync.Mutex
	seen    map[string]struct{}
	pending []string
	json    []byte // the runner's context, encoded once
}

// recordedJobsMax bounds the set of jobs a runner remembers having recorded
// its context in; past it the set starts over, costing one repeated
// (harmless: written once per runner and job) record per job.
const recordedJobsMax = 10000

// noteJob marks jobID for a record of the runner's context unless it was
// marked before.
func (r *Runner) noteJob(jobID string) {
	rec := &r.contexts
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if _, ok := rec.seen[jobID]; ok {
		return
	}
	if rec.seen == nil || len(rec.seen) >= recordedJobsMax {
		rec.seen = map[string]struct{}{}
	}
	rec.seen[jobID] = struct{}{}
	rec.pending = append(rec.pending, jobID)
}

// takeContexts returns the context records the next commit carries.
func (r *Runner) takeContexts() []queue.JobContext {
	rec := &r.contexts
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.pending) == 0 {
		return nil
	}
	if rec.json == nil {
		rec.json, _ = json.Marshal(r.runnerContext())
	}
	out := make([]queue.JobContext, len(rec.pending))
	for i, job := range rec.pending {
		out[i] = queue.JobContext{JobID: job, Context: rec.json}
	}
	rec.pending = rec.pending[:0]
	return out
}

// runnerContext describes this runner for its attempts. SDKVersion is the
// runfleet build of this process: runnerd's for a release runner (the
// release id names what the worker runs).
func (r *Runner) runnerContext() queue.RunnerContext {
	host, _ := os.Hostname()
	return queue.RunnerContext{ID: r.id, Host: host, PID: os.Getpid(), Cluster: r.cluster, Release: r.release,
		SDKVersion: buildVersion(), OS: runtime.GOOS, Arch: runtime.GOARCH}
}
