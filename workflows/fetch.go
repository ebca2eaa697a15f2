package workflows

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runfleet/runfleet/queue"
)

// How often a running runner does its upkeep.
const (
	trimEvery   = time.Second     // drop acknowledged stream entries
	orphanEvery = 5 * time.Second // re-claim own pending hints nothing local holds
)

// taskRef names one execution: a task of a job at one attempt. A retry of a
// task may be claimed before the commit of its previous attempt has been
// forgotten here, so executions, not tasks, are the unit.
type taskRef struct {
	job     string
	seq     int64
	attempt int
}

// holdings is what a runner holds locally. Every hint in it is pending (read,
// unacknowledged) in Redis under this runner's name, so if the process dies
// its pending hints show what it held.
type holdings struct {
	mu      sync.Mutex
	running map[taskRef]queue.Claimed // tasks executing or awaiting commit
	backlog []queue.Hint              // read beyond free slots, not claimed yet
	hints   map[string]struct{}       // stream+id of every hint held above
	count   atomic.Int64              // len(running), read without the lock
	freed   chan struct{}             // signalled when running shrinks
}

func newHoldings() *holdings {
	return &holdings{running: map[taskRef]queue.Claimed{}, hints: map[string]struct{}{}, freed: make(chan struct{}, 1)}
}

func hintKey(h queue.Hint) string { return h.Stream + "\x00" + h.ID }

// take removes up to n hints from the backlog.
func (l *holdings) take(n int) []queue.Hint {
	l.mu.Lock()
	defer l.mu.Unlock()
	n = min(n, len(l.backlog))
	out := l.backlog[:n:n]
	l.backlog = l.backlog[n:]
	return out
}

// remember records hints just read: batch is claimed now, extra waits.
func (l *holdings) remember(batch, extra []queue.Hint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range batch {
		l.hints[hintKey(h)] = struct{}{}
	}
	for _, h := range extra {
		l.hints[hintKey(h)] = struct{}{}
	}
	l.backlog = append(l.backlog, extra...)
}

// settle records the result of claiming batch: claimed tasks not already
// running start running; the rest of the batch is no longer held here (the
// claim acknowledged those hints, or left them pending after an error for
// the orphan scan). It returns the tasks to execute and the hints of
// duplicates to acknowledge.
func (l *holdings) settle(batch []queue.Hint, claimed []queue.Claimed) (start []queue.Claimed, dup []queue.Hint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range batch {
		delete(l.hints, hintKey(h))
	}
	for _, c := range claimed {
		ref := taskRef{c.JobID, c.Seq, c.Attempt}
		if _, ok := l.running[ref]; ok {
			dup = append(dup, c.Hint)
			continue
		}
		l.running[ref] = c
		l.hints[hintKey(c.Hint)] = struct{}{}
		start = append(start, c)
	}
	l.count.Store(int64(len(l.running)))
	return start, dup
}

// finish forgets committed tasks and frees their slots.
func (l *holdings) finish(done []queue.Claimed) {
	l.mu.Lock()
	for _, c := range done {
		delete(l.running, taskRef{c.JobID, c.Seq, c.Attempt})
		delete(l.hints, hintKey(c.Hint))
	}
	l.count.Store(int64(len(l.running)))
	l.mu.Unlock()
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

// orphans keeps the pending hints nothing local holds (a claim whose reply
// was lost, a commit that gave up) and queues them in the backlog.
func (l *holdings) orphans(pending []queue.Hint) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, h := range pending {
		if _, ok := l.hints[hintKey(h)]; ok {
			continue
		}
		l.hints[hintKey(h)] = struct{}{}
		l.backlog = append(l.backlog, h)
		n++
	}
	return n
}

// runningTasks lists the tasks executing or awaiting commit.
func (l *holdings) runningTasks() []queue.Claimed {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]queue.Claimed, 0, len(l.running))
	for _, c := range l.running {
		out = append(out, c)
	}
	return out
}

func (l *holdings) backlogLen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.backlog)
}

