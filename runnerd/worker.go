package runnerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/runfleet/runfleet/internal/backoff"
	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/rftype"
)

// worker supervises the worker process of one release: it starts it, checks
// its hello against the manifest, restarts it with backoff when it dies, and
// runs executions on whichever process is current.
type worker struct {
	path    string   // the entrypoint
	dir     string   // the unpacked release, the process's working directory
	env     []string // added to the runner's environment
	want    []rftype.TaskIdentifier
	logger  *slog.Logger
	timeout time.Duration // for the hello

	mu       sync.Mutex
	host     *protocol.Host
	ready    chan struct{} // closed once host is set; replaced while restarting
	closing  bool
	restarts int
	exited   chan struct{} // closed when the current process has exited
	cmd      *exec.Cmd
}

// restart backoff bounds; the backoff resets after a process stayed up for
// healthyAfter.
const (
	minRestartBackoff = 100 * time.Millisecond
	maxRestartBackoff = 10 * time.Second
	healthyAfter      = 30 * time.Second
	// waitForWorker bounds how long an execution waits for a restarting
	// worker before it counts as lost.
	waitForWorker = 30 * time.Second
	// exitWait is how long a worker whose input was closed may take to exit
	// before it is killed.
	exitWait = 10 * time.Second
)

// start starts the first process and waits for its hello; an error means
// the release cannot run here (bad binary, wrong tasks).
func (w *worker) start(ctx context.Context) error {
	w.mu.Lock()
	w.ready = make(chan struct{})
	w.mu.Unlock()
	if err := w.spawn(ctx); err != nil {
		return err
	}
	go w.supervise()
	return nil
}

// spawn starts one process and installs its Host.
func (w *worker) spawn(ctx context.Context) error {
	toWorker, fromHost, err := os.Pipe() // worker reads fd 3
	if err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	toHost, fromWorker, err := os.Pipe() // worker writes fd 4
	if err != nil {
		_ = toWorker.Close()
		_ = fromHost.Close()
		return fmt.Errorf("start worker: %w", err)
	}
	cmd := exec.Command(w.path)
	cmd.Dir = w.dir
	cmd.Env = append(os.Environ(), w.env...)
	cmd.ExtraFiles = []*os.File{toWorker, fromWorker} // fds 3 and 4
	out := &lineLogger{logger: w.logger}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = workerProcAttr()
	// A process the worker started may hold its output pipe open after the
	// worker died; do not wait for it to notice the death.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		for _, f := range []*os.File{toWorker, fromHost, toHost, fromWorker} {
			_ = f.Close()
		}
		return fmt.Errorf("start worker %s: %w", w.path, err)
	}
	_ = toWorker.Close()
	_ = fromWorker.Close()
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		// What the worker left running goes with it.
		killGroup(cmd.Process)
		out.flush()
		_ = toHost.Close()
		_ = fromHost.Close()
		if err != nil {
			w.logger.Debug("worker process exited", slog.Any("error", err))
		}
		close(exited)
	}()
	h, hello, err := protocol.NewHost(toHost, fromHost, w.timeout)
	if err == nil {
		err = w.checkHello(hello)
	}
	if err != nil {
		killGroup(cmd.Process)
		<-exited
		return fmt.Errorf("worker %s: %w", w.path, err)
	}
	w.mu.Lock()
	if w.closing {
		// stop ran while this process was starting: it never saw it.
		w.mu.Unlock()
		killGroup(cmd.Process)
		<-exited
		return errors.New("worker stopped while starting")
	}
	w.host, w.cmd, w.exited = h, cmd, exited
	close(w.ready)
	w.mu.Unlock()
	w.logger.Info("worker started", slog.Int("pid", cmd.Process.Pid))
	return nil
}

// checkHello compares what the binary serves with the manifest: a release
// whose binary disagrees with its manifest would claim tasks it cannot run.
func (w *worker) checkHello(h protocol.Hello) error {
	if got, want := taskSet(h.Tasks), taskSet(w.want); !slices.Equal(got, want) {
		return fmt.Errorf("the binary serves %v but the release manifest lists %v: the manifest disagrees with the binary; rebuild the release with `runfleet workflow build`", got, want)
	}
	return nil
}

