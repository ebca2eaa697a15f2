package workflows_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// Redis Cluster sizing benchmarks. A job's keys share the tag {j:<id>}, so
// jobs spread over masters; a runfleet cluster's task streams share
// {c:<slug>}, so every hint of one runfleet cluster goes through one master.
// These benchmarks measure what each master pays for the jobs and streams it
// holds, next to a single redis-server in the same run, so the figures in the
// README's "Sizing Redis" guide come from one machine under one load.

// rcbBackend is one Redis deployment under test: a single server or a
// three-master cluster, with a runfleet client and direct connections to
// every master for INFO.
type rcbBackend struct {
	name    string
	rdb     redis.UniversalClient
	client  *workflows.Client
	masters []string                 // addresses, in a fixed order
	direct  map[string]*redis.Client // address -> connection to that master only
	slots   []redis.ClusterSlot      // nil for a single server
}

func newRCBSingle(b *testing.B, ctx context.Context) *rcbBackend {
	b.Helper()
	r := testenv.NewRedis(b)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, PoolSize: 64})
	b.Cleanup(func() { _ = rdb.Close() })
	return newRCBBackend(b, ctx, "single", rdb, []string{r.Addr}, nil)
}

func newRCBCluster(b *testing.B, ctx context.Context) *rcbBackend {
	b.Helper()
	rc := testenv.NewRedisCluster(b, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs(), PoolSize: 64})
	b.Cleanup(func() { _ = rdb.Close() })
	slots, err := rdb.ClusterSlots(ctx).Result()
	require.NoError(b, err)
	return newRCBBackend(b, ctx, "cluster", rdb, rc.Addrs(), slots)
}

func newRCBBackend(b *testing.B, ctx context.Context, name string, rdb redis.UniversalClient,
	masters []string, slots []redis.ClusterSlot) *rcbBackend {
	b.Helper()
	c, err := workflows.NewClient(ctx, workflows.WithRedisClient(rdb),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(b, err)
	b.Cleanup(func() { _ = c.Close() })
	be := &rcbBackend{name: name, rdb: rdb, client: c, masters: masters,
		direct: map[string]*redis.Client{}, slots: slots}
	for _, m := range masters {
		d := redis.NewClient(&redis.Options{Addr: m})
		b.Cleanup(func() { _ = d.Close() })
		be.direct[m] = d
	}
	return be
}

// masterOf is the address of the master holding hash tag tag ("j:<id>" or
// "c:<slug>"), asked of the cluster itself (CLUSTER KEYSLOT, CLUSTER SLOTS).
func (be *rcbBackend) masterOf(b *testing.B, ctx context.Context, tag string) string {
	b.Helper()
	if be.slots == nil {
		return be.masters[0]
	}
	slot, err := be.rdb.ClusterKeySlot(ctx, "{"+tag+"}").Result()
	require.NoError(b, err)
	for _, s := range be.slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			return s.Nodes[0].Addr
		}
	}
	b.Fatalf("slot %d of tag %q is served by no master", slot, tag)
	return ""
}

// slugsOnEachMaster picks one runfleet cluster slug per master, so that the
// task streams of the three slugs land on three different masters.
func (be *rcbBackend) slugsOnEachMaster(b *testing.B, ctx context.Context) []string {
	b.Helper()
	want := map[string]string{}
	for i := 0; len(want) < len(be.masters) && i < 1000; i++ {
		slug := "shard" + strconv.Itoa(i)
		m := be.masterOf(b, ctx, "c:"+slug)
		if _, ok := want[m]; !ok {
			want[m] = slug
		}
	}
	out := make([]string, 0, len(be.masters))
	for _, m := range be.masters {
		require.Contains(b, want, m, "no slug of shard0..shard999 hashes to master %s", m)
		out = append(out, want[m])
	}
	return out
}

// rcbStats is one master's INFO at one moment.
type rcbStats struct {
	cpu     float64          // used_cpu_user + used_cpu_sys, seconds
	memory  int64            // used_memory less client buffers, bytes
	cmdUsec map[string]int64 // command -> usec spent (commandstats)
	cmdN    map[string]int64 // command -> calls
}

