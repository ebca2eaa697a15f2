package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"sync"
	"syscall"

	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/rftype"
)

// ServeReleaseModes makes a program usable as a workflow release. Call it
// first thing in main with every task the program runs:
//
//	func main() {
//		workflows.ServeReleaseModes(&Resize{}, &Upload{})
//		// … the program as a direct runner, or anything else …
//	}
//
// Without the RUNFLEET_MODE environment variable it returns at once. A
// release runner (runnerd) and `runfleet workflow build` start the program
// with RUNFLEET_MODE set; ServeReleaseModes then serves that mode and exits
// the process: "describe" prints the task identifiers as JSON, "worker"
// executes tasks for runnerd over the worker protocol (package
// protocol) until runnerd closes its pipe.
func ServeReleaseModes(tasks ...Task) {
	mode := os.Getenv(protocol.ModeEnv)
	if mode == "" {
		return
	}
	os.Exit(serveMode(mode, tasks, os.Stdout, os.Stderr))
}

func serveMode(mode string, tasks []Task, stdout, stderr io.Writer) int {
	reg, err := newRegistry(tasks)
	if err == nil && len(reg.ids) == 0 {
		err = errors.New("no tasks given to workflows.ServeReleaseModes")
	}
	if err != nil {
		fmt.Fprintf(stderr, "runfleet %s mode: %v\n", mode, err)
		return 1
	}
	switch mode {
	case protocol.ModeDescribe:
		b, _ := json.Marshal(protocol.Describe{Protocol: protocol.Version, Tasks: reg.describe()})
		if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
			return 1
		}
		return 0
	case protocol.ModeWorker:
		in := os.NewFile(protocol.WorkerInFD, "runfleet-worker-in")
		out := os.NewFile(protocol.WorkerOutFD, "runfleet-worker-out")
		// Processes a task starts must not inherit the protocol pipes: they
		// would keep them open after this worker exits.
		syscall.CloseOnExec(protocol.WorkerInFD)
		syscall.CloseOnExec(protocol.WorkerOutFD)
		if _, err := in.Stat(); err != nil {
			fmt.Fprintf(stderr, "runfleet worker mode: file descriptor %d is not open: worker mode is started by a release runner (runnerd), which passes its pipes as fds %d and %d\n",
				protocol.WorkerInFD, protocol.WorkerInFD, protocol.WorkerOutFD)
			return 2
		}
		defer startWorkerTelemetry(stderr)()
		if err := serveWorker(context.Background(), reg, in, out); err != nil {
			fmt.Fprintf(stderr, "runfleet worker: %v\n", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(stderr, "runfleet: unknown %s=%q; the modes are %q and %q\n", protocol.ModeEnv, mode,
			protocol.ModeDescribe, protocol.ModeWorker)
		return 2
	}
}

// describe lists the registered identifiers in registration order.
func (reg *registry) describe() []rftype.TaskIdentifier {
	out := make([]rftype.TaskIdentifier, len(reg.ids))
	for i, id := range reg.ids {
		out[i] = id.TaskIdentifier()
	}
	return out
}

// serveWorker is the worker side of the protocol: hello, then executions
// until in ends, then the remaining results.
func serveWorker(ctx context.Context, reg *registry, in io.Reader, out io.Writer) error {
	w := &workerConn{out: out}
	if err := w.send(protocol.Hello{Type: protocol.TypeHello, Protocol: protocol.Version, Tasks: reg.describe()}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	var (
		mu      sync.Mutex
		running = map[uint64]context.CancelFunc{}
		wg      sync.WaitGroup
	)
	defer func() {
		// The release runner is gone or done: interrupt what still runs.
		mu.Lock()
		for _, cancel := range running {
			cancel()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		typ, body, err := protocol.ReadFrame(in)
		if errors.Is(err, io.EOF) {
			// Closed by runnerd: finish what runs, answer, exit.
			wg.Wait()
			return w.err()
		}
		if err != nil {
			return err
		}
		switch typ {
		case protocol.TypeExecute:
			var x protocol.Execute
			if err := json.Unmarshal(body, &x); err != nil {
				return fmt.Errorf("decode execute message: %w", err)
			}
			mu.Lock()
			if _, dup := running[x.ID]; dup {
				mu.Unlock()
				return fmt.Errorf("execute message reuses id %d of a running execution", x.ID)
			}
			xctx, cancel := context.WithCancel(ctx)
			running[x.ID] = cancel
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := runWorkerTask(xctx, reg, x, w)
				mu.Lock()
				delete(running, x.ID)
				mu.Unlock()
				cancel()
				if err := w.send(res); errors.Is(err, protocol.ErrFrameSize) {
					// Too big to send: fail the execution, keep the worker.
					_ = w.send(protocol.Result{Type: protocol.TypeResult, ID: x.ID, Error: fmt.Sprintf(
						"the task's result (its subtasks, progress and display) is over the worker protocol's %d MiB frame limit; submit fewer or smaller subtasks, or keep large inputs in object storage",
						protocol.MaxFrame>>20)})
				}
				// Any other error is a broken pipe: runnerd is gone and
				// re-queues what this worker held.
			}()
		case protocol.TypeCacheReply:
			var m protocol.CacheReply
			if err := json.Unmarshal(body, &m); err != nil {
				return fmt.Errorf("decode cache reply: %w", err)
			}
			w.replies.deliver(m)
		case protocol.TypeCancel:
			var m protocol.Cancel
			if err := json.Unmarshal(body, &m); err != nil {
				return fmt.Errorf("decode cancel message: %w", err)
			}
			mu.Lock()
			if cancel := running[m.ID]; cancel != nil {
				cancel()
			}
			mu.Unlock()
		default:
			return fmt.Errorf("unexpected %q message from the release runner", typ)
		}
	}
}

// workerConn serialises result frames.
type workerConn struct {
	mu      sync.Mutex
	out     io.Writer
	failure error
	replies cacheReplies // job cache requests waiting for the runner (jobcache.go)
}

func (w *workerConn) send(v any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failure != nil {
		return w.failure
	}
	err := protocol.WriteFrame(w.out, v)
	if err != nil && !errors.Is(err, protocol.ErrFrameSize) {
		w.failure = err // the pipe is broken: nothing more gets through
	}
	return err
}

func (w *workerConn) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failure
}

// runWorkerTask executes one task in the worker process and builds its
// result; it never fails the conversation, only the execution.
func runWorkerTask(ctx context.Context, reg *registry, x protocol.Execute, w *workerConn) protocol.Result {
	res := protocol.Result{Type: protocol.TypeResult, ID: x.ID}
	id, err := x.Task.Parse()
	if err != nil {
		res.Error = fmt.Sprintf("worker: %v", err)
		return res
	}
	r, ok := reg.lookup(id)
	if !ok || r.typ == nil {
		res.Error = fmt.Sprintf("worker has no task registered that can run %s", id)
		return res
	}
	inputs, input, err := workerInputs(ctx, x)
	if err != nil {
		res.Error = fmt.Sprintf("input of task %s: %v", id, err)
		return res
	}
	ptr := reflect.New(r.typ)
	if err := decodeInput(input, ptr.Interface()); err != nil {
		res.Error = fmt.Sprintf("decode input of task %s: %v", id, err)
		return res
	}
	e := &execution{inputs: inputs, cluster: x.Cluster, info: CurrentTaskInfo{
		JobID: x.JobID, TaskID: x.TaskID, Attempt: x.Attempt, Cluster: x.Cluster, RunnerID: x.RunnerID, Release: x.Release,
		Identifier: id.TaskIdentifier(), Devices: x.Devices}}
	if e.cache, err = workerCache(x, w); err != nil {
		res.Error = fmt.Sprintf("worker: %v", err)
		return res
	}
	if x.Logs != "" && e.logLevel.UnmarshalText([]byte(x.Logs)) == nil {
		// The release runner takes the task's records (Logger).
		e.logOut, e.wireID = workerLogs{w}, x.ID
	}
	err = runTask(context.WithValue(workerTraceContext(ctx, x), execKey{}, e), ptr.Interface().(Task))
	if err == nil {
		err = e.err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	res.Display = e.display
	for label, c := range e.progress {
		res.Progress = append(res.Progress, protocol.Progress{Label: label, Add: c[0], Done: c[1]})
	}
	if err != nil {
		res.Error, res.Stack = err.Error(), panicStack(err)
		if res.Error == "" {
			res.Error = "task failed with an empty error"
		}
		slog.Debug("task failed", slog.String("job_id", x.JobID), slog.Int64("task_id", x.TaskID), slog.Any("error", err))
		return res
	}
	res.Subtasks = make([]protocol.Subtask, len(e.subtasks))
	for i, s := range e.subtasks {
		res.Subtasks[i] = protocol.Subtask{Task: s.Task.TaskIdentifier(),
			Cluster: s.Cluster, Input: s.Input, MaxRetries: s.MaxRetries, Optional: s.Optional, Deps: s.Deps}
		if ref, stored, _ := queue.ParsePayloadRef(s.Input); stored {
			res.Subtasks[i].Input, res.Subtasks[i].InputPayload = nil, wirePayloadRef(ref)
		}
	}
	return res
}
