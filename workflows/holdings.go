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
