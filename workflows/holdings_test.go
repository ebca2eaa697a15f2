package workflows

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/queue"
)

func runHint(id string, seq, n int64) queue.Hint {
	return queue.Hint{Stream: "s", ID: id, JobID: "j", Seq: seq, N: n, Total: n}
}

func claimedFrom(h queue.Hint, seqs ...int64) []queue.Claimed {
	var out []queue.Claimed
	for _, s := range seqs {
		out = append(out, queue.Claimed{JobID: h.JobID, Seq: s, Attempt: 1, Hint: h})
	}
	return out
}

// An entry naming several tasks is acknowledged only once every task of it
// taken here is accounted for, however it was split.
func TestHoldingsAcknowledgeAnEntryOnceAllItsTasksAreDone(t *testing.T) {
	l := newHoldings()
	e := runHint("1-0", 10, 5) // tasks 10..14
	require.Empty(t, l.remember([]queue.Hint{e}))
	require.Equal(t, 5, l.backlogLen())

	a := l.take(2)
	require.Len(t, a, 1)
	require.Equal(t, int64(10), a[0].Seq)
	require.Equal(t, int64(2), a[0].N)
	require.False(t, a[0].Whole())
	require.Equal(t, 3, l.backlogLen())

	// Task 11 was stale: only 10 runs; nothing to acknowledge yet.
	start, acks := l.swap(nil, true, a, claimedFrom(a[0], 10))
	require.Len(t, start, 1)
	require.Empty(t, acks)

	b := l.take(10)
	require.Len(t, b, 1)
	require.Equal(t, int64(12), b[0].Seq)
	require.Equal(t, int64(3), b[0].N)
	start, acks = l.swap(start, true, b, claimedFrom(b[0], 12, 13, 14))
	require.Len(t, start, 3)
	require.Empty(t, acks, "12..14 still run")

	_, acks = l.swap(start[:2], true, nil, nil)
	require.Empty(t, acks)
	_, acks = l.swap(start[2:], true, nil, nil)
	require.Len(t, acks, 1)
	require.Equal(t, "1-0", acks[0].ID)
	require.Equal(t, int64(0), l.count.Load())
}

// A commit that gave up keeps the entry pending: acknowledging it would
// hide a task still running under this runner in Redis.
func TestHoldingsKeepAnEntryWhoseCommitGaveUp(t *testing.T) {
	l := newHoldings()
	e := runHint("1-0", 0, 2)
	l.remember([]queue.Hint{e})
	parts := l.take(2)
	start, _ := l.swap(nil, true, parts, claimedFrom(parts[0], 0, 1))
	_, acks := l.swap(start[:1], false, nil, nil)
	require.Empty(t, acks)
	_, acks = l.swap(start[1:], true, nil, nil)
	require.Empty(t, acks, "left pending for the orphan scan")

	// The orphan scan finds it again as pending and nothing holds it now.
	n, bad := l.orphans([]queue.Hint{e, {Stream: "s", ID: "2-0", Seq: -1, N: 1, Total: 1}}, l.scanMark())
	require.Equal(t, 1, n)
	require.Len(t, bad, 1, "a malformed pending entry is acknowledged")
	require.Equal(t, 2, l.backlogLen())
}

// Tasks read beyond what the runner keeps are handed on, and stop counting
// towards their entry once reposted.
func TestHoldingsHandOnTasksBeyondWhatTheyKeep(t *testing.T) {
	l := newHoldings()
	l.remember([]queue.Hint{runHint("1-0", 0, 16), runHint("2-0", 16, 4)})
	parts := l.handOn(5, map[string]bool{"s\x001-0": true, "s\x002-0": true})
	require.Equal(t, 5, l.backlogLen())
	require.Len(t, parts, 2)
	require.Equal(t, int64(5), parts[0].Seq)
	require.Equal(t, int64(11), parts[0].N)
	require.Equal(t, "2-0", parts[1].ID)

	acks := l.drop(parts)
	require.Len(t, acks, 1, "2-0 has nothing left here")
	require.Equal(t, "2-0", acks[0].ID)

	kept := l.take(5)
	start, acks := l.swap(nil, true, kept, claimedFrom(kept[0], 0, 1, 2, 3, 4))
	require.Empty(t, acks)
	_, acks = l.swap(start, true, nil, nil)
	require.Len(t, acks, 1)
	require.Equal(t, "1-0", acks[0].ID)
}

// A failed claim puts its hints back in front of the backlog, still counted.
func TestHoldingsUnreadKeepsOrder(t *testing.T) {
	l := newHoldings()
	l.remember([]queue.Hint{runHint("1-0", 0, 1), runHint("2-0", 1, 1)})
	first := l.take(1)
	l.unread(first)
	again := l.take(2)
	require.Equal(t, "1-0", again[0].ID)
	require.Equal(t, "2-0", again[1].ID)
}

// An entry waiting for its acknowledgement, or acknowledged after an orphan
// scan read the pending list, is not taken back by that scan.
func TestHoldingsOrphanScanSkipsEntriesBeingAcknowledged(t *testing.T) {
	l := newHoldings()
	e := runHint("1-0", 0, 1)
	l.remember([]queue.Hint{e})
	parts := l.take(1)
	start, _ := l.swap(nil, true, parts, claimedFrom(parts[0], 0))
	_, acks := l.swap(start, true, nil, nil)
	require.Len(t, acks, 1)

	mark := l.scanMark()
	n, _ := l.orphans([]queue.Hint{e}, mark) // acknowledgement not confirmed yet
	require.Zero(t, n)
	l.acked(acks, true)
	n, _ = l.orphans([]queue.Hint{e}, mark) // the read predates the acknowledgement
	require.Zero(t, n)
	require.Zero(t, l.backlogLen())

	// A failed acknowledgement leaves the entry to the orphan scan.
	e2 := runHint("2-0", 1, 1)
	l.remember([]queue.Hint{e2})
	parts = l.take(1)
	start, _ = l.swap(nil, true, parts, claimedFrom(parts[0], 1))
	_, acks = l.swap(start, true, nil, nil)
	l.acked(acks, false)
	n, _ = l.orphans([]queue.Hint{e2}, l.scanMark())
	require.Equal(t, 1, n)
}

// Entries put back by the orphan scan or a failed claim may name tasks
// running here in Redis: they are never handed on.
func TestHoldingsHandOnOnlyFreshEntries(t *testing.T) {
	l := newHoldings()
	l.remember([]queue.Hint{runHint("1-0", 0, 16)})
	require.Empty(t, l.handOn(2, map[string]bool{"s\x009-0": true}))
	require.Equal(t, 16, l.backlogLen())
}

// A claim that hands out again the execution that just finished (its
// failure is recorded after the claim) does not start it twice.
func TestHoldingsDoNotRestartTheExecutionThatJustFinished(t *testing.T) {
	l := newHoldings()
	l.remember([]queue.Hint{runHint("1-0", 0, 1), runHint("2-0", 0, 1)})
	first := l.take(1)
	start, _ := l.swap(nil, true, first, claimedFrom(first[0], 0))
	again := l.take(1) // a duplicate hint of the same task
	restarted, acks := l.swap(start, true, again, claimedFrom(again[0], 0))
	require.Empty(t, restarted)
	require.Len(t, acks, 2, "both entries are accounted for")
	require.Zero(t, l.count.Load())
}
