package workflows

import (
	"sync"
	"sync/atomic"

	"github.com/runfleet/runfleet/queue"
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

// admit records the result of claiming batch: claimed tasks not already
// running start running; the rest of the batch is no longer held here (the
// claim acknowledged those hints, or left them pending after an error for
// the orphan scan). It returns the tasks to execute and the hints of
// duplicates to acknowledge.
func (l *holdings) admit(batch []queue.Hint, claimed []queue.Claimed) (start []queue.Claimed, dup []queue.Hint) {
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

// swap records a commit round trip: done executions are forgotten (their
// hints stay held until acknowledged, see forget), the hints taken for the
// claims are no longer held as hints, and the claimed tasks not already
// running start running. It returns the tasks to execute and the hints of
// duplicates to acknowledge. A batch that claims as many tasks as it
// commits leaves the count unchanged, so the producer sees no free slot.
func (l *holdings) swap(done []queue.Claimed, taken []queue.Hint, claimed []queue.Claimed) (start []queue.Claimed, dup []queue.Hint) {
	l.mu.Lock()
	for _, c := range done {
		delete(l.running, taskRef{c.JobID, c.Seq, c.Attempt})
	}
	for _, h := range taken {
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
	l.mu.Unlock()
	l.signal()
	return start, dup
}

// forget drops acknowledged hints (or hints left to the orphan scan).
func (l *holdings) forget(hints []queue.Hint) {
	if len(hints) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range hints {
		delete(l.hints, hintKey(h))
	}
}

// unread puts hints taken from the backlog back at its front: their claim
// failed and they are still pending under this runner.
func (l *holdings) unread(hints []queue.Hint) {
	if len(hints) == 0 {
		return
	}
	l.mu.Lock()
	for _, h := range hints {
		l.hints[hintKey(h)] = struct{}{}
	}
	l.backlog = append(append([]queue.Hint(nil), hints...), l.backlog...)
	l.mu.Unlock()
	l.signal()
}

func (l *holdings) signal() {
	select {
	case l.freed <- struct{}{}:
	default:
	}
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
	l.signal()
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
