// Command summary prints medians and ranges of the runs a peerbench run
// recorded in $PEERBENCH_OUT: per task count and concurrency, tasks/s and
// Redis CPU per task of runfleet and asynq, the ratio of each pair, and
// where the Redis time went (median µs per task per command, and per
// function or script for profile runs).
//
//	PEERBENCH_OUT=/tmp/peer.jsonl go test -run '^$' -bench . -benchtime 1x -count 5
//	go run ./summary /tmp/peer.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/runfleet/runfleet/internal/peerbench"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./summary FILE (the PEERBENCH_OUT file of a benchmark run)")
		os.Exit(2)
	}
	runs, err := load(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "summary:", err)
		os.Exit(1)
	}
	summarize(runs)
}

func load(path string) ([]peerbench.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []peerbench.Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var r peerbench.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

type key struct {
	profile     bool
	tasks, conc int
}

func summarize(runs []peerbench.Result) {
	groups := map[key][]peerbench.Result{}
	var keys []key
	for _, r := range runs {
		k := key{r.Profile, r.Tasks, r.Concurrency}
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], r)
	}
	slices.SortFunc(keys, func(a, b key) int {
		switch {
		case a.profile != b.profile:
			if a.profile {
				return 1
			}
			return -1
		case a.tasks != b.tasks:
			return a.tasks - b.tasks
		}
		return a.conc - b.conc
	})
	for _, k := range keys {
		rs := groups[k]
		mode := "side by side"
		if k.profile {
			mode = "profile (every command in SLOWLOG)"
		}
		fmt.Printf("== %d tasks, concurrency %d, %s\n", k.tasks, k.conc, mode)
		bySys := map[string][]peerbench.Result{}
		for _, r := range rs {
			bySys[r.System] = append(bySys[r.System], r)
		}
		for _, sys := range []string{"runfleet", "asynq"} {
			s := bySys[sys]
			if len(s) == 0 {
				continue
			}
			fmt.Printf("%-8s %d runs: %s tasks/s, Redis CPU %s µs/task, process CPU %s µs/task, submit took %s ms\n", sys, len(s),
				stat(s, func(r peerbench.Result) float64 { return r.TasksPerSec() }, "%.0f"),
				stat(s, func(r peerbench.Result) float64 { return r.RedisCPUPerTask() }, "%.1f"),
				stat(s, func(r peerbench.Result) float64 { return r.ProcCPUPerTask() }, "%.1f"),
				stat(s, func(r peerbench.Result) float64 { return float64(r.Enqueue.Microseconds()) / 1000 }, "%.0f"))
		}
		if ratios := pairRatios(rs); len(ratios) > 0 {
			fmt.Printf("runfleet/asynq tasks/s, %d pairs: %s\n", len(ratios), describe(ratios, "%.2f"))
		}
		for _, sys := range []string{"runfleet", "asynq"} {
			s := bySys[sys]
			if len(s) == 0 {
				continue
			}
			if k.profile {
				fmt.Printf("%s per function, median Redis µs per task (calls per task):\n%s", sys,
					table(s, func(r peerbench.Result) []peerbench.CommandStat { return r.Functions }, 10, true))
				fmt.Printf("%s inside functions:\n%s", sys,
					table(s, func(r peerbench.Result) []peerbench.CommandStat { return r.Inside }, 12, true))
			} else {
				fmt.Printf("%s INFO commandstats, median Redis µs per task (calls per task):\n%s", sys,
					table(s, func(r peerbench.Result) []peerbench.CommandStat { return r.Commands }, 10, false))
			}
		}
		fmt.Println()
	}
}

// pairRatios is runfleet's tasks/s over asynq's for every complete pair.
func pairRatios(rs []peerbench.Result) []float64 {
	by := map[int]map[string]peerbench.Result{}
	var pairs []int
	for _, r := range rs {
		if by[r.Pair] == nil {
			by[r.Pair] = map[string]peerbench.Result{}
			pairs = append(pairs, r.Pair)
		}
		by[r.Pair][r.System] = r
	}
	var out []float64
	for _, p := range pairs {
		rf, ok1 := by[p]["runfleet"]
		aq, ok2 := by[p]["asynq"]
		if ok1 && ok2 {
			out = append(out, rf.TasksPerSec()/aq.TasksPerSec())
		}
	}
	return out
}

func stat(rs []peerbench.Result, f func(peerbench.Result) float64, format string) string {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return describe(v, format)
}

// describe is "median (min to max)".
func describe(v []float64, format string) string {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v) == 1 {
		return fmt.Sprintf(format, v[0])
	}
	return fmt.Sprintf(format+" ("+format+" to "+format+")", median(v), v[0], v[len(v)-1])
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// table lists the k commands with the highest median µs per task.
// With withSum it adds a row with the sum of all medians; commandstats gets
// none, since it counts the commands a function calls twice (on their own
// line and inside the FCALL or EVALSHA).
func table(rs []peerbench.Result, list func(peerbench.Result) []peerbench.CommandStat, k int, withSum bool) string {
	usec, calls := map[string][]float64{}, map[string][]float64{}
	for _, r := range rs {
		for _, c := range list(r) {
			usec[c.Name] = append(usec[c.Name], float64(c.Usec)/float64(r.Tasks))
			calls[c.Name] = append(calls[c.Name], float64(c.Calls)/float64(r.Tasks))
		}
	}
	type row struct {
		name        string
		usec, calls float64
	}
	var rows []row
	var total float64
	for name, u := range usec {
		// A command missing from a run counts as zero there.
		for len(u) < len(rs) {
			u = append(u, 0)
		}
		c := calls[name]
		for len(c) < len(rs) {
			c = append(c, 0)
		}
		slices.Sort(u)
		slices.Sort(c)
		rows = append(rows, row{name, median(u), median(c)})
		total += median(u)
	}
	slices.SortFunc(rows, func(a, b row) int {
		if a.usec != b.usec {
			if a.usec > b.usec {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	var sb strings.Builder
	for i, r := range rows {
		if i == k {
			break
		}
		fmt.Fprintf(&sb, "  %-40s %7.2f µs  (%.3f calls)\n", r.name, r.usec, r.calls)
	}
	if withSum {
		fmt.Fprintf(&sb, "  %-40s %7.2f µs\n", "(sum of medians, all rows)", total)
	}
	return sb.String()
}
