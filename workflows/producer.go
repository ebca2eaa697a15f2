package workflows

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runfleet/runfleet/internal/backoff"
	"github.com/runfleet/runfleet/queue"
)

// How often a running runner does its upkeep.
const (
	trimEvery   = time.Second     // drop acknowledged stream entries
	orphanEvery = 5 * time.Second // re-claim own pending hints nothing local holds
)

// abandonAfter is how long tasks get to return after their context is
// canceled at the end of a grace period.
const abandonAfter = 2 * time.Second

// noBlock makes a hint read return at once.
const noBlock = -1

// A runner whose executions take less than readAheadBelow on average reads
// up to two batches of hints beyond its free slots, so that the call that
// commits a batch also claims the next one while a read tops the backlog
// up. Slower runners read only for free slots: they would sit on hints
// another runner could start.
const readAheadBelow = 10 * time.Millisecond

// emptyReadPause spaces read-aheads that found nothing.
const emptyReadPause = time.Millisecond

// producer is one run of a runner: it owns what the runner holds, reads hints
// for free slots (and, while tasks are short, ahead of them, see
// readAheadBelow), claims them and hands them to a fixed pool of
// executors (execute). A single completer goroutine (complete) commits
// results in batches and claims the next tasks in the same round trip, and
// the upkeep goroutine (maintain) trims streams and reclaims dead runners'
// tasks.
type producer struct {
	r    *Runner
	cfg  runConfig
	held *holdings

	// Work outlives the fetch context by the grace period; reads, claims and
	// commits use commitCtx: hints a read returned are this runner's to
	// claim even while it stops, or they would sit unacknowledged.
	workCtx    context.Context
	cancelWork context.CancelFunc
	commitCtx  context.Context
	stopNow    <-chan struct{} // closed by StopNow

	beat         *heartbeat
	reclaimedOwn bool // set once this runner has reclaimed its own pending entries

	work chan assigned // claimed tasks, to the executors
	// workMu guards sending on work against its closing (workClosed).
	workMu     sync.Mutex
	workClosed bool
	// stopClaims stops the completer claiming once fetching has ended.
	stopClaims atomic.Bool
	execs      sync.WaitGroup // the executors
	results    chan outcome   // executed tasks, to the completer
	// execAvg is a moving average of execution times (nanoseconds).
	execAvg atomic.Int64
	// perEntry is the tasks per stream entry of recent reads (fetch loop only).
	perEntry float64

	stopCompleter chan struct{}
	completerDone chan struct{}

	stopUpkeep context.CancelFunc
	upkeepDone chan struct{}

	metrics *Metrics // nil without metrics
	// metricComps and metricFails follow the completions and failures of
	// the completer's commit when metrics are on (reused across batches).
	metricComps []*outcome
	metricFails []*outcome
}

// run starts the heartbeat, the completer, the executors and the upkeep,
// then fetches and runs tasks until ctx ends (or, with untilIdle, until
// there is nothing left to run), and shuts them down in order.
func (r *Runner) run(ctx context.Context, cfg runConfig, untilIdle bool) error {
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	p := &producer{r: r, cfg: cfg, workCtx: workCtx, cancelWork: cancelWork,
		commitCtx: context.WithoutCancel(ctx), stopNow: r.resetStop()}

	// The heartbeat runs from the first moment the runner may hold a task
	// until it holds none; results are written while its lease holds.
	beat, err := r.startHeartbeat(ctx, cfg)
	if err != nil {
		return err
	}
	p.beat = beat
	defer func() { beat.stop(p.commitCtx, p.reclaimedOwn) }()

	p.held = newHoldings()
	stopMetrics, err := r.startMetrics(ctx, p)
	if err != nil {
		return err
	}
	// Deferred before the shutdown: what the shutdown settles is counted.
	defer stopMetrics()
	// Deferred before the shutdown too: the executions' last records are
	// written once they have all returned.
	defer r.startTaskLogs(cfg)()
	r.startInputBudget(cfg)
	p.startCompleter()
	p.startExecutors()
	p.startUpkeep(ctx)
	defer p.stopUpkeep()
	defer p.finalizeShutdown(ctx)
	return p.fetchAndRunLoop(ctx, untilIdle)
}

// startCompleter starts the goroutine that commits results; it ends when
// results is closed or stopCompleter closes.
func (p *producer) startCompleter() {
	p.results = make(chan outcome, p.cfg.concurrency)
	p.completerDone = make(chan struct{})
	p.stopCompleter = make(chan struct{})
	go func() {
		defer close(p.completerDone)
		p.complete()
	}()
}

