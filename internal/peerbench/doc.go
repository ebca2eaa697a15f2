// Package peerbench runs runfleet and hibiken/asynq side by side on the same
// redis-server, in the same process run, and measures what issue 9 asks of
// the runner's hot path:
//
//   - submit → completed for N no-op tasks with one worker process at a given
//     concurrency, as tasks/s for each system and their ratio;
//   - Redis CPU per task: the delta of INFO cpu (used_cpu_user +
//     used_cpu_sys) over the run, divided by N;
//   - where that CPU goes: INFO commandstats per run, and per Redis function
//     or Lua script from SLOWLOG with every command logged.
//
// It is its own Go module (internal/peerbench/go.mod) so that asynq never
// enters runfleet's go.mod; `go build ./...` and `go test ./...` at the
// repository root skip it. Run it from this directory:
//
//	go test -run '^$' -bench . -benchtime 1x -count 5
//
// # What one run is
//
// Both systems get a fresh start on the shared server: FLUSHALL, then a new
// client and a new worker in this process (runfleet: one Runner with
// RunForever and WithConcurrency(c); asynq: one Server with Concurrency c).
// Once the worker idles, the meter starts and the tasks are submitted:
//
//   - runfleet: one job whose root task (benchtask.FanOut) submits N
//     benchtask.Noop subtasks. Completed is the job's finished time.
//   - asynq: N Enqueue calls of a task with no payload from 16 goroutines (the
//     client's default pool holds 10 connections per CPU), to a handler that returns
//     nil. Completed is when the handler has run N times and the queue's
//     pending and active lists are empty (polled every millisecond).
//
// asynq's TaskCheckInterval is set to 1 ms: its processor does not block on
// Redis but sleeps TaskCheckInterval/2 to 3×TaskCheckInterval/2 after finding
// the queue empty (1 s by default), which would measure that sleep rather
// than the throughput. This favours asynq. Everything else is asynq's
// default (connection pool, retention 0, heartbeats every 5 s).
//
// A side-by-side benchmark runs the two as a pair per iteration and swaps
// who goes first from one pair to the next, so that with -count 5 they
// interleave on the same server while the machine's load drifts.
//
// # Environment
//
//	PEERBENCH_TASKS        task counts, comma-separated (default 20000,100000; -short: 20000)
//	PEERBENCH_CONCURRENCY  concurrencies, comma-separated (default 8,1024)
//	PEERBENCH_OUT          a file to append every run's result to, one JSON object a line;
//	                       `go run ./summary FILE` prints medians, ranges and top commands
package peerbench
