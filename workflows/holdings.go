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

// holdings is what a runner holds locally. Every stream entry it holds
// tasks of is pending (read, unacknowledged) in Redis under this runner's
// name, so if the process dies its pending entries show what it held. An
// entry may name several tasks (queue.Hint); it is acknowledged only once
// every task of it is accounted for: committed, found stale, or handed on.
type holdings struct {
	mu           sync.Mutex
	running      map[taskRef]queue.Claimed // tasks executing or awaiting commit
	backlog      []queue.Hint              // read (whole entries or parts), not claimed yet
	backlogTasks int                       // tasks the backlog names
	entries      map[string]*heldEntry     // by queue.Hint.Key
	count        atomic.Int64              // len(running), read without the lock
	freed        chan struct{}             // signalled when running changes or hints are put back
	// gone records, per entry acknowledged lately, the ackGen its
	// acknowledgement was confirmed at: an orphan scan whose read started
	// before that may still list it as pending (see orphans).
	gone   map[string]uint64
	ackGen uint64
	// touched is set when hints are read or acknowledged: only then can
	// the runner's streams hold entries to trim (see maintain).
	touched atomic.Bool
}

// heldEntry counts the tasks of one pending entry still held here, in the
// backlog or running. At zero the entry is acknowledged (acking until that
// is confirmed, see acked), unless a commit of one of its tasks gave up
// (keep): then it stays pending for the orphan scan (or, once this runner is
// gone, a reclaimer) to settle.
type heldEntry struct {
	hint   queue.Hint
	left   int64
	keep   bool
	acking bool
}

func newHoldings() *holdings {
	return &holdings{running: map[taskRef]queue.Claimed{}, entries: map[string]*heldEntry{},
		gone: map[string]uint64{}, freed: make(chan struct{}, 1)}
}

