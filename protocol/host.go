package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Host is the release runner's end of one worker conversation. It sends
// executions, matches results to them by id and reports a worker that went
// away to every caller still waiting.
type Host struct {
	w       io.WriteCloser
	writeMu sync.Mutex

	mu        sync.Mutex
	nextID    uint64
	waiting   map[uint64]chan Result
	logs      map[uint64]func([]LogRecord)             // OnLog of waiting executions that have one
	caches    map[uint64]func(CacheRequest) CacheReply // OnCache of waiting executions that have one
	abandoned int                                      // executions given up on after a cancel, maybe still running
	dead      error                                    // set once the worker's output ended
	done      chan struct{}                            // closed with dead
}

// ErrWorkerGone wraps every error of an execution whose worker went away
// before answering.
var ErrWorkerGone = errors.New("worker went away")

// ErrNotDelivered wraps the error of an execution that never reached a
// worker (no worker was up, or sending failed): the task cannot have run,
// so it is handed back rather than counted as lost.
var ErrNotDelivered = errors.New("execution not delivered to a worker")

// CancelWait is how long Execute waits for a result after asking the worker
// to cancel an execution; then it gives up on it.
const CancelWait = 2 * time.Second

// NewHost reads the worker's Hello from r (waiting at most timeout) and
// returns a Host that writes to w. It refuses a protocol version other than
// Version.
func NewHost(r io.Reader, w io.WriteCloser, timeout time.Duration) (*Host, Hello, error) {
	type first struct {
		h   Hello
		err error
	}
	got := make(chan first, 1)
	go func() {
		typ, body, err := ReadFrame(r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("worker exited or closed its pipe before saying hello")
			}
			got <- first{err: err}
			return
		}
		var h Hello
		if typ != TypeHello {
			got <- first{err: fmt.Errorf("worker's first message is %q, want %q", typ, TypeHello)}
			return
		}
		if err := json.Unmarshal(body, &h); err != nil {
			got <- first{err: fmt.Errorf("decode hello: %w", err)}
			return
		}
		got <- first{h: h}
	}()
	var f first
	select {
	case f = <-got:
	case <-time.After(timeout):
		return nil, Hello{}, fmt.Errorf("worker did not say hello within %v: is its main calling workflows.ServeReleaseModes (or speaking the worker protocol)?", timeout)
	}
	if f.err != nil {
		return nil, Hello{}, f.err
	}
	if f.h.Protocol != Version {
		return nil, f.h, fmt.Errorf("worker speaks protocol version %d; this release runner speaks %d", f.h.Protocol, Version)
	}
	h := &Host{w: w, waiting: map[uint64]chan Result{}, logs: map[uint64]func([]LogRecord){},
		caches: map[uint64]func(CacheRequest) CacheReply{}, done: make(chan struct{})}
	go h.readLoop(r)
	return h, f.h, nil
}

func (h *Host) readLoop(r io.Reader) {
	for {
		typ, body, err := ReadFrame(r)
		if err == nil && typ == TypeLog {
			if err = h.deliverLog(body); err == nil {
				continue
			}
		}
		if err == nil && typ == TypeCache {
			if err = h.serveCache(body); err == nil {
				continue
			}
		}
		if err == nil && typ != TypeResult {
			err = fmt.Errorf("unexpected %q message from the worker", typ)
		}
		var res Result
		if err == nil {
			if err = json.Unmarshal(body, &res); err != nil {
				err = fmt.Errorf("decode result: %w", err)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("worker closed its output")
			}
			h.fail(err)
			return
		}
		h.mu.Lock()
		ch := h.waiting[res.ID]
		delete(h.waiting, res.ID)
		delete(h.logs, res.ID)
		delete(h.caches, res.ID)
		h.mu.Unlock()
		if ch != nil {
			ch <- res
		}
	}
}

// deliverLog hands a Log message to its execution's OnLog; records of an
// execution nobody waits for any more are dropped.
func (h *Host) deliverLog(body []byte) error {
	var m Log
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("decode log message: %w", err)
	}
	h.mu.Lock()
	onLog := h.logs[m.ID]
	h.mu.Unlock()
	if onLog != nil && len(m.Records) > 0 {
		onLog(m.Records)
	}
	return nil
}

// serveCache answers a Cache request on a goroutine of its own (a slow
// cache must not hold up results and logs), with OnCache of its execution.
func (h *Host) serveCache(body []byte) error {
	var req CacheRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return fmt.Errorf("decode cache request: %w", err)
	}
	h.mu.Lock()
	onCache := h.caches[req.ID]
	h.mu.Unlock()
	go func() {
		reply := CacheReply{Error: fmt.Sprintf("job cache request for execution %d, which has no job cache through the runner (it is not running, or its Execute had no \"cache\": %q)", req.ID, CacheViaRunner)}
		if onCache != nil {
			reply = onCache(req)
		}
		reply.Type, reply.Req = TypeCacheReply, req.Req
		_ = h.write(reply) // a broken pipe shows in the read loop
	}()
	return nil
}

