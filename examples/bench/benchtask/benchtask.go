// Package benchtask holds the small tasks the bench runner, the tests and the
// benchmarks share: each does one thing a test needs (nothing, sleep, fail,
// fail a few times, fan out, say where it ran, crash its process).
package benchtask

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/runfleet/runfleet/workflows"
)

// Version is the version of every bench task.
const Version = "v1.0"

// All returns one of each bench task, ready to register.
func All() []workflows.Task {
	return []workflows.Task{&Noop{}, &Sleep{}, &Fail{}, &Flaky{}, &FanOut{}, &Probe{}, &Crash{}, &Ingest{}, &Log{}, &Traced{}}
}

// Noop does nothing.
type Noop struct{}

func (*Noop) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Noop", Version)
}
func (*Noop) Execute(context.Context) error { return nil }

// Sleep sleeps MS milliseconds, or until its context ends.
type Sleep struct {
	MS int `json:"ms"`
}

func (*Sleep) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Sleep", Version)
}
func (s *Sleep) Execute(ctx context.Context) error {
	t := time.NewTimer(time.Duration(s.MS) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrFail is what Fail and Flaky return.
var ErrFail = errors.New("bench task failed on purpose")

// Fail always fails.
type Fail struct{}

func (*Fail) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Fail", Version)
}
func (*Fail) Execute(context.Context) error { return ErrFail }

// Flaky fails while its attempt number is at most FailTimes.
type Flaky struct {
	FailTimes int `json:"fail_times"`
}

func (*Flaky) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Flaky", Version)
}
func (f *Flaky) Execute(ctx context.Context) error {
	cur, _ := workflows.CurrentTask(ctx)
	if cur.Attempt <= f.FailTimes {
		return fmt.Errorf("attempt %d of %d planned failures: %w", cur.Attempt, f.FailTimes, ErrFail)
	}
	return nil
}

// FanOut submits N subtasks of task Child (at Version) with ChildInput, and,
// when Merge is set, one more Noop that depends on all of them.
type FanOut struct {
	N          int             `json:"n"`
	Child      string          `json:"child"`
	ChildInput json.RawMessage `json:"child_input,omitempty"`
	Merge      bool            `json:"merge,omitempty"`
}

func (*FanOut) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("FanOut", Version)
}
func (f *FanOut) Execute(ctx context.Context) error {
	if f.N < 0 {
		return fmt.Errorf("fan out: n is %d, want >= 0", f.N)
	}
	child := f.Child
	if child == "" {
		child = "Noop"
	}
	tasks := make([]workflows.Task, f.N)
	for i := range tasks {
		t, err := byName(child, f.ChildInput)
		if err != nil {
			return err
		}
		tasks[i] = t
	}
	futures, err := workflows.SubmitSubtasks(ctx, tasks)
	if err != nil {
		return err
	}
	if f.Merge {
		if _, err := workflows.SubmitSubtask(ctx, &Noop{}, workflows.WithDependencies(futures...)); err != nil {
			return err
		}
	}
	return nil
}

// byName builds a bench task from its name and JSON input.
func byName(name string, input json.RawMessage) (workflows.Task, error) {
	var t workflows.Task
	switch name {
	case "Noop":
		t = &Noop{}
	case "Sleep":
		t = &Sleep{}
	case "Fail":
		t = &Fail{}
	case "Flaky":
		t = &Flaky{}
	case "FanOut":
		t = &FanOut{}
	case "Log":
		t = &Log{}
	default:
		return nil, fmt.Errorf("fan out: unknown child task %q (want Noop, Sleep, Fail, Flaky, FanOut or Log)", name)
	}
	if len(input) > 0 && string(input) != "null" {
		if err := json.Unmarshal(input, t); err != nil {
			return nil, fmt.Errorf("fan out: child input for %s: %w", name, err)
		}
	}
	return t, nil
}
