package workflows

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"sync"

	"github.com/runfleet/runfleet/queue"
)

// contextRecorder writes a runner's context (queue.RunnerContext) into each
// job it executes tasks of, once per job: attempts name only the runner id,
// and a job's reader finds where that runner ran in the job itself, even
// after the runner has left the fleet.
type contextRecorder struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

// recordedJobsMax bounds the set of jobs a runner remembers having recorded
// its context in; past it the set starts over, costing one repeated
// (harmless: HSETNX) write per job.
const recordedJobsMax = 10000

// recordContext records the runner's context in jobID unless it did so
// already. A failure is logged, never fatal: the attempt then shows the
// runner id without its context.
func (r *Runner) recordContext(ctx context.Context, jobID string) {
	rec := &r.contexts
	rec.mu.Lock()
	if _, ok := rec.seen[jobID]; ok {
		rec.mu.Unlock()
		return
	}
	if rec.seen == nil || len(rec.seen) >= recordedJobsMax {
		rec.seen = map[string]struct{}{}
	}
	rec.seen[jobID] = struct{}{}
	rec.mu.Unlock()
	if err := r.client.q.RecordRunnerContext(ctx, jobID, r.runnerContext()); err != nil {
		rec.mu.Lock()
		delete(rec.seen, jobID)
		rec.mu.Unlock()
		r.logger.Warn("could not record the runner's context with the job", slog.String("job_id", jobID), slog.Any("error", err))
	}
}

// runnerContext describes this runner for its attempts.
func (r *Runner) runnerContext() queue.RunnerContext {
	host, _ := os.Hostname()
	return queue.RunnerContext{ID: r.id, Host: host, PID: os.Getpid(), Cluster: r.cluster, Release: r.release,
		SDKVersion: buildVersion(), OS: runtime.GOOS, Arch: runtime.GOARCH}
}
