package chaos

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/workflows"
)

// TestCheckOrder proves the ordering check of TestChaos finds what it looks
// for: a merge that started before a dependency's subtree ended, and a
// subtask that started before its parent committed.
func TestCheckOrder(t *testing.T) {
	at := func(ms int64) time.Time { return time.UnixMilli(1_800_000_000_000 + ms) }
	task := func(seq, parent int64, start, end int64, children, dependents []int64) workflows.TaskInfo {
		return workflows.TaskInfo{Seq: seq, Parent: parent, Name: "T", State: workflows.TaskComputed, Complete: true,
			Attempts: 1, FirstStartedAt: at(start), StartedAt: at(start), EndedAt: at(end),
			Children: children, Dependents: dependents}
	}
	// root 0 -> fan-outs 1, 2 and merge 3 (depends on 1 and 2); 1 -> leaf 4.
	good := []workflows.TaskInfo{
		task(0, -1, 0, 10, []int64{1, 2, 3}, nil),
		task(1, 0, 10, 20, []int64{4}, []int64{3}),
		task(2, 0, 10, 15, nil, []int64{3}),
		task(3, 0, 50, 55, nil, nil),
		task(4, 1, 20, 50, nil, nil),
	}
	require.Empty(t, checkOrder(good), "equal times are not a violation")

	early := append([]workflows.TaskInfo(nil), good...)
	early[3] = task(3, 0, 49, 55, nil, nil) // the merge starts before leaf 4 ended
	got := checkOrder(early)
	require.Len(t, got, 1)
	require.Contains(t, got[0], "dependent 3 T first started")
	require.Contains(t, got[0], "before its dependency 1 T was complete")

	orphan := append([]workflows.TaskInfo(nil), good...)
	orphan[4] = task(4, 1, 19, 50, nil, nil) // leaf 4 starts before task 1 committed it
	got = checkOrder(orphan)
	require.Len(t, got, 1)
	require.Contains(t, got[0], "subtask 4 T first started")
}
