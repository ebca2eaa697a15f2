package workflows_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// A fleet of many runners is simulated in one process: every runner has its
// own Client on its own small go-redis pool, its own heartbeat, upkeep and
// blocking read, exactly as a runner process would, only without the
// process.

// fleetPoolSize is each simulated runner's go-redis pool: the blocking
// read keeps one connection for itself, heartbeats, upkeep, claims and
// commits share the rest. Small, so 1,000 runners open about 2,000
// connections rather than go-redis's default of 10 per CPU each.
const fleetPoolSize = 3

// shares counts the ShareTask executions per runner id, across every fleet
// of the test binary (runner ids are unique).
var shares sync.Map // runner id -> *atomic.Int64

// ShareTask sleeps MS milliseconds and counts itself for the runner that
// executes it.
type ShareTask struct {
	MS int `json:"ms"`
}

func (*ShareTask) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("ShareTask", "v1.0")
}

func (s *ShareTask) Execute(ctx context.Context) error {
	cur, ok := workflows.CurrentTask(ctx)
	if !ok {
		return workflows.ErrNotInTask
	}
	n, _ := shares.LoadOrStore(cur.RunnerID, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	t := time.NewTimer(time.Duration(s.MS) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ShareOut submits N ShareTasks of MS milliseconds each: one job spread
// over the whole fleet.
type ShareOut struct {
	N  int `json:"n"`
	MS int `json:"ms"`
}

func (*ShareOut) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("ShareOut", "v1.0")
}

// shareOutRunner is the runner id that last executed a ShareOut.
var shareOutRunner atomic.Pointer[string]

func (s *ShareOut) Execute(ctx context.Context) error {
	if cur, ok := workflows.CurrentTask(ctx); ok {
		shareOutRunner.Store(&cur.RunnerID)
	}
	tasks := make([]workflows.Task, s.N)
	for i := range tasks {
		tasks[i] = &ShareTask{MS: s.MS}
	}
	_, err := workflows.SubmitSubtasks(ctx, tasks)
	return err
}

// fleet is many runners of one cluster, each with its own client.
type fleet struct {
	redis   *testenv.Redis
	admin   *workflows.Client // submits and inspects; runs nothing
	rdb     *redis.Client     // for INFO and SLOWLOG
	runners []*workflows.Runner
	stop    func() // stops every runner and waits for them
}

// startFleet starts n runners (concurrency conc) of cluster "many" on a
// fresh redis-server and waits until every one has registered.
func startFleet(tb testing.TB, n, conc int) *fleet {
	tb.Helper()
	f := &fleet{redis: testenv.NewRedis(tb)}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.rdb = redis.NewClient(&redis.Options{Addr: f.redis.Addr, PoolSize: 4})
	tb.Cleanup(func() { _ = f.rdb.Close() })

	maxClients := infoInt(tb, ctx, f.rdb, "clients", "maxclients")
	require.Greater(tb, maxClients, int64(n*fleetPoolSize+16),
		"redis-server accepts %d clients, too few for %d runners of %d connections; raise its maxclients and the fd limit (ulimit -n)",
		maxClients, n, fleetPoolSize)

	var err error
	f.admin, err = workflows.NewClient(ctx, workflows.WithRedisURL(f.redis.URL()), workflows.WithLogger(quiet))
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = f.admin.Close() })
	_, err = f.admin.Clusters().Create(ctx, "many", "")
	require.NoError(tb, err)

	runCtx, stopRuns := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var rdbs []*redis.Client
	for range n {
		rdb := redis.NewClient(&redis.Options{Addr: f.redis.Addr, PoolSize: fleetPoolSize})
		rdbs = append(rdbs, rdb)
		c, err := workflows.NewClient(ctx, workflows.WithRedisClient(rdb), workflows.WithLogger(quiet))
		require.NoError(tb, err)
		r, err := c.NewRunner(ctx, "many", &ShareOut{}, &ShareTask{})
		require.NoError(tb, err)
		f.runners = append(f.runners, r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.RunForever(runCtx, workflows.WithConcurrency(conc), workflows.WithGracePeriod(0)); err != nil {
				tb.Errorf("runner %s: %v", r.ID(), err)
			}
		}()
	}
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			stopRuns()
			wg.Wait()
			for _, rdb := range rdbs {
				_ = rdb.Close()
			}
		})
	}
	tb.Cleanup(f.stop)
	require.Eventually(tb, func() bool {
		rs, err := f.admin.Clusters().Runners(ctx, "many")
		return err == nil && len(rs) == n
	}, time.Duration(n)*100*time.Millisecond+10*time.Second, 100*time.Millisecond, "every runner registers")
	return f
}