// remember queues hints just read (or pending ones nothing here holds) in
// the backlog, and returns the malformed ones, to acknowledge.
func (l *holdings) remember(hints []queue.Hint) (acks []queue.Hint) {
	if len(hints) > 0 {
		l.touched.Store(true)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range hints {
		if _, ok := l.entries[h.Key()]; ok {
			continue
		}
		if h.Seq < 0 {
			acks = append(acks, h)
			continue
		}
		l.entries[h.Key()] = &heldEntry{hint: h, left: h.N}
		l.backlog = append(l.backlog, h)
		l.backlogTasks += int(h.N)
	}
	return acks
}

// take removes hints naming up to n tasks from the backlog, splitting an
// entry when it names more than are wanted.
func (l *holdings) take(n int) []queue.Hint {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []queue.Hint
	for n > 0 && len(l.backlog) > 0 {
		h := l.backlog[0]
		if h.N > int64(n) {
			first, rest := h.Split(int64(n))
			out = append(out, first)
			l.backlog[0] = rest
			l.backlogTasks -= n
			break
		}
		out = append(out, h)
		l.backlog = l.backlog[1:]
		l.backlogTasks -= int(h.N)
		n -= int(h.N)
	}
	return out
}

// handOn removes from the backlog the tasks beyond keep of the entries in
// fresh (those a read just returned) and returns them as hints (parts of
// their entries, still counted): this runner would sit on them, so they are
// to be published again for other runners (queue.Repost); then drop stops
// counting them. Entries the orphan scan or a failed claim put back are never
// handed on: their tasks may be running under this runner in Redis.
func (l *holdings) handOn(keep int, fresh map[string]bool) []queue.Hint {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.backlogTasks <= keep {
		return nil
	}
	var kept, parts []queue.Hint
	left, total := keep, 0
	for _, h := range l.backlog {
		if left >= int(h.N) || !fresh[h.Key()] {
			kept = append(kept, h)
			left = max(0, left-int(h.N))
			total += int(h.N)
			continue
		}
		first, rest := h.Split(int64(left))
		if first.N > 0 {
			kept = append(kept, first)
			total += int(first.N)
		}
		left = 0
		parts = append(parts, rest)
	}
	l.backlog = kept
	l.backlogTasks = total
	return parts
}

// drop stops counting the tasks of parts handed on, and returns the
// entries left with nothing, to acknowledge.
func (l *holdings) drop(parts []queue.Hint) (acks []queue.Hint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range parts {
		acks = l.release(h, h.N, acks)
	}
	return acks
}

// release stops counting n tasks of h's entry; an entry left with none is
// forgotten and, unless kept, appended to acks.
func (l *holdings) release(h queue.Hint, n int64, acks []queue.Hint) []queue.Hint {
	e, ok := l.entries[h.Key()]
	if !ok {
		return acks
	}
	e.left -= n
	if e.left > 0 || e.acking {
		return acks
	}
	if e.keep {
		delete(l.entries, h.Key())
		return acks
	}
	e.acking = true
	return append(acks, e.hint)
}

// acked records the outcome of acknowledging entries. Confirmed ones are
// forgotten and noted in gone; after a failure they are forgotten only, so
// the orphan scan finds them still pending and settles them.
func (l *holdings) acked(hints []queue.Hint, ok bool) {
	if len(hints) == 0 {
		return
	}
	if ok {
		l.touched.Store(true)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ackGen++
	for _, h := range hints {
		if e, found := l.entries[h.Key()]; found && e.acking {
			delete(l.entries, h.Key())
		}
		if ok {
			l.gone[h.Key()] = l.ackGen
		}
	}
}

// scanMark is taken before an orphan scan reads this runner's pending
// entries; orphans uses it to skip entries acknowledged since.
func (l *holdings) scanMark() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ackGen
}

// swap records one round trip: done executions are forgotten (committed or
// not), the tasks claimed for the taken hints start running unless they
// already are, and every task of a taken hint that was not claimed stops
// counting. It returns the tasks to execute and the entries to acknowledge.
// A batch that claims as many tasks as it commits leaves the count
// unchanged, so the producer sees no free slot.
func (l *holdings) swap(done []queue.Claimed, committed bool, taken []queue.Hint, claimed []queue.Claimed) (start []queue.Claimed, acks []queue.Hint) {
	l.mu.Lock()
	finished := make(map[taskRef]bool, len(done))
	for _, c := range done {
		ref := taskRef{c.JobID, c.Seq, c.Attempt}
		finished[ref] = true
		delete(l.running, ref)
		if !committed {
			if e, ok := l.entries[c.Hint.Key()]; ok {
				e.keep = true
			}
		}
		acks = l.release(c.Hint, 1, acks)
	}
	// Per taken part, the tasks now running. A claimed task's Hint is the
	// very part it was claimed through (queue.CommitAndClaim), so no search.
	type partID struct {
		stream, id string
		seq        int64
	}
	partOf := func(h queue.Hint) partID { return partID{h.Stream, h.ID, h.Seq} }
	started := map[partID]int64{}
	for _, c := range claimed {
		ref := taskRef{c.JobID, c.Seq, c.Attempt}
		if _, ok := l.running[ref]; ok || finished[ref] {
			// A duplicate: already running, or the execution that just
			// finished (a failure recorded after this claim). Counted as
			// not claimed below.
			continue
		}
		l.running[ref] = c
		start = append(start, c)
		started[partOf(c.Hint)]++
	}
	for _, h := range taken {
		if h.Seq < 0 {
			acks = append(acks, h)
			continue
		}
		if n := h.N - started[partOf(h)]; n > 0 {
			acks = l.release(h, n, acks)
		}
	}
	l.count.Store(int64(len(l.running)))
	l.mu.Unlock()
	l.signal()
	return start, acks
}

// unread puts hints taken from the backlog back at its front: their claim
// failed and they are still pending under this runner.
func (l *holdings) unread(hints []queue.Hint) {
	if len(hints) == 0 {
		return
	}
	l.mu.Lock()
	n := 0
	for _, h := range hints {
		n += int(h.N)
	}
	l.backlog = append(append([]queue.Hint(nil), hints...), l.backlog...)
	l.backlogTasks += n
	l.mu.Unlock()
	l.signal()
}

func (l *holdings) signal() {
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

// orphans queues the pending entries nothing here holds (a claim whose
// reply was lost, a commit that gave up) in the backlog, skipping those
// acknowledged since mark (the read may predate the acknowledgement). It
// returns how many it queued and the malformed ones to acknowledge.
func (l *holdings) orphans(pending []queue.Hint, mark uint64) (int, []queue.Hint) {
	l.mu.Lock()
	var fresh []queue.Hint
	n := 0
	for _, h := range pending {
		if _, ok := l.entries[h.Key()]; ok || l.gone[h.Key()] > mark {
			continue
		}
		fresh = append(fresh, h)
		if h.Seq >= 0 {
			n++
		}
	}
	for k, g := range l.gone {
		if g <= mark {
			delete(l.gone, k) // acknowledged before the read: it cannot list it
		}
	}
	l.mu.Unlock()
	return n, l.remember(fresh)
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

// backlogLen is how many tasks the backlog names.
func (l *holdings) backlogLen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.backlogTasks
}
