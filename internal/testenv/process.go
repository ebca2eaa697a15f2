package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// process is a server process a test starts, stops and kills; Redis and
// MinIO embed it. With the containers backend, ctr is the server's
// container and stands in for the process.
type process struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	ctr  *serverContainer
}

// launch starts cmd and returns a channel closed when it has exited.
func (p *process) launch(cmd *exec.Cmd) (<-chan struct{}, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	return done, nil
}

// Stop terminates the server and waits for it to exit.
func (p *process) Stop() {
	if p.ctr != nil {
		p.ctr.stop()
		return
	}
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Kill stops the server abruptly (SIGKILL), as a crash would.
func (p *process) Kill() {
	if p.ctr != nil {
		p.ctr.kill()
		return
	}
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// CPUTime is the CPU time (user and system) the server process has used
// so far, from /proc: benchmarks use it to say which process a cost lands
// in. It is an error for a container or a process not started.
func (p *process) CPUTime() (time.Duration, error) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0, errors.New("testenv: CPU time: no local process")
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("testenv: CPU time: %w", err)
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15, the 12th and 13th after it.
	i := bytes.LastIndexByte(b, ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 13 {
		return 0, fmt.Errorf("testenv: CPU time: cannot read %q", b)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("testenv: CPU time: cannot read %q", b)
	}
	// Clock ticks: USER_HZ is 100 on every Linux this runs on.
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