// run is the producer: it owns what the runner holds, reads hints for free
// slots only, claims them and hands them to a fixed pool of executors. A
// single completer goroutine commits results in batches.
func (r *Runner) run(ctx context.Context, cfg runConfig, untilIdle bool) error {
	// Work outlives the fetch context by the grace period; reads, claims and
	// commits use commitCtx: hints a read returned are this runner's to claim
	// even while it stops, or they would sit unacknowledged.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	commitCtx := context.WithoutCancel(ctx)
	stopNow := r.resetStop()

	// The heartbeat runs from the first moment the runner may hold a task
	// until it holds none; results are written while its lease holds.
	beat, err := r.startHeartbeat(ctx, cfg)
	if err != nil {
		return err
	}
	settled := false // set once this runner's pending entries are settled
	defer func() { beat.stop(commitCtx, settled) }()

	held := newHoldings()
	results := make(chan outcome, cfg.concurrency)
	completerDone := make(chan struct{})
	stopCompleter := make(chan struct{})
	go func() {
		defer close(completerDone)
		r.complete(commitCtx, results, held, beat.lease, stopCompleter)
	}()
	// A fixed pool of executors: goroutines that live across tasks keep the
	// stacks they have grown, where one goroutine per task grows a new one.
	work := make(chan queue.Claimed, cfg.concurrency+maxClaim)
	var execs sync.WaitGroup
	for range cfg.concurrency {
		execs.Add(1)
		go func() {
			defer execs.Done()
			for c := range work {
				results <- r.execute(workCtx, c)
			}
		}()
	}
	maintCtx, stopMaint := context.WithCancel(ctx)
	defer stopMaint()
	maintDone := make(chan struct{})
	go func() {
		defer close(maintDone)
		r.maintain(maintCtx, cfg)
	}()
	defer func() {
		abandoned := r.drain(ctx, cfg, held, cancelWork, stopNow)
		close(work)
		if abandoned {
			// Executors that ignore their canceled context are left to
			// finish on their own; what they held is handed back now.
			close(stopCompleter)
			<-completerDone
			r.handBack(commitCtx, held)
		} else {
			execs.Wait()
			close(results)
			<-completerDone
		}
		stopMaint()
		<-maintDone
		// Hints still pending under this runner (read but never claimed,
		// or claimed by a call whose reply was lost) are settled like a
		// dead runner's: acknowledging them blindly could strand a task
		// that such a claim left running under this runner.
		if _, err := r.client.q.SettleOwn(commitCtx, r.cluster, r.id, r.streams); err != nil {
			r.logger.Warn("settle this runner's pending hints failed; they are reclaimed once it is gone", slog.Any("error", err))
		} else {
			settled = true
		}
	}()

	block := time.Second
	if untilIdle {
		block = cfg.idleWait
	}
	// The waker ends a read blocked in Redis as soon as ctx is done.
	rd := &hintReader{r: r}
	defer rd.close()
	stopWaker := make(chan struct{})
	defer close(stopWaker)
	go rd.wakeOnCancel(ctx, commitCtx, stopWaker)

	backoff := 10 * time.Millisecond
	lastOrphans := time.Now()
	for ctx.Err() == nil {
		if time.Since(lastOrphans) > orphanEvery {
			lastOrphans = time.Now()
			if pending, err := r.client.q.ReadPending(commitCtx, r.id, r.streams, 1000); err == nil {
				if n := held.orphans(pending); n > 0 {
					r.logger.Info("recovering pending task hints of this runner", slog.Int("hints", n))
				}
			}
		}
		if gate, ok := r.remote.(ReadyGate); ok {
			// Claim nothing the executor could not start now.
			select {
			case <-gate.Ready():
			case <-ctx.Done():
				continue
			}
		}
		before := held.count.Load()
		free := int(int64(cfg.concurrency) - before)
		if free <= 0 {
			select {
			case <-held.freed:
			case <-ctx.Done():
			}
			continue
		}
		// At most maxClaim per claim keeps each call short in Redis.
		n := min(free, maxClaim)
		batch := held.take(n)
		read := 0
		if len(batch) == 0 {
			got, err := rd.read(commitCtx, n, block)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				r.logger.Warn("read task hints failed; backing off", slog.Any("error", err), slog.Duration("backoff", backoff))
				sleepCtx(ctx, jitter(backoff))
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			// COUNT applies per stream: a read can return more than n.
			read = len(got)
			batch = got[:min(n, len(got))]
			held.remember(batch, got[len(batch):])
		}
		claimed, err := r.client.q.Claim(commitCtx, r.id, batch)
		start, dup := held.settle(batch, claimed)
		if len(dup) > 0 {
			_ = r.client.q.Ack(commitCtx, dup)
		}
		for _, c := range start {
			work <- c
		}
		if err != nil {
			r.logger.Warn("claim tasks failed; backing off", slog.Any("error", err), slog.Duration("backoff", backoff))
			sleepCtx(ctx, jitter(backoff))
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		if untilIdle && read == 0 && len(batch) == 0 && before == 0 && held.backlogLen() == 0 {
			return nil
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// drain waits for tasks in flight: without limit while ctx is live (RunAll
// finished), else up to the grace period, or until StopNow. Then it cancels
// the tasks' context and gives them a moment to return; it reports whether
// some did not, so the caller hands them back.
func (r *Runner) drain(ctx context.Context, cfg runConfig, held *holdings, cancelWork context.CancelFunc, stopNow <-chan struct{}) (abandoned bool) {
	var deadline <-chan time.Time
	if ctx.Err() != nil {
		t := time.NewTimer(cfg.grace)
		defer t.Stop()
		deadline = t.C
	}
	for held.count.Load() > 0 {
		select {
		case <-held.freed:
			continue
		case <-deadline:
		case <-stopNow:
		}
		r.logger.Warn("stopping: handing back running tasks", slog.Int64("tasks", held.count.Load()))
		cancelWork()
		// Tasks that honour their context return now and are handed back by
		// the completer; the rest are abandoned.
		wait := time.NewTimer(abandonAfter)
		defer wait.Stop()
		for held.count.Load() > 0 {
			select {
			case <-held.freed:
			case <-wait.C:
				return true
			}
		}
		return false
	}
	return false
}

// abandonAfter is how long tasks get to return after their context is
// canceled at the end of a grace period.
const abandonAfter = 2 * time.Second

// handBack re-queues every task still held, without counting a retry, and
// acknowledges their hints.
func (r *Runner) handBack(ctx context.Context, held *holdings) {
	tasks := held.runningTasks()
	if len(tasks) == 0 {
		return
	}
	fails := make([]queue.Failure, len(tasks))
	hints := make([]queue.Hint, len(tasks))
	for i, c := range tasks {
		fails[i] = queue.Failure{JobID: c.JobID, Seq: c.Seq, Attempt: c.Attempt, HandBack: true,
			Error: "handed back: the runner stopped before the task finished"}
		hints[i] = c.Hint
	}
	if _, err := r.client.q.Fail(ctx, r.id, fails); err != nil {
		r.logger.Error("hand back running tasks failed; they are reclaimed when this runner's heartbeat expires", slog.Any("error", err))
		return
	}
	_ = r.client.q.Ack(ctx, hints)
	held.finish(tasks)
}

// hintReader reads on a dedicated connection (queue.Reader) so a blocked
// read can be woken when the runner stops; it reopens the connection after
// an error, and falls back to pooled reads where that is not possible.
type hintReader struct {
	r  *Runner
	mu sync.Mutex
	qr *queue.Reader
}

func (h *hintReader) read(ctx context.Context, count int, block time.Duration) ([]queue.Hint, error) {
	h.mu.Lock()
	qr := h.qr
	if qr == nil {
		var err error
		if qr, err = h.r.client.q.NewReader(ctx, h.r.id, h.r.streams); err == nil {
			h.qr = qr
		}
	}
	h.mu.Unlock()
	if qr == nil {
		return h.r.client.q.Read(ctx, h.r.id, h.r.streams, count, block)
	}
	hints, err := qr.Read(ctx, count, block)
	if err != nil {
		h.close()
	}
	return hints, err
}

// wakeOnCancel unblocks the reader once ctx is done, and keeps doing so
// until stop closes, in case a read started after the first wake-up.
func (h *hintReader) wakeOnCancel(ctx, bg context.Context, stop <-chan struct{}) {
	select {
	case <-ctx.Done():
	case <-stop:
		return
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		h.mu.Lock()
		if h.qr != nil {
			_ = h.qr.Unblock(bg)
		}
		h.mu.Unlock()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (h *hintReader) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.qr != nil {
		_ = h.qr.Close()
		h.qr = nil
	}
}