func (be *rcbBackend) stats(b *testing.B, ctx context.Context) map[string]rcbStats {
	b.Helper()
	out := map[string]rcbStats{}
	for _, m := range be.masters {
		txt, err := be.direct[m].Info(ctx, "cpu", "memory", "commandstats").Result()
		require.NoError(b, err)
		s := rcbStats{cmdUsec: map[string]int64{}, cmdN: map[string]int64{}}
		for line := range strings.SplitSeq(txt, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok {
				continue
			}
			switch {
			case k == "used_cpu_user" || k == "used_cpu_sys":
				f, _ := strconv.ParseFloat(v, 64)
				s.cpu += f
			case k == "used_memory":
				n, _ := strconv.ParseInt(v, 10, 64)
				s.memory += n
			case k == "mem_clients_normal":
				// Client buffers grow with a burst of pipelines and shrink
				// lazily; they are not what the tasks cost.
				n, _ := strconv.ParseInt(v, 10, 64)
				s.memory -= n
			case strings.HasPrefix(k, "cmdstat_"):
				cmd := strings.TrimPrefix(k, "cmdstat_")
				for field := range strings.SplitSeq(v, ",") {
					fk, fv, _ := strings.Cut(field, "=")
					n, _ := strconv.ParseInt(fv, 10, 64)
					switch fk {
					case "calls":
						s.cmdN[cmd] = n
					case "usec":
						s.cmdUsec[cmd] = n
					}
				}
			}
		}
		out[m] = s
	}
	return out
}

// rcbStreamCommand reports whether cmd works on the task streams (and so
// runs on the master of the runfleet cluster's {c:<slug>} tag).
func rcbStreamCommand(cmd string) bool {
	return strings.HasPrefix(cmd, "x") && cmd != "xinfo"
}

// rcbLayout is one way to place jobs: how many runfleet clusters (slugs)
// they are spread over.
type rcbLayout struct {
	name    string
	backend *rcbBackend
	slugs   []string            // job i goes to slugs[i%len(slugs)], runner i serves the same slug
	runners []*workflows.Runner // rcbRunners of them
}

const (
	rcbJobs        = 6
	rcbTasksPerJob = 20_000
	rcbRunners     = 3 // runner goroutines per layout, each its own consumer
	rcbConcurrency = 256
)

// rcbResult is what one burn-down measured.
type rcbResult struct {
	wall       time.Duration
	tasks      int64
	perM       map[string]*rcbMaster
	slowest    time.Duration
	slowestCmd string
	masterID   []string
}

type rcbMaster struct {
	jobs, streams int
	tasks         int64
	cpu           float64
	memory        int64
	streamUsec    int64 // task-stream commands (x*)
	scriptUsec    int64 // runfleet functions (fcall), the commands they call included
	top           string
}

