// Package chaos holds the fleet's chaos test: real runner processes of
// examples/bench on a real redis-server with AOF, killed and restarted while
// one large job runs, then the job's records are checked.
//
// TestChaos builds examples/bench, starts redis-server (appendonly yes,
// appendfsync everysec) on a loopback port, creates cluster "chaos", starts 4
// runners (concurrency 4, heartbeat TTL 2s, reclaim every 200ms, grace 5s)
// and submits one FanOut job of 5,102 tasks: 50 FanOuts of 100 Sleep tasks
// (80ms) each, every level closed by a merge Noop that depends on all its
// siblings (diamonds). About every second a random runner is killed with
// SIGKILL and a new one started; once, when about 30% of the tasks are
// computed, redis-server is stopped (SIGTERM, AOF flushed), a runner is
// killed while it is down, and it is started again on the same port and data
// directory (a replacement runner starts once it is back). Once the job is
// finished the runners get SIGTERM and must exit 0, and the test asserts that
// the job completed, that every task is computed (none queued, running,
// failed or skipped), that no dependent started before its dependencies were
// complete (their whole subtree), that no subtask started before its parent
// committed, and that no task lost its runner more than 10 times. It reports
// the executions beyond one per task, the kills, the losses and the wall time
// (about 30s on two cores). TestCheckOrder proves the ordering check finds
// violations. It needs redis-server (go tool task setup) and fails, rather
// than skips, without it.
//
//	go test -count=1 -run TestChaos -v ./internal/chaos/
//
// Environment:
//
//	RUNFLEET_CHAOS_SOAK=1      the soak: a job of 20,202 tasks, a kill every
//	                           500ms, three redis-server restarts (the second
//	                           one a SIGKILL), a 15 minute deadline (run with
//	                           go test -timeout 20m)
//	RUNFLEET_CHAOS_SEED=N      repeat the order of kills of an earlier run
//	                           (each run logs its seed)
//	RUNFLEET_CHAOS_KEEP_LOGS=D copy the runner and redis logs to directory D
//	                           at the end, pass or fail
package chaos
