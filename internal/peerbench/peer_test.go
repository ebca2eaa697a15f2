package peerbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
)

// One redis-server for the whole test binary, so every run of every
// benchmark shares it; started by the first benchmark that asks.
var (
	serverOnce sync.Once
	server     *testenv.Redis
	serverDir  string
	serverErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if server != nil {
		server.Stop()
		_ = os.RemoveAll(serverDir)
	}
	os.Exit(code)
}

// harness connects to the shared redis-server, starting it on first use.
func harness(b *testing.B, profile bool) *Harness {
	b.Helper()
	serverOnce.Do(func() {
		if serverDir, serverErr = os.MkdirTemp("", "peerbench-"); serverErr != nil {
			return
		}
		server, serverErr = testenv.StartRedis(context.Background(), serverDir)
	})
	require.NoError(b, serverErr)
	h, err := New(context.Background(), server.Addr)
	require.NoError(b, err)
	b.Cleanup(func() { _ = h.Close() })
	h.Profile = profile
	return h
}

// ints reads a comma-separated list of positive integers from env, else def.
func ints(b *testing.B, env string, def ...int) []int {
	b.Helper()
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		require.NoError(b, err, "%s=%q: want comma-separated integers", env, v)
		require.Positive(b, n, "%s=%q", env, v)
		out = append(out, n)
	}
	return out
}

func taskCounts(b *testing.B) []int {
	if testing.Short() {
		return ints(b, "PEERBENCH_TASKS", 20_000)
	}
	return ints(b, "PEERBENCH_TASKS", 20_000, 100_000)
}

func concurrencies(b *testing.B) []int { return ints(b, "PEERBENCH_CONCURRENCY", 8, 1024) }

// pairs counts the pairs run so far in this process: even pairs start with
// runfleet, odd ones with asynq.
var pairs int

// runPair runs both systems once, in alternating order, and records them.
func runPair(b *testing.B, h *Harness, tasks, conc int) (rf, aq Result) {
	b.Helper()
	order := []string{"runfleet", "asynq"}
	if pairs%2 == 1 {
		order[0], order[1] = order[1], order[0]
	}
	pairs++
	for _, sys := range order {
		r, err := h.Run(context.Background(), sys, tasks, conc)
		require.NoError(b, err)
		r.Pair = pairs
		record(b, r)
		if sys == "runfleet" {
			rf = r
		} else {
			aq = r
		}
	}
	return rf, aq
}

// record appends r to $PEERBENCH_OUT, one JSON object a line.
func record(b *testing.B, r Result) {
	b.Helper()
	path := os.Getenv("PEERBENCH_OUT")
	if path == "" {
		return
	}
	line, err := json.Marshal(r)
	require.NoError(b, err)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	require.NoError(b, err)
	_, err = f.Write(append(line, '\n'))
	require.NoError(b, errors.Join(err, f.Close()))
}

// BenchmarkSideBySide runs runfleet and asynq as interleaved pairs on one
// redis-server: N no-op tasks, submit to completed, one worker process (this
// one) at the given concurrency. It reports tasks/s and Redis CPU per task
// for both, and runfleet's tasks/s over asynq's. Each run's most expensive
// commands (INFO commandstats, µs of Redis time per task) are logged.
func BenchmarkSideBySide(b *testing.B) {
	for _, n := range taskCounts(b) {
		for _, c := range concurrencies(b) {
			b.Run(fmt.Sprintf("tasks=%d/concurrency=%d", n, c), func(b *testing.B) {
				h := harness(b, false)
				var rfs, aqs []Result
				for range b.N {
					rf, aq := runPair(b, h, n, c)
					rfs, aqs = append(rfs, rf), append(aqs, aq)
					b.Logf("runfleet %.0f tasks/s, redis %.1f µs/task, process %.1f µs/task; top: %s",
						rf.TasksPerSec(), rf.RedisCPUPerTask(), rf.ProcCPUPerTask(), rf.Top(5, rf.Commands))
					b.Logf("asynq    %.0f tasks/s, redis %.1f µs/task, process %.1f µs/task; top: %s",
						aq.TasksPerSec(), aq.RedisCPUPerTask(), aq.ProcCPUPerTask(), aq.Top(5, aq.Commands))
				}
				rf, aq := sum(rfs), sum(aqs)
				b.ReportMetric(rf.TasksPerSec(), "rf_tasks/s")
				b.ReportMetric(aq.TasksPerSec(), "asynq_tasks/s")
				b.ReportMetric(rf.TasksPerSec()/aq.TasksPerSec(), "rf/asynq")
				b.ReportMetric(rf.RedisCPUPerTask(), "rf_redis_cpu_us/task")
				b.ReportMetric(aq.RedisCPUPerTask(), "asynq_redis_cpu_us/task")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// BenchmarkCommandCost runs one pair per iteration with every command in
// SLOWLOG and logs where each system's Redis time goes, per FCALL function
// and per asynq script, in µs per task. Logging every command costs Redis
// CPU of its own, so the tasks/s of these runs are not comparable with
// BenchmarkSideBySide's; the command durations SLOWLOG records are.
func BenchmarkCommandCost(b *testing.B) {
	n := ints(b, "PEERBENCH_TASKS", 20_000)[0]
	for _, c := range concurrencies(b) {
		b.Run(fmt.Sprintf("tasks=%d/concurrency=%d", n, c), func(b *testing.B) {
			h := harness(b, true)
			var rfs, aqs []Result
			for range b.N {
				rf, aq := runPair(b, h, n, c)
				rfs, aqs = append(rfs, rf), append(aqs, aq)
				for _, r := range []Result{rf, aq} {
					b.Logf("%s per function (Redis µs per task, calls per task): %s", r.System, r.Top(8, r.Functions))
					b.Logf("%s inside functions: %s", r.System, r.Top(8, r.Inside))
				}
			}
			rf, aq := sum(rfs), sum(aqs)
			b.ReportMetric(float64(total(rf.Functions))/float64(rf.Tasks), "rf_cmd_us/task")
			b.ReportMetric(float64(total(aq.Functions))/float64(aq.Tasks), "asynq_cmd_us/task")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// sum adds up runs of one system (b.N > 1).
func sum(rs []Result) Result {
	out := Result{System: rs[0].System, Concurrency: rs[0].Concurrency}
	var funcs, inside [][]CommandStat
	for _, r := range rs {
		out.Tasks += r.Tasks
		out.Elapsed += r.Elapsed
		out.RedisCPU += r.RedisCPU
		out.ProcCPU += r.ProcCPU
		funcs, inside = append(funcs, r.Functions), append(inside, r.Inside)
	}
	out.Functions, out.Inside = merge(funcs...), merge(inside...)
	return out
}

// merge adds up command lists by name, most expensive first.
func merge(lists ...[]CommandStat) []CommandStat {
	by := map[string]CommandStat{}
	for _, l := range lists {
		for _, c := range l {
			g := by[c.Name]
			g.Name, g.Calls, g.Usec = c.Name, g.Calls+c.Calls, g.Usec+c.Usec
			by[c.Name] = g
		}
	}
	var out []CommandStat
	for _, c := range by {
		out = append(out, c)
	}
	sortByCost(out)
	return out
}

// total is the Redis time of all commands in s, in µs.
func total(s []CommandStat) int64 {
	var t int64
	for _, c := range s {
		t += c.Usec
	}
	return t
}
