package testenv

import (
	"os"
	"os/exec"
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
