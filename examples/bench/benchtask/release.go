package benchtask

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"time"

	"github.com/runfleet/runfleet/workflows"
)

// Build labels a build of the bench program. Release tests set it with
// -ldflags "-X github.com/runfleet/runfleet/examples/bench/benchtask.Build=b"
// to get two releases with different bytes from one source.
var Build = "dev"

// Probe records where it ran in its display text ("build=<Build>
// release=<release id prefix> pid=<pid>", then " cuda=<CUDA_VISIBLE_DEVICES
// value>" when it was handed a device), sleeps MS milliseconds (or until
// its context ends), waits until the file Until exists when it is set (a
// test holds the task in flight that way until it says so), then submits
// Children Probes that sleep ChildMS.
type Probe struct {
	MS       int    `json:"ms,omitempty"`
	Until    string `json:"until,omitempty"`
	Children int    `json:"children,omitempty"`
	ChildMS  int    `json:"child_ms,omitempty"`
}

func (*Probe) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Probe", Version)
}
func (p *Probe) Execute(ctx context.Context) error {
	cur, _ := workflows.CurrentTask(ctx)
	rel := cur.Release
	if len(rel) > 12 {
		rel = rel[:12]
	}
	if rel == "" {
		rel = "direct"
	}
	display := fmt.Sprintf("build=%s release=%s pid=%d", Build, rel, os.Getpid())
	if len(cur.Devices) > 0 {
		display += " cuda=" + workflows.CUDAVisibleDevices(cur.Devices)
	}
	workflows.SetDisplay(ctx, display)
	if err := (&Sleep{MS: p.MS}).Execute(ctx); err != nil {
		return err
	}
	for p.Until != "" {
		if _, err := os.Stat(p.Until); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	kids := make([]workflows.Task, p.Children)
	for i := range kids {
		kids[i] = &Probe{MS: p.ChildMS}
	}
	_, err := workflows.SubmitSubtasks(ctx, kids)
	return err
}

// Crash kills its own process (exit status 3) unless the file Marker
// exists, creating Marker first, so the first execution crashes and the
// next succeeds. With Orphan it first starts a `sleep 60` that shares the
// process's output, as a task's helper process would. It exists to test how
// release runners handle a crashing worker; in a direct runner it takes the
// whole runner down.
type Crash struct {
	Marker string `json:"marker"`
	Orphan bool   `json:"orphan,omitempty"`
}

func (*Crash) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Crash", Version)
}
func (c *Crash) Execute(context.Context) error {
	if c.Marker == "" {
		return errors.New("crash: marker path is empty")
	}
	if _, err := os.Stat(c.Marker); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.WriteFile(c.Marker, []byte(time.Now().Format(time.RFC3339Nano)), 0o644); err != nil {
		return err
	}
	if c.Orphan {
		child := exec.Command("sleep", "60")
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		if err := child.Start(); err != nil {
			return err
		}
	}
	os.Exit(3)
	return nil
}