// spread runs one job of tasks ShareTasks of ms milliseconds over the fleet
// and returns how many each runner executed (in the order of f.runners)
// and how long the job took from submit to completed.
func (f *fleet) spread(tb testing.TB, ctx context.Context, tasks, ms int) ([]int64, time.Duration) {
	tb.Helper()
	before := f.shareCounts()
	start := time.Now()
	j, err := f.admin.Jobs().Submit(ctx, "spread", "many", &ShareOut{N: tasks, MS: ms})
	require.NoError(tb, err)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	j, err = f.admin.Jobs().Wait(wctx, j.ID, 100*time.Millisecond, nil)
	require.NoError(tb, err)
	took := time.Since(start)
	require.Equal(tb, workflows.JobCompleted, j.State)
	require.Equal(tb, int64(tasks+1), j.TaskCounts[workflows.TaskComputed])
	after := f.shareCounts()
	for i := range after {
		after[i] -= before[i]
	}
	return after, took
}

// shareCounts is the ShareTasks each runner has executed so far.
func (f *fleet) shareCounts() []int64 {
	out := make([]int64, len(f.runners))
	for i, r := range f.runners {
		if n, ok := shares.Load(r.ID()); ok {
			out[i] = n.(*atomic.Int64).Load()
		}
	}
	return out
}

// spreadStats summarises tasks per runner.
type spreadStats struct {
	min, median, max, total int64
	none                    int // runners that got no task
}

func statsOf(counts []int64) spreadStats {
	s := slices.Clone(counts)
	slices.Sort(s)
	st := spreadStats{min: s[0], median: s[len(s)/2], max: s[len(s)-1]}
	for _, n := range s {
		st.total += n
		if n == 0 {
			st.none++
		}
	}
	return st
}

func (s spreadStats) String() string {
	return fmt.Sprintf("min %d, median %d, max %d per runner; %d runners got none; %d in all",
		s.min, s.median, s.max, s.none, s.total)
}

// TestManyRunnersShareAJob spreads one job over a fleet of runners with
// blocking reads: every task runs exactly once and no runner is starved.
func TestManyRunnersShareAJob(t *testing.T) {
	const runners, tasks = 20, 1000
	f := startFleet(t, runners, 1)
	ctx := context.Background()
	counts, took := f.spread(t, ctx, tasks, 20)
	st := statsOf(counts)
	t.Logf("%d tasks over %d runners in %v: %s", tasks, runners, took, st)
	require.Equal(t, int64(tasks), st.total, "every task ran exactly once")
	require.Zero(t, st.none, "no runner starved: %s", st)
}

