package workflows

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/runfleet/runfleet/internal/backoff"
	"github.com/runfleet/runfleet/queue"
)

// A completer whose tasks average under lingerBelow waits up to lingerFor
// for the rest of a batch (see linger).
const (
	lingerBelow = time.Millisecond
	lingerFor   = 200 * time.Microsecond
)

// ackDelay is how long the completer keeps the hints of committed results
// to acknowledge them with its next round trip, before it sends them alone
// (at once when nothing runs).
const ackDelay = 2 * time.Millisecond

// complete is the completer. It gathers whatever results are ready (at least
// one, at most 512) and sends them in one round trip that also claims tasks
// for the slots they free (hints from the backlog, see producer) and
// acknowledges the hints of the previous commit. A runner whose tasks are
// short thus costs one round trip per batch; the slots of a batch are
// refilled by the call that commits it.
func (p *producer) complete() {
	r, ctx, held := p.r, p.commitCtx, p.held
	var acks []queue.Hint // entries whose tasks are all accounted for, not acknowledged yet
	flush := func() {
		if len(acks) == 0 {
			return
		}
		err := r.client.q.Ack(ctx, acks)
		if err != nil {
			r.logger.Warn("acknowledge committed tasks failed; the orphan scan will settle them", slog.Any("error", err))
		}
		held.acked(acks, err == nil)
		acks = nil
	}
	defer flush()
	ackTimer := time.NewTimer(time.Hour)
	ackTimer.Stop()
	for {
		var first outcome
		if len(acks) > 0 && held.count.Load() == 0 {
			flush() // nothing runs: no round trip is coming to carry them
		}
		if len(acks) > 0 {
			ackTimer.Reset(ackDelay)
		}
		select {
		case o, ok := <-p.results:
			if !ok {
				return
			}
			first = o
		case <-ackTimer.C:
			flush()
			continue
		case <-p.stopCompleter:
			return
		}
		ackTimer.Stop()
		batch := []outcome{first}
	gather:
		for len(batch) < 512 {
			select {
			case o, ok := <-p.results:
				if !ok {
					break gather
				}
				batch = append(batch, o)
			default:
				break gather
			}
		}
		batch = p.linger(batch)
		want := len(batch)
		var devs [][]Device
		if p.cfg.devices != nil {
			// The batch's devices go to the tasks claimed with its commit;
			// the rest go back to the pool once it is committed.
			devs = p.keepDevices(batch)
			want = len(devs)
		}
		claims := p.claimsFor(want)
		claimed, unclaimed, ok, acksOK := p.commit(batch, claims, acks)
		held.acked(acks, acksOK)
		done := make([]queue.Claimed, len(batch))
		for i, o := range batch {
			done[i] = o.claim
		}
		// A commit that gave up leaves its tasks' entries pending: the
		// orphan scan settles them.
		var start []queue.Claimed
		start, acks = held.swap(done, ok, without(claims, unclaimed), claimed)
		held.unread(unclaimed)
		p.dispatch(start, devs)
	}
}

// keepDevices takes the devices of a batch's executions to reuse for the
// tasks its commit claims. A device an abandoned execution's worker may
// still use is not reused: it goes back to the pool once that worker is
// gone.
func (p *producer) keepDevices(batch []outcome) [][]Device {
	devs := make([][]Device, 0, len(batch))
	for i, o := range batch {
		if o.dev == nil {
			continue
		}
		if o.devGone != nil {
			p.cfg.devices.releaseAfter(o.dev, o.devGone)
		} else {
			devs = append(devs, o.dev)
		}
		batch[i].dev = nil
	}
	return devs
}

// without returns hints minus those in drop (the same parts).
func without(hints, drop []queue.Hint) []queue.Hint {
	if len(drop) == 0 {
		return hints
	}
	type part struct {
		key    string
		seq, n int64
	}
	skip := map[part]bool{}
	for _, h := range drop {
		skip[part{h.Key(), h.Seq, h.N}] = true
	}
	var out []queue.Hint
	for _, h := range hints {
		if !skip[part{h.Key(), h.Seq, h.N}] {
			out = append(out, h)
		}
	}
	return out
}