// run submits rcbJobs jobs of rcbTasksPerJob Noop subtasks at once, burns
// them down with rcbRunners runners, and measures each master.
func (l *rcbLayout) run(b *testing.B, ctx context.Context) rcbResult {
	b.Helper()
	be := l.backend
	for _, m := range be.masters {
		require.NoError(b, be.direct[m].ConfigResetStat(ctx).Err())
		require.NoError(b, be.direct[m].Do(ctx, "SLOWLOG", "RESET").Err())
	}
	before := be.stats(b, ctx)
	res := rcbResult{perM: map[string]*rcbMaster{}, masterID: be.masters}
	for _, m := range be.masters {
		res.perM[m] = &rcbMaster{}
	}
	for _, slug := range l.slugs {
		res.perM[be.masterOf(b, ctx, "c:"+slug)].streams++
	}

	start := time.Now()
	// Job ids are random, so six jobs fall on three masters like dice. To
	// compare masters, keep rcbJobs/masters jobs on each: a job landing on a
	// master that has its share is canceled before any runner starts (the
	// runners then drop its one hint) and submitted again.
	perMaster := rcbJobs / len(be.masters)
	ids := make([]string, rcbJobs)
	for i := range ids {
		for {
			j, err := be.client.Jobs().Submit(ctx, "burn", l.slugs[i%len(l.slugs)],
				&benchtask.FanOut{N: rcbTasksPerJob, Child: "Noop"})
			require.NoError(b, err)
			pm := res.perM[be.masterOf(b, ctx, "j:"+j.ID)]
			if pm.jobs >= perMaster {
				require.NoError(b, be.client.Jobs().Cancel(ctx, j.ID))
				continue
			}
			ids[i] = j.ID
			pm.jobs++
			pm.tasks += rcbTasksPerJob + 1
			break
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, len(l.runners))
	for _, r := range l.runners {
		wg.Go(func() {
			errs <- r.RunForever(runCtx, workflows.WithConcurrency(rcbConcurrency), workflows.WithIdleWait(time.Millisecond))
		})
	}
	var end time.Time
	for _, id := range ids {
		for {
			j, err := be.client.Jobs().Get(ctx, id)
			require.NoError(b, err)
			if workflows.Finished(j.State) {
				require.Equal(b, workflows.JobCompleted, j.State)
				require.Equal(b, int64(rcbTasksPerJob+1), j.TaskCounts[workflows.TaskComputed])
				if j.FinishedAt.After(end) {
					end = j.FinishedAt
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	res.wall = end.Sub(start)
	res.tasks = rcbJobs * (rcbTasksPerJob + 1)

	after := be.stats(b, ctx)
	for _, m := range be.masters {
		pm := res.perM[m]
		pm.cpu = after[m].cpu - before[m].cpu
		pm.memory = after[m].memory - before[m].memory
		type cmdCost struct {
			cmd  string
			usec int64
		}
		var costs []cmdCost
		for cmd, usec := range after[m].cmdUsec {
			switch {
			case rcbStreamCommand(cmd):
				pm.streamUsec += usec
			case strings.HasPrefix(cmd, "fcall"):
				pm.scriptUsec += usec
			}
			costs = append(costs, cmdCost{cmd, usec})
		}
		sort.Slice(costs, func(i, j int) bool { return costs[i].usec > costs[j].usec })
		var top []string
		for _, c := range costs[:min(4, len(costs))] {
			top = append(top, fmt.Sprintf("%s=%.2fs/%d", c.cmd, float64(c.usec)/1e6, after[m].cmdN[c.cmd]))
		}
		pm.top = strings.Join(top, " ")
		logs, err := be.direct[m].SlowLogGet(ctx, -1).Result()
		require.NoError(b, err)
		for _, s := range logs {
			if s.Duration > res.slowest {
				res.slowest = s.Duration
				res.slowestCmd = strings.Join(s.Args[:min(2, len(s.Args))], " ")
			}
		}
	}
	return res
}

func (res rcbResult) tasksPerSec() float64 { return float64(res.tasks) / res.wall.Seconds() }

// log writes one line per master: what it held and what that cost it.
func (res rcbResult) log(b *testing.B, name string) {
	b.Helper()
	b.Logf("%s: %d tasks in %v = %.0f tasks/s, Redis CPU %.1f µs/task, slowest command %v (%s)", name, res.tasks,
		res.wall.Round(time.Millisecond), res.tasksPerSec(), res.cpuPerTask()*1e6, res.slowest, res.slowestCmd)
	for i, m := range res.masterID {
		pm := res.perM[m]
		perTask := func(x float64) float64 {
			if pm.tasks == 0 {
				return 0
			}
			return x / float64(pm.tasks)
		}
		b.Logf("  master %d: jobs=%d streams=%d tasks=%d (%.0f tasks/s) cpu=%.2fs (%.1f µs/task held) "+
			"fcall=%.2fs stream-cmds=%.3fs (%.2f µs/task of the run) memory=%+d B (%.0f B/task held) top: %s",
			i, pm.jobs, pm.streams, pm.tasks, float64(pm.tasks)/res.wall.Seconds(), pm.cpu, perTask(pm.cpu*1e6),
			float64(pm.scriptUsec)/1e6, float64(pm.streamUsec)/1e6, float64(pm.streamUsec)/float64(res.tasks),
			pm.memory, perTask(float64(pm.memory)), pm.top)
	}
	if jobOnly, extra, ok := res.streamOverhead(); ok {
		b.Logf("  masters without a stream: %.1f µs CPU/task held; a stream adds %.1f µs CPU per task of its runfleet cluster",
			jobOnly*1e6, extra*1e6)
	}
}

// cpuPerTask is the CPU all masters spent per task of the run, seconds.
func (res rcbResult) cpuPerTask() float64 {
	var cpu float64
	for _, pm := range res.perM {
		cpu += pm.cpu
	}
	return cpu / float64(res.tasks)
}

// streamOverhead separates what a master pays for holding a runfleet
// cluster's task streams from what it pays for the jobs it holds: masters
// holding jobs and no stream give the CPU per job task; what stream-holding
// masters spent beyond that for their own jobs, per task that went through
// their streams, is the stream's cost. ok is false when no master held jobs
// without a stream.
func (res rcbResult) streamOverhead() (jobOnly, extra float64, ok bool) {
	var cpu float64
	var tasks int64
	for _, pm := range res.perM {
		if pm.streams == 0 && pm.tasks > 0 {
			cpu += pm.cpu
			tasks += pm.tasks
		}
	}
	if tasks == 0 {
		return 0, 0, false
	}
	jobOnly = cpu / float64(tasks)
	var streamCPU float64
	for _, pm := range res.perM {
		if pm.streams > 0 {
			streamCPU += pm.cpu - jobOnly*float64(pm.tasks)
		}
	}
	return jobOnly, streamCPU / float64(res.tasks), true
}

// BenchmarkClusterBurnDown runs the same burn-down (6 jobs x 20,000 Noop
// subtasks submitted at once, 3 runners x concurrency 256) on a single
// redis-server and on a three-master Redis Cluster, interleaved so both see
// the same machine load:
//
//   - single: one redis-server, one runfleet cluster;
//   - cluster: three masters, one runfleet cluster (jobs spread over the
//     masters, every task stream on one master);
//   - cluster-sharded: three masters, three runfleet clusters whose streams
//     hash to different masters, two jobs and one runner each.
//
// Per master it logs the jobs and streams it held, its CPU and command time,
// and its memory growth per task held; it reports the headline figures.
//
//	go test ./workflows -run '^$' -bench ClusterBurnDown -benchtime 3x -v
func BenchmarkClusterBurnDown(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	single := newRCBSingle(b, ctx)
	cluster := newRCBCluster(b, ctx)
	layouts := []*rcbLayout{
		{name: "single", backend: single, slugs: []string{"bench"}},
		{name: "cluster", backend: cluster, slugs: []string{"bench"}},
		{name: "cluster-sharded", backend: cluster, slugs: cluster.slugsOnEachMaster(b, ctx)},
	}
	created := map[*rcbBackend]map[string]bool{}
	for _, l := range layouts {
		if created[l.backend] == nil {
			created[l.backend] = map[string]bool{}
		}
		for _, slug := range l.slugs {
			if !created[l.backend][slug] {
				_, err := l.backend.client.Clusters().Create(ctx, slug, "")
				require.NoError(b, err)
				created[l.backend][slug] = true
			}
		}
		for i := range rcbRunners {
			r, err := l.backend.client.NewRunner(ctx, l.slugs[i%len(l.slugs)], benchtask.All()...)
			require.NoError(b, err)
			l.runners = append(l.runners, r)
		}
	}

	sums := map[string]time.Duration{}
	cpu := map[string]float64{}
	var tasks int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Rotate the order so no layout always runs first or last.
		for k := range layouts {
			l := layouts[(i+k)%len(layouts)]
			res := l.run(b, ctx)
			res.log(b, fmt.Sprintf("round %d %s", i+1, l.name))
			sums[l.name] += res.wall
			cpu[l.name] += res.cpuPerTask()
			tasks = res.tasks
		}
	}
	b.StopTimer()
	rate := func(name string) float64 { return float64(int64(b.N)*tasks) / sums[name].Seconds() }
	b.ReportMetric(rate("single"), "single-tasks/s")
	b.ReportMetric(rate("cluster"), "cluster-tasks/s")
	b.ReportMetric(rate("cluster-sharded"), "sharded-tasks/s")
	b.ReportMetric(rate("cluster")/rate("single"), "cluster/single")
	b.ReportMetric(cpu["single"]*1e6/float64(b.N), "single-redis-us/task")
	b.ReportMetric(cpu["cluster"]*1e6/float64(b.N), "cluster-redis-us/task")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkQueuedTaskMemory measures Redis memory per queued and per finished
// task, on a single server and per master of a three-master cluster: a
// runner that registers only FanOut runs the root of a 100,000-Noop fan-out
// (so the children are committed and queued but none runs), then a Noop
// runner burns them down.
//
//	go test ./workflows -run '^$' -bench QueuedTaskMemory -benchtime 1x -v
func BenchmarkQueuedTaskMemory(b *testing.B) {
	const n = 100_000
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	sums := map[string]float64{} // metric -> sum over iterations
	for _, mk := range []func(*testing.B, context.Context) *rcbBackend{newRCBSingle, newRCBCluster} {
		be := mk(b, ctx)
		_, err := be.client.Clusters().Create(ctx, "bench", "")
		require.NoError(b, err)
		rootOnly, err := be.client.NewRunner(ctx, "bench", &benchtask.FanOut{})
		require.NoError(b, err)
		noop, err := be.client.NewRunner(ctx, "bench", &benchtask.Noop{})
		require.NoError(b, err)
		streamAt := be.masterOf(b, ctx, "c:bench")
		for i := 0; i < b.N; i++ {
			// On a cluster, keep a job whose keys land away from the stream's
			// master, so the two costs can be told apart; cancel the others
			// before their root runs.
			var j workflows.Job
			var jobAt string
			for {
				j, err = be.client.Jobs().Submit(ctx, "queued", "bench", &benchtask.FanOut{N: n, Child: "Noop"})
				require.NoError(b, err)
				jobAt = be.masterOf(b, ctx, "j:"+j.ID)
				if be.slots == nil || jobAt != streamAt {
					break
				}
				require.NoError(b, be.client.Jobs().Cancel(ctx, j.ID))
			}
			before := be.stats(b, ctx)
			require.NoError(b, rootOnly.RunAll(ctx, workflows.WithIdleWait(10*time.Millisecond)))
			j, err = be.client.Jobs().Get(ctx, j.ID)
			require.NoError(b, err)
			require.Equal(b, int64(n), j.TaskCounts[workflows.TaskQueued], "children queued, none run")
			queued := be.stats(b, ctx)
			require.NoError(b, noop.RunAll(ctx, workflows.WithConcurrency(1024), workflows.WithIdleWait(10*time.Millisecond)))
			j, err = be.client.Jobs().Get(ctx, j.ID)
			require.NoError(b, err)
			require.Equal(b, workflows.JobCompleted, j.State)
			done := be.stats(b, ctx)
			perTask := func(a, z map[string]rcbStats, m string) float64 {
				return float64(z[m].memory-a[m].memory) / n
			}
			b.Logf("%s: job master %s: %.0f B/queued task, %.0f B/finished task; stream master %s: %.1f B/queued task, %.1f B/finished task",
				be.name, jobAt, perTask(before, queued, jobAt), perTask(before, done, jobAt),
				streamAt, perTask(before, queued, streamAt), perTask(before, done, streamAt))
			if be.slots == nil {
				sums["single-B/queued"] += perTask(before, queued, jobAt)
				sums["single-B/finished"] += perTask(before, done, jobAt)
			} else {
				sums["cluster-job-master-B/queued"] += perTask(before, queued, jobAt)
				sums["cluster-job-master-B/finished"] += perTask(before, done, jobAt)
				sums["cluster-stream-master-B/queued"] += perTask(before, queued, streamAt)
			}
		}
	}
	for unit, sum := range sums {
		b.ReportMetric(sum/float64(b.N), unit)
	}
	b.ReportMetric(0, "ns/op")
}
