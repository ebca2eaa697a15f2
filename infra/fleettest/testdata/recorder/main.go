// Command recorder is the fleet test's workflow (a release runnerd runs).
// Spread submits N Record subtasks; each Record execution appends
// "JOB TASK ATTEMPT RUNNER" to $FLEETTEST_RECORDS/executions.log before it
// does anything else, so the test counts every execution, also those whose
// results the fleet refuses. While $FLEETTEST_RECORDS/hold exists, Record
// waits: that is how the test keeps tasks running on a runner it then cuts
// off the network.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/runfleet/runfleet/workflows"
)

func main() {
	workflows.ServeReleaseModes(&Spread{}, &Record{})
	fmt.Fprintln(os.Stderr, "recorder: a release binary; run it with runnerd")
	os.Exit(2)
}

// Spread submits N Records that sleep MS milliseconds each.
type Spread struct {
	N  int `json:"n"`
	MS int `json:"ms"`
}

func (*Spread) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Spread", "v1.0")
}

func (s *Spread) Execute(ctx context.Context) error {
	tasks := make([]workflows.Task, s.N)
	for i := range tasks {
		tasks[i] = &Record{MS: s.MS}
	}
	_, err := workflows.SubmitSubtasks(ctx, tasks)
	return err
}

// Record notes its execution, waits while the hold file exists, then
// sleeps MS milliseconds.
type Record struct {
	MS int `json:"ms"`
}

func (*Record) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Record", "v1.0")
}

func (r *Record) Execute(ctx context.Context) error {
	dir := os.Getenv("FLEETTEST_RECORDS")
	if dir == "" {
		return errors.New("record: FLEETTEST_RECORDS is not set")
	}
	cur, _ := workflows.CurrentTask(ctx)
	f, err := os.OpenFile(filepath.Join(dir, "executions.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s %d %d %s\n", cur.JobID, cur.TaskID, cur.Attempt, cur.RunnerID)
	f.Close()
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hold")); err != nil {
			break
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return sleep(ctx, time.Duration(r.MS)*time.Millisecond)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