// dispatch hands claimed tasks to the executors, each with one of devs
// (nil without a device pool; there is one per task), and returns the
// devices left over to the pool. Once the executors are shut down, tasks
// stay held and are handed back with the rest.
func (p *producer) dispatch(start []queue.Claimed, devs [][]Device) {
	p.workMu.Lock()
	defer p.workMu.Unlock()
	used := 0
	if !p.workClosed {
		for i, c := range start {
			var dev []Device
			if devs != nil {
				dev = devs[i]
			}
			p.work <- assigned{claim: c, dev: dev}
		}
		used = len(start)
	}
	if len(devs) > used {
		p.cfg.devices.release(devs[used:]...)
	}
}

// linger waits a moment for the rest of a batch of short tasks: tasks
// claimed together finish together, and one call for all of them costs Redis
// far less than one per few. It waits only while the runner's executions
// average under lingerBelow, at most lingerFor, and only for tasks that are
// executing now.
func (p *producer) linger(batch []outcome) []outcome {
	avg := time.Duration(p.execAvg.Load())
	want := min(int(p.held.count.Load()), 512)
	if len(batch) >= want || avg == 0 || avg >= lingerBelow {
		return batch
	}
	t := time.NewTimer(lingerFor)
	defer t.Stop()
	for len(batch) < want {
		select {
		case o, ok := <-p.results:
			if !ok {
				return batch
			}
			batch = append(batch, o)
		case <-t.C:
			return batch
		}
	}
	return batch
}

// claimsFor takes up to n hints from the backlog for the slots a batch of
// results frees (with a device pool: for the devices it keeps), unless the runner is stopping or the executor cannot start
// tasks now.
func (p *producer) claimsFor(n int) []queue.Hint {
	if p.stopClaims.Load() {
		return nil
	}
	if gate, ok := p.r.remote.(ReadyGate); ok {
		select {
		case <-gate.Ready():
		default:
			return nil
		}
	}
	return p.held.take(n)
}