// assigned is a claimed task with the device reserved for it (nil without
// a device pool).
type assigned struct {
	claim queue.Claimed
	dev   []Device
}

// startExecutors starts a fixed pool of executors: goroutines that live
// across tasks keep the stacks they have grown, where one goroutine per task
// grows a new one. They end when work is closed.
func (p *producer) startExecutors() {
	p.work = make(chan assigned, p.cfg.concurrency+maxClaim)
	for range p.cfg.concurrency {
		p.execs.Add(1)
		go func() {
			defer p.execs.Done()
			for w := range p.work {
				start := time.Now()
				o := p.r.execute(p.workCtx, w.claim, w.dev, start)
				o.dev, o.start = w.dev, start
				if o.took == 0 {
					o.took = time.Since(start)
				}
				p.noteExecTime(o.took)
				p.results <- o
			}
		}()
	}
}

// noteExecTime folds one execution time into execAvg (weight 1/8).
func (p *producer) noteExecTime(d time.Duration) {
	for {
		old := p.execAvg.Load()
		avg := old + (int64(d)-old)/8
		if old == 0 {
			avg = int64(d)
		}
		if p.execAvg.CompareAndSwap(old, avg) {
			return
		}
	}
}

// readAhead is how many hints to hold beyond free slots (see readAheadBelow).
func (p *producer) readAhead() int {
	if avg := time.Duration(p.execAvg.Load()); avg == 0 || avg >= readAheadBelow || p.cfg.devices != nil {
		return 0 // nothing known yet, slow tasks, or tasks that need a device reserved first
	}
	return min(2*p.cfg.concurrency, maxClaim)
}

// startUpkeep starts the runner's share of fleet upkeep; stopUpkeep ends it.
func (p *producer) startUpkeep(ctx context.Context) {
	maintCtx, stop := context.WithCancel(ctx)
	p.stopUpkeep = stop
	p.upkeepDone = make(chan struct{})
	go func() {
		defer close(p.upkeepDone)
		p.r.maintain(maintCtx, p.cfg, p.held)
	}()
}

// finalizeShutdown waits for the tasks in flight (see drain), stops the
// executors, the completer and the upkeep, and settles what is still pending
// under this runner.
func (p *producer) finalizeShutdown(ctx context.Context) {
	r := p.r
	p.stopClaims.Store(true)
	abandoned := r.drain(ctx, p.cfg, p.held, p.cancelWork, p.stopNow)
	p.workMu.Lock()
	p.workClosed = true
	close(p.work)
	p.workMu.Unlock()
	if abandoned {
		// Executors that ignore their canceled context are left to
		// finish on their own; what they held is handed back now.
		close(p.stopCompleter)
		<-p.completerDone
		r.handBack(p.commitCtx, p.held)
		if p.cfg.devices != nil {
			// The completer is gone: the devices of executions that
			// return late go back to the pool from here.
			go func() {
				p.execs.Wait()
				close(p.results)
				for o := range p.results {
					p.cfg.devices.releaseAfter(o.dev, o.devGone)
				}
			}()
		}
	} else {
		p.execs.Wait()
		close(p.results)
		<-p.completerDone
	}
	p.stopUpkeep()
	<-p.upkeepDone
	// Hints still pending under this runner (read but never claimed,
	// or claimed by a call whose reply was lost) are settled like a
	// dead runner's: acknowledging them blindly could strand a task
	// that such a claim left running under this runner.
	if _, err := r.client.q.ReclaimOwn(p.commitCtx, r.cluster, r.id, r.streams); err != nil {
		r.logger.Warn("settle this runner's pending hints failed; they are reclaimed once it is gone", slog.Any("error", err))
	} else {
		p.reclaimedOwn = true
	}
}