// supervise restarts the process whenever it exits unless the worker is
// closing. Executions in flight on a dead process fail with
// protocol.ErrWorkerGone, and the runner queues them again.
func (w *worker) supervise() {
	restart := backoff.New(minRestartBackoff, maxRestartBackoff)
	for {
		w.mu.Lock()
		exited, started := w.exited, time.Now()
		w.mu.Unlock()
		<-exited
		w.mu.Lock()
		if w.closing {
			w.mu.Unlock()
			return
		}
		w.ready = make(chan struct{})
		w.host = nil
		w.mu.Unlock()
		if time.Since(started) > healthyAfter {
			restart.Reset()
		}
		for {
			w.logger.Warn("worker process exited; restarting it", slog.Duration("backoff", restart.Delay()))
			time.Sleep(restart.Next())
			w.mu.Lock()
			closing := w.closing
			w.mu.Unlock()
			if closing {
				return
			}
			err := w.spawn(context.Background())
			if err == nil {
				w.mu.Lock()
				w.restarts++
				w.mu.Unlock()
				break
			}
			w.logger.Error("worker restart failed", slog.Any("error", err))
		}
	}
}

// closedChan is a ready signal that never blocks.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Ready implements workflows.ReadyGate: closed while a worker process is
// up, so the release's runners claim nothing while it restarts.
func (w *worker) Ready() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing || w.ready == nil {
		return closedChan // stopping: let the runner go on to its own stop
	}
	return w.ready
}

// Execute runs x on the current process, waiting for a restarting one.
func (w *worker) Execute(ctx context.Context, x protocol.Execute) (protocol.Result, error) {
	w.mu.Lock()
	h, ready, closing := w.host, w.ready, w.closing
	w.mu.Unlock()
	if h == nil {
		if closing {
			return protocol.Result{}, fmt.Errorf("%w: the worker is stopping", protocol.ErrNotDelivered)
		}
		t := time.NewTimer(waitForWorker)
		defer t.Stop()
		select {
		case <-ready:
		case <-ctx.Done():
			return protocol.Result{}, fmt.Errorf("%w: the worker was not restarted before the runner stopped", protocol.ErrNotDelivered)
		case <-t.C:
			return protocol.Result{}, fmt.Errorf("%w: the worker was not restarted within %v", protocol.ErrNotDelivered, waitForWorker)
		}
		w.mu.Lock()
		h = w.host
		w.mu.Unlock()
		if h == nil {
			return protocol.Result{}, fmt.Errorf("%w: the worker exited again", protocol.ErrNotDelivered)
		}
	}
	return h.Execute(ctx, x)
}

// stop closes the worker's input so it finishes and exits, killing it after
// exitWait.
func (w *worker) stop() {
	w.mu.Lock()
	w.closing = true
	h, cmd, exited := w.host, w.cmd, w.exited
	w.mu.Unlock()
	if exited == nil {
		return
	}
	if h != nil && h.Abandoned() {
		// It may still run a task that was handed back and runs elsewhere
		// now: kill it rather than let it finish.
		w.logger.Warn("killing the worker: it still runs a task that was handed back")
		killGroup(cmd.Process)
		<-exited
		return
	}
	if h != nil {
		_ = h.Close()
	}
	select {
	case <-exited:
	case <-time.After(exitWait):
		w.logger.Warn("worker did not exit after its input closed; killing it")
		killGroup(cmd.Process)
		<-exited
	}
}

// pid is the current process id, 0 while none runs.
func (w *worker) pid() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.host == nil || w.cmd == nil {
		return 0
	}
	return w.cmd.Process.Pid
}

func (w *worker) restartCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.restarts
}

// lineLogger forwards a worker's output to the log, one record per line.
type lineLogger struct {
	mu     sync.Mutex
	logger *slog.Logger
	buf    []byte
}

// maxLogLine bounds a buffered line; longer output is logged in pieces.
const maxLogLine = 64 << 10

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			if len(l.buf) > maxLogLine {
				l.emit(l.buf)
				l.buf = l.buf[:0]
			}
			return len(p), nil
		}
		l.emit(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = nil
	}
}

func (l *lineLogger) emit(line []byte) {
	l.logger.Info("worker: " + string(bytes.TrimRight(line, "\r")))
}

var (
	errNoEntrypoint = errors.New("release has no entrypoint for this platform")
	errCacheInUse   = errors.New("cache directory in use by another process")
)
