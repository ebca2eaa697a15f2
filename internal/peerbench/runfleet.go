package peerbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/workflows"
)

// runfleetCluster is the cluster every runfleet run uses.
const runfleetCluster = "peer"

// runfleet runs one job whose root FanOut submits r.Tasks Noop subtasks,
// with one Runner in this process at r.Concurrency. Completed is the job's
// finished time; the job is polled every 20 ms until then.
func (h *Harness) runfleet(ctx context.Context, r *Result) error {
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL("redis://"+h.addr+"/0"),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Clusters().Create(ctx, runfleetCluster, ""); err != nil {
		return err
	}
	runner, err := c.NewRunner(ctx, runfleetCluster, benchtask.All()...)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.RunForever(runCtx, workflows.WithConcurrency(r.Concurrency)) }()
	defer func() {
		stop()
		<-done
	}()
	select {
	case <-time.After(settle):
	case err := <-done:
		done <- err
		return fmt.Errorf("runner stopped at start: %v", err)
	}

	m, err := h.start(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	j, err := c.Jobs().Submit(ctx, "peerbench", runfleetCluster, &benchtask.FanOut{N: r.Tasks, Child: "Noop"})
	if err != nil {
		return err
	}
	r.Enqueue = time.Since(start)
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	id := j.ID
	if j, err = c.Jobs().Wait(waitCtx, id, 0, nil); err != nil { // event-driven; the fallback read is slow
		return fmt.Errorf("wait for job %s: %w", id, err)
	}
	if err := m.stop(ctx, r); err != nil {
		return err
	}
	if j.State != workflows.JobCompleted {
		return fmt.Errorf("job %s ended %s, want %s", j.ID, j.State, workflows.JobCompleted)
	}
	if got := j.TaskCounts[workflows.TaskComputed]; got != int64(r.Tasks+1) {
		return fmt.Errorf("job %s computed %d tasks, want %d", j.ID, got, r.Tasks+1)
	}
	// The finished time has millisecond resolution.
	r.Elapsed = j.FinishedAt.Sub(start)
	return nil
}