// commit writes a batch of results, claims for claims and acknowledges
// acks in one round trip, then retries what did not land while Redis is
// unreachable, until the runner's lease runs out (then other runners may
// have taken the tasks). It returns the tasks claimed and reports whether
// every result was written; if not, the tasks stay running under this
// runner with their hints pending, and the orphan scan (or, once the lease
// is gone, another runner) runs them again. Claims of a failed call are
// returned as unclaimed: their hints are still pending under this runner.
// acksOK reports whether acks were acknowledged.
func (p *producer) commit(batch []outcome, claims, acks []queue.Hint) (claimed []queue.Claimed, unclaimed []queue.Hint, ok, acksOK bool) {
	r, ctx, lease := p.r, p.commitCtx, p.beat.lease
	var comps []queue.Completion
	var fails []queue.Failure
	// With metrics, mComps and mFails follow comps and fails.
	mComps, mFails := p.metricComps[:0], p.metricFails[:0]
	defer func() { clear(mComps); clear(mFails); p.metricComps, p.metricFails = mComps[:0], mFails[:0] }()
	metrics := p.metrics != nil
	for i := range batch {
		o := &batch[i]
		switch {
		case o.done != nil:
			o.done.StartDelay = o.start.Sub(o.claim.Claimed)
			comps = append(comps, *o.done)
			if metrics {
				mComps = append(mComps, o)
			}
		case errors.Is(o.err, queue.ErrLost):
			if o.m != nil {
				o.m.finished(outcomeLost, o.took)
			}
		default:
			f := queue.Failure{JobID: o.claim.JobID, Seq: o.claim.Seq, Attempt: o.claim.Attempt,
				Error: o.err.Error(), HandBack: o.handBack, Lost: o.lost,
				Claimed: o.claim.Claimed, Started: o.start, Stack: panicStack(o.err)}
			if o.exec != nil {
				f.Display, f.Progress = o.exec.display, o.exec.progressJSON()
			}
			fails = append(fails, f)
			if metrics {
				mFails = append(mFails, o)
			}
		}
	}
	acksOK = len(acks) == 0
	if tl := r.taskLogs.Load(); tl != nil && tl.sink != nil && (len(comps) > 0 || len(fails) > 0) {
		tl.sink.flushPending()
	}
	contexts := r.takeContexts()
	retry := backoff.New(10*time.Millisecond, 2*time.Second)
	for attempt := 1; ; attempt++ {
		var err error
		if len(comps) > 0 || len(claims) > 0 || len(acks) > 0 || len(contexts) > 0 {
			var res queue.CommitResult
			res, err = r.client.q.CommitAndClaim(ctx, r.id,
				queue.Commit{Completions: comps, Claims: claims, Acks: acks, Contexts: contexts})
			if res.ContextErr != nil {
				r.logger.Warn("could not record the runner's context with its jobs; their attempts show the runner id only",
					slog.Any("error", res.ContextErr))
			}
			contexts = nil
			claimed = append(claimed, res.Claimed...)
			unclaimed = append(unclaimed, res.Unclaimed...)
			if len(acks) > 0 {
				acksOK = res.AckErr == nil
			}
			claims, acks = nil, nil
			var again []queue.Completion
			var mAgain []*outcome
			republish := map[string]bool{}
			for i, e := range res.Completed {
				switch {
				case e == nil && err != nil:
					// Committed, but something after it failed (publishing
					// what it made ready): the job's outbox still holds that.
					republish[comps[i].JobID] = true
					if metrics {
						mComps[i].count(outcomeComputed)
					}
				case e == nil:
					if metrics {
						mComps[i].count(outcomeComputed)
					}
				case errors.Is(e, queue.ErrLost):
					r.refused(ctx, comps[i])
					if metrics {
						mComps[i].count(outcomeLost)
					}
				default:
					again = append(again, comps[i])
					if metrics {
						mAgain = append(mAgain, mComps[i])
					}
				}
			}
			if metrics {
				mComps = append(mComps[:0], mAgain...)
			}
			for job := range republish {
				r.republish(ctx, job)
			}
			if err != nil && len(again) == 0 {
				// Every result landed; what failed was a claim (its hints
				// are back in the backlog) or a publish (republished).
				r.logger.Warn("claim or publish after a commit failed", slog.Any("error", err))
				err = nil
			}
			comps = again
		}
		if err == nil && len(fails) > 0 {
			var res []string
			res, err = r.client.q.Fail(ctx, r.id, fails)
			if err == nil {
				for i, o := range res {
					if o == queue.OutcomeLost {
						r.republish(ctx, fails[i].JobID)
					}
					if metrics {
						mFails[i].count(failOutcome(fails[i], o))
					}
				}
				fails = nil
			}
		}
		if err == nil && len(comps) == 0 {
			return claimed, unclaimed, true, acksOK
		}
		if err == nil {
			err = errors.New("some results were not committed")
		}
		if attempt >= 3 && time.Now().After(lease()) {
			r.logger.Error("giving up committing task results: this runner's lease ran out; the tasks will run again",
				slog.Any("error", err))
			return claimed, unclaimed, false, acksOK
		}
		r.logger.Warn("commit task results failed; retrying", slog.Any("error", err))
		retry.Sleep(ctx)
	}
}

// refused handles a completion Redis refused because the task is no longer
// held at this attempt. That is also what a retried call sees when its first
// reply was lost after the commit landed, so the job's outbox is
// republished: whatever that commit made ready is published, at worst twice.
func (r *Runner) refused(ctx context.Context, c queue.Completion) {
	r.logger.Warn("completion refused: task no longer held by this runner at this attempt",
		slog.String("job_id", c.JobID), slog.Int64("task_id", c.Seq))
	r.republish(ctx, c.JobID)
}

func (r *Runner) republish(ctx context.Context, jobID string) {
	if err := r.client.q.Republish(ctx, jobID); err != nil {
		r.logger.Warn("republish job outbox failed", slog.String("job_id", jobID), slog.Any("error", err))
	}
}