// BenchmarkManyRunners starts a fleet of runners of one cluster, each with
// its own client, connections, heartbeat and upkeep (concurrency 1), and
// measures (1) what the idle fleet costs Redis: commands per second and
// Redis CPU, and (2) how one job of 20,000 tasks of 5 ms spreads over it:
// tasks per runner (min, median, max, runners with none), tasks/s and the
// slowest Redis command meanwhile.
func BenchmarkManyRunners(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run("runners="+strconv.Itoa(n), func(b *testing.B) {
			const tasks, ms = 20_000, 5
			f := startFleet(b, n, 1)
			ctx := context.Background()
			b.ResetTimer()

			// Phase 1: idle. Heartbeat and upkeep timers spread out first.
			time.Sleep(3 * time.Second)
			m := f.mark(b, ctx)
			time.Sleep(10 * time.Second)
			idle := f.loadSince(b, ctx, m)
			b.Logf("idle, %d runners: %s", n, idle)

			// Phase 2: one job spread over the fleet.
			slowest(b, ctx, f.redis)
			m = f.mark(b, ctx)
			counts, took := f.spread(b, ctx, tasks, ms)
			b.Logf("spreading a job, %d runners: %s", n, f.loadSince(b, ctx, m))
			b.Logf("slowest redis commands: %s", slowestCommands(b, ctx, f.rdb, 5))
			worst := slowest(b, ctx, f.redis)
			st := statsOf(counts)
			for i, r := range f.runners {
				if id := shareOutRunner.Load(); id != nil && *id == r.ID() {
					b.Logf("the runner that ran the root task (submitting %d tasks) ran %d of them", tasks, counts[i])
				}
			}
			b.Logf("%d tasks of %d ms over %d runners in %v (%.0f tasks/s): %s; slowest redis command %.2f ms",
				tasks, ms, n, took.Round(time.Millisecond), float64(tasks+1)/took.Seconds(), st, worst)
			b.StopTimer()

			b.ReportMetric(idle.cmdsPerSec, "idle-redis-cmds/s")
			b.ReportMetric(idle.cmdsPerSec/float64(n), "idle-cmds/s-per-runner")
			b.ReportMetric(idle.redisCPU*100, "idle-redis-cpu-%")
			b.ReportMetric(float64(st.min), "min-tasks/runner")
			b.ReportMetric(float64(st.median), "median-tasks/runner")
			b.ReportMetric(float64(st.max), "max-tasks/runner")
			b.ReportMetric(float64(st.none), "starved-runners")
			b.ReportMetric(float64(tasks+1)/took.Seconds(), "tasks/s")
			b.ReportMetric(worst, "slowest-redis-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// redisLoad is what Redis did over a measured period.
type redisLoad struct {
	cmdsPerSec float64
	redisCPU   float64 // cores of redis-server (used_cpu_sys + used_cpu_user)
	procCPU    float64 // cores of this process, where the runners live
	clients    int64
	top        string // the most frequent commands, with calls/s
}

// loadMark is a point to measure Redis's load from.
type loadMark struct {
	calls    map[string]cmdStat
	redisCPU float64
	procCPU  time.Duration
	at       time.Time
}

func (f *fleet) mark(tb testing.TB, ctx context.Context) loadMark {
	tb.Helper()
	return loadMark{calls: commandCalls(tb, ctx, f.rdb), redisCPU: redisCPU(tb, ctx, f.rdb), procCPU: processCPU(), at: time.Now()}
}

// loadSince is Redis's load from m until now; INFO calls do not count.
func (f *fleet) loadSince(tb testing.TB, ctx context.Context, m loadMark) redisLoad {
	tb.Helper()
	now := f.mark(tb, ctx)
	secs := now.at.Sub(m.at).Seconds()
	type rate struct {
		cmd         string
		calls, usec int64
	}
	var rates []rate
	var total, totalUsec int64
	for cmd, st := range now.calls {
		if d := st.calls - m.calls[cmd].calls; d > 0 && cmd != "info" {
			rates = append(rates, rate{cmd, d, st.usec - m.calls[cmd].usec})
			total += d
			totalUsec += st.usec - m.calls[cmd].usec
		}
	}
	slices.SortFunc(rates, func(a, b rate) int { return int(b.calls - a.calls) })
	var top []string
	for _, r := range rates[:min(8, len(rates))] {
		top = append(top, fmt.Sprintf("%s %.0f/s (%.1f µs/call, %.0f%% of command time)", r.cmd, float64(r.calls)/secs,
			float64(r.usec)/float64(r.calls), 100*float64(r.usec)/float64(max(totalUsec, 1))))
	}
	return redisLoad{cmdsPerSec: float64(total) / secs, redisCPU: (now.redisCPU - m.redisCPU) / secs,
		procCPU: (now.procCPU - m.procCPU).Seconds() / secs, clients: infoInt(tb, ctx, f.rdb, "clients", "connected_clients"),
		top: strings.Join(top, ", ")}
}

func (l redisLoad) String() string {
	return fmt.Sprintf("%.0f redis cmds/s, redis cpu %.1f%%, runners' process cpu %.1f%%, %d clients; top: %s",
		l.cmdsPerSec, l.redisCPU*100, l.procCPU*100, l.clients, l.top)
}

// cmdStat is one command's line of INFO commandstats.
type cmdStat struct {
	calls int64
	usec  int64 // time spent executing it
}

// commandCalls reads INFO commandstats: calls and time per command (lower
// case, with subcommands as "xinfo|groups").
func commandCalls(tb testing.TB, ctx context.Context, rdb *redis.Client) map[string]cmdStat {
	tb.Helper()
	info, err := rdb.Info(ctx, "commandstats").Result()
	require.NoError(tb, err)
	out := map[string]cmdStat{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var st cmdStat
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				st.calls, _ = strconv.ParseInt(v, 10, 64)
			} else if v, ok := strings.CutPrefix(kv, "usec="); ok {
				st.usec, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = st
	}
	return out
}

// redisCPU is the CPU seconds redis-server has used (system + user).
func redisCPU(tb testing.TB, ctx context.Context, rdb *redis.Client) float64 {
	tb.Helper()
	info, err := rdb.Info(ctx, "cpu").Result()
	require.NoError(tb, err)
	var total float64
	for _, field := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, err := strconv.ParseFloat(infoField(info, field), 64)
		require.NoError(tb, err, "INFO cpu %s", field)
		total += v
	}
	return total
}

// infoInt reads one integer field of an INFO section.
func infoInt(tb testing.TB, ctx context.Context, rdb *redis.Client, section, field string) int64 {
	tb.Helper()
	info, err := rdb.Info(ctx, section).Result()
	require.NoError(tb, err)
	n, err := strconv.ParseInt(infoField(info, field), 10, 64)
	require.NoError(tb, err, "INFO %s %s", section, field)
	return n
}

func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// processCPU is the CPU time this process has used (user + system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// slowestCommands names the n slowest commands in SLOWLOG, with their
// first arguments, for the benchmark log.
func slowestCommands(tb testing.TB, ctx context.Context, rdb *redis.Client, n int) string {
	tb.Helper()
	logs, err := rdb.SlowLogGet(ctx, -1).Result()
	require.NoError(tb, err)
	slices.SortFunc(logs, func(a, b redis.SlowLog) int { return int(b.Duration - a.Duration) })
	var out []string
	for _, l := range logs[:min(n, len(logs))] {
		args := l.Args[:min(8, len(l.Args))]
		out = append(out, fmt.Sprintf("%s (%d args) %.2fms", strings.Join(args, " "), len(l.Args), float64(l.Duration.Microseconds())/1000))
	}
	return strings.Join(out, "; ")
}