func (h *Host) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead != nil {
		return
	}
	h.dead = fmt.Errorf("%w: %w", ErrWorkerGone, err)
	close(h.done)
}

// Done is closed once the worker's output has ended.
func (h *Host) Done() <-chan struct{} { return h.done }

// Err is why the worker's output ended, or nil while it is open.
func (h *Host) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dead
}

// Outstanding is how many executions are waiting for a result.
func (h *Host) Outstanding() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.waiting)
}

func (h *Host) write(v any) error {
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	return WriteFrame(h.w, v)
}

// Execute sends x (its ID is assigned here) and waits for the result. When
// ctx ends first it sends a Cancel and waits up to CancelWait more. The
// error wraps ErrWorkerGone when the worker went away without answering.
// With x.Logs and x.OnLog set the worker is asked for the execution's log
// records, and OnLog receives those that arrive before the result.
func (h *Host) Execute(ctx context.Context, x Execute) (Result, error) {
	ch := make(chan Result, 1)
	h.mu.Lock()
	if h.dead != nil {
		err := h.dead
		h.mu.Unlock()
		return Result{}, fmt.Errorf("%w: %w", ErrNotDelivered, err)
	}
	h.nextID++
	x.ID, x.Type = h.nextID, TypeExecute
	h.waiting[x.ID] = ch
	if x.OnLog == nil {
		x.Logs = "" // nobody would receive them
	} else if x.Logs != "" {
		h.logs[x.ID] = x.OnLog
	}
	if x.OnCache != nil {
		h.caches[x.ID] = x.OnCache
	}
	h.mu.Unlock()
	forget := func() {
		h.mu.Lock()
		delete(h.waiting, x.ID)
		delete(h.logs, x.ID)
		delete(h.caches, x.ID)
		h.mu.Unlock()
	}
	if err := h.write(x); err != nil {
		forget()
		return Result{}, fmt.Errorf("%w: %w: send execution: %w", ErrNotDelivered, ErrWorkerGone, err)
	}
	// A result read just before the worker's output ended is already in ch:
	// prefer it to the end.
	gone := func() (Result, error) {
		select {
		case res := <-ch:
			return res, nil
		default:
		}
		forget()
		return Result{}, h.Err()
	}
	select {
	case res := <-ch:
		return res, nil
	case <-h.done:
		return gone()
	case <-ctx.Done():
	}
	if err := h.write(Cancel{Type: TypeCancel, ID: x.ID}); err != nil {
		forget()
		return Result{}, fmt.Errorf("%w: send cancel: %w", ErrWorkerGone, err)
	}
	t := time.NewTimer(CancelWait)
	defer t.Stop()
	select {
	case res := <-ch:
		return res, nil
	case <-h.done:
		return gone()
	case <-t.C:
		h.mu.Lock()
		delete(h.waiting, x.ID)
		delete(h.logs, x.ID)
		delete(h.caches, x.ID)
		h.abandoned++
		h.mu.Unlock()
		return Result{}, &AbandonedError{Wait: CancelWait, Cause: ctx.Err(), gone: h.done}
	}
}

// AbandonedError is the error of an execution Execute gave up on: the
// worker did not answer within Wait of being asked to cancel it, so it may
// still be running it. What the execution held (its GPU) must not be handed
// to another execution before Gone is closed.
type AbandonedError struct {
	Wait  time.Duration
	Cause error // why the execution was canceled
	gone  <-chan struct{}
}

func (e *AbandonedError) Error() string {
	return fmt.Sprintf("worker did not answer within %v of being asked to cancel: %v", e.Wait, e.Cause)
}

func (e *AbandonedError) Unwrap() error { return e.Cause }

// Gone is closed once the worker's output has ended: it exited or was
// killed (see Host.Abandoned), and runs the execution no more.
func (e *AbandonedError) Gone() <-chan struct{} { return e.gone }

// Abandoned reports whether Execute gave up on an execution the worker may
// still be running: such a worker must be killed, not left to finish, or
// the task could run twice at once.
func (h *Host) Abandoned() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.abandoned > 0
}

// Close closes the worker's input: the worker finishes what it runs,
// answers and exits. It does not wait for a write in progress, which may be
// stuck on a worker that stopped reading.
func (h *Host) Close() error {
	return h.w.Close()
}