// fetchAndRunLoop reads hints for free slots (blocking only when it has
// free slots and no backlog) and ahead of them, claims tasks for free slots
// and hands them to the executors until ctx ends, or, with untilIdle, until
// a read finds nothing and the runner holds nothing.
func (p *producer) fetchAndRunLoop(ctx context.Context, untilIdle bool) error {
	r, cfg, held, commitCtx := p.r, p.cfg, p.held, p.commitCtx
	block := time.Second
	if untilIdle {
		block = cfg.idleWait
	}
	// The waker ends a read blocked in Redis as soon as ctx is done.
	rd := &hintReader{r: r}
	defer rd.close()
	stopWaker := make(chan struct{})
	defer close(stopWaker)
	go rd.wakeOnCancel(ctx, commitCtx, stopWaker)

	retry := backoff.New(10*time.Millisecond, 5*time.Second)
	lastOrphans := time.Now()
	var lastEmpty time.Time // when a read ahead last found nothing
	for ctx.Err() == nil {
		if time.Since(lastOrphans) > orphanEvery {
			lastOrphans = time.Now()
			p.recoverOrphans()
		}
		if gate, ok := r.remote.(ReadyGate); ok {
			// Claim nothing the executor could not start now.
			select {
			case <-gate.Ready():
			case <-ctx.Done():
				continue
			}
		}
		if pool := cfg.devices; pool != nil {
			// Claim nothing while every device is busy: the fetch
			// below reserves a device per task before claiming it.
			select {
			case <-pool.available():
			case <-ctx.Done():
				continue
			}
		}
		before := held.count.Load()
		free := int(int64(cfg.concurrency) - before)
		ahead := p.readAhead()
		if free <= 0 {
			// Busy: keep the backlog the completer claims from filled,
			// without blocking, when tasks are short.
			if want := ahead - held.backlogLen(); want > 0 && time.Since(lastEmpty) > emptyReadPause {
				got, err := rd.read(commitCtx, p.entriesFor(want), noBlock)
				if err == nil && len(got) > 0 {
					p.admitRead(got, ahead)
					continue
				}
				lastEmpty = time.Now()
			}
			select {
			case <-held.freed:
			case <-ctx.Done():
			}
			continue
		}
		// At most maxClaim per claim keeps each call short in Redis.
		n := min(free, maxClaim)
		var batch []queue.Hint
		var devs [][]Device // one per task of batch with a device pool, else nil
		var err error
		read := 0
		if cfg.devices != nil {
			if read, devs, err = p.fetchForDevices(rd, n, block); err == nil {
				batch = held.take(len(devs))
			}
		} else if batch = held.take(n); len(batch) == 0 {
			// Idle slots and no backlog: block until hints arrive.
			var got []queue.Hint
			if got, err = rd.read(commitCtx, p.entriesFor(n+ahead), block); err == nil {
				read = len(got)
				p.admitRead(got, n+ahead)
				batch = held.take(n)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.logger.Warn("read task hints failed; backing off", slog.Any("error", err), slog.Duration("backoff", retry.Delay()))
			retry.Sleep(ctx)
			continue
		}
		if err := p.claimAndStart(batch, devs); err != nil {
			r.logger.Warn("claim tasks failed; backing off", slog.Any("error", err), slog.Duration("backoff", retry.Delay()))
			retry.Sleep(ctx)
			continue
		}
		retry.Reset()
		if untilIdle && read == 0 && len(batch) == 0 && before == 0 && held.backlogLen() == 0 {
			return nil
		}
	}
	return nil
}

// fetchForDevices reserves devices for up to n tasks and leaves in the
// backlog at most as many tasks as it reserved: a runner sharing a pool
// claims no task it has no device for (it would show as running while it
// waited) and sits on no hint another host could run. A backlog (hints put
// back after a failed claim, or recovered) is served first; else it reads,
// without holding a reservation while the read blocks, reserves devices for
// what came, and hands the rest on. It returns how many entries it read and
// the devices reserved, to pass to claimAndStart.
func (p *producer) fetchForDevices(rd *hintReader, n int, block time.Duration) (read int, devs [][]Device, err error) {
	pool := p.cfg.devices
	if p.held.backlogLen() > 0 {
		return 0, pool.tryReserve(n), nil
	}
	got, err := rd.read(p.commitCtx, p.entriesFor(n), block)
	if err != nil || len(got) == 0 {
		return 0, nil, err
	}
	var tasks int64
	for _, h := range got {
		tasks += h.N
	}
	devs = pool.tryReserve(min(n, int(tasks)))
	// Tasks beyond the reserved devices are handed on to other runners.
	p.admitRead(got, len(devs))
	return len(got), devs, nil
}

// entriesFor is how many stream entries to read for want tasks, from the
// tasks per entry of recent reads (entries name up to queue.HintRun tasks).
func (p *producer) entriesFor(want int) int {
	per := max(p.perEntry, 1)
	return max(1, int(float64(want)/per+0.999))
}

// admitRead queues hints just read in the backlog and hands on, to other
// runners, the tasks beyond keep that entries naming several tasks brought:
// COUNT counts entries (and applies per stream), so a read can bring more
// than was asked for.
func (p *producer) admitRead(got []queue.Hint, keep int) {
	if len(got) == 0 {
		return
	}
	r := p.r
	var tasks int64
	fresh := make(map[string]bool, len(got))
	for _, h := range got {
		tasks += h.N
		fresh[h.Key()] = true
	}
	p.perEntry = (max(p.perEntry, 1) + float64(tasks)/float64(len(got))) / 2
	acks := p.held.remember(got)
	if parts := p.held.handOn(keep, fresh); len(parts) > 0 {
		if err := r.client.q.Repost(p.commitCtx, parts); err != nil {
			r.logger.Warn("hand on task hints failed; keeping them", slog.Any("error", err))
			p.held.unread(parts)
		} else {
			acks = append(acks, p.held.drop(parts)...)
		}
	}
	p.ack(acks)
}

// ack acknowledges entries nothing here needs any more.
func (p *producer) ack(acks []queue.Hint) {
	if len(acks) == 0 {
		return
	}
	err := p.r.client.q.Ack(p.commitCtx, acks)
	if err != nil {
		p.r.logger.Warn("acknowledge task hints failed; the orphan scan will settle them", slog.Any("error", err))
	}
	p.held.acked(acks, err == nil)
}

// recoverOrphans queues the pending hints of this runner that nothing local
// holds, to be claimed again.
func (p *producer) recoverOrphans() {
	r := p.r
	mark := p.held.scanMark()
	if pending, err := r.client.q.ReadPending(p.commitCtx, r.id, r.streams, 1000); err == nil {
		n, acks := p.held.orphans(pending, mark)
		if n > 0 {
			r.logger.Info("recovering pending task hints of this runner", slog.Int("hints", n))
		}
		p.ack(acks)
	}
}

// claimAndStart claims the tasks batch names and hands those not already
// running to the executors, each with one of devs (nil without a device
// pool; devices left over go back to the pool). Tasks claimed before an
// error still start; hints of a failed call go back to the backlog.
func (p *producer) claimAndStart(batch []queue.Hint, devs [][]Device) error {
	r := p.r
	if len(batch) == 0 && len(devs) > 0 {
		p.cfg.devices.release(devs...)
		return nil
	}
	res, err := r.client.q.CommitAndClaim(p.commitCtx, r.id, queue.Commit{Claims: batch})
	start, acks := p.held.swap(nil, true, without(batch, res.Unclaimed), res.Claimed)
	p.held.unread(res.Unclaimed)
	p.ack(acks)
	p.dispatch(start, devs)
	return err
}

// drain waits for tasks in flight: without limit while ctx is live (RunAll
// finished), else up to the grace period, or until StopNow. Then it cancels
// the tasks' context and gives them a moment to return; it reports whether
// some did not, so the caller hands them back.
func (r *Runner) drain(ctx context.Context, cfg runConfig, held *holdings, cancelWork context.CancelFunc, stopNow <-chan struct{}) (abandoned bool) {
	var deadline <-chan time.Time
	if ctx.Err() != nil {
		t := time.NewTimer(cfg.grace)
		defer t.Stop()
		deadline = t.C
	}
	for held.count.Load() > 0 {
		select {
		case <-held.freed:
			continue
		case <-deadline:
		case <-stopNow:
		}
		r.logger.Warn("stopping: handing back running tasks", slog.Int64("tasks", held.count.Load()))
		cancelWork()
		// Tasks that honour their context return now and are handed back by
		// the completer; the rest are abandoned.
		wait := time.NewTimer(abandonAfter)
		defer wait.Stop()
		for held.count.Load() > 0 {
			select {
			case <-held.freed:
			case <-wait.C:
				return true
			}
		}
		return false
	}
	return false
}

// handBack re-queues every task still held, without counting a retry, and
// acknowledges their hints.
func (r *Runner) handBack(ctx context.Context, held *holdings) {
	tasks := held.runningTasks()
	if len(tasks) == 0 {
		return
	}
	fails := make([]queue.Failure, len(tasks))
	for i, c := range tasks {
		fails[i] = queue.Failure{JobID: c.JobID, Seq: c.Seq, Attempt: c.Attempt, HandBack: true,
			Error: "handed back: the runner stopped before the task finished", Claimed: c.Claimed}
	}
	if _, err := r.client.q.Fail(ctx, r.id, fails); err != nil {
		r.logger.Error("hand back running tasks failed; they are reclaimed when this runner's heartbeat expires", slog.Any("error", err))
		return
	}
	_, acks := held.swap(tasks, true, nil, nil)
	held.acked(acks, r.client.q.Ack(ctx, acks) == nil)
}
