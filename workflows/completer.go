package workflows

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/runfleet/runfleet/internal/backoff"
	"github.com/runfleet/runfleet/queue"
)

// complete is the completer: it gathers whatever results are ready (at least
// one, at most 512), commits them in one call per job, acknowledges their
// hints and frees their slots.
func (r *Runner) complete(ctx context.Context, results <-chan outcome, held *holdings, lease func() time.Time, stop <-chan struct{}) {
	var acks sync.WaitGroup
	defer acks.Wait()
	for {
		var first outcome
		select {
		case o, ok := <-results:
			if !ok {
				return
			}
			first = o
		case <-stop:
			return
		}
		batch := []outcome{first}
	gather:
		for len(batch) < 512 {
			select {
			case o, ok := <-results:
				if !ok {
					break gather
				}
				batch = append(batch, o)
			default:
				break gather
			}
		}
		if r.commit(ctx, batch, lease) {
			hints := make([]queue.Hint, len(batch))
			for i, o := range batch {
				hints[i] = o.claim.Hint
			}
			// The results are in: acknowledging can overlap the next batch.
			acks.Add(1)
			go func() {
				defer acks.Done()
				if err := r.client.q.Ack(ctx, hints); err != nil {
					r.logger.Warn("acknowledge committed tasks failed; the orphan scan will settle them", slog.Any("error", err))
				}
			}()
		}
		done := make([]queue.Claimed, len(batch))
		for i, o := range batch {
			done[i] = o.claim
		}
		held.finish(done)
	}
}

// commit writes a batch of results, retrying while Redis is unreachable
// until the runner's lease runs out (then other runners may have taken the
// tasks). It reports whether everything was written; if not, the tasks stay
// running under this runner with their hints pending, and the orphan scan
// (or, once the lease is gone, another runner) runs them again.
func (r *Runner) commit(ctx context.Context, batch []outcome, lease func() time.Time) bool {
	var comps []queue.Completion
	var fails []queue.Failure
	for _, o := range batch {
		switch {
		case o.done != nil:
			comps = append(comps, *o.done)
		case errors.Is(o.err, queue.ErrLost):
		default:
			f := queue.Failure{JobID: o.claim.JobID, Seq: o.claim.Seq, Attempt: o.claim.Attempt,
				Error: o.err.Error(), HandBack: o.handBack, Lost: o.lost}
			if o.exec != nil {
				f.Display, f.Progress = o.exec.display, o.exec.progressJSON()
			}
			fails = append(fails, f)
		}
	}
	retry := backoff.New(10*time.Millisecond, 2*time.Second)
	for attempt := 1; ; attempt++ {
		var err error
		if len(comps) > 0 {
			var res []error
			res, err = r.client.q.Complete(ctx, r.id, comps)
			if err == nil {
				r.republishRefused(ctx, comps, res)
				comps = nil
			}
		}
		if err == nil && len(fails) > 0 {
			var res []string
			res, err = r.client.q.Fail(ctx, r.id, fails)
			if err == nil {
				for i, o := range res {
					if o == queue.OutcomeLost {
						r.republish(ctx, fails[i].JobID)
					}
				}
				fails = nil
			}
		}
		if err == nil {
			return true
		}
		if attempt >= 3 && time.Now().After(lease()) {
			r.logger.Error("giving up committing task results: this runner's lease ran out; the tasks will run again",
				slog.Any("error", err))
			return false
		}
		r.logger.Warn("commit task results failed; retrying", slog.Any("error", err))
		retry.Sleep(ctx)
	}
}

// republishRefused handles completions Redis refused because the task is no
// longer held at this attempt. That is also what a retried call sees when its
// first reply was lost after the commit landed, so the job's outbox is
// republished: whatever that commit made ready is published, at worst twice.
func (r *Runner) republishRefused(ctx context.Context, comps []queue.Completion, res []error) {
	for i, e := range res {
		if e == nil {
			continue
		}
		r.logger.Warn("completion refused: task no longer held by this runner at this attempt",
			slog.String("job_id", comps[i].JobID), slog.Int64("task_id", comps[i].Seq))
		r.republish(ctx, comps[i].JobID)
	}
}

func (r *Runner) republish(ctx context.Context, jobID string) {
	if err := r.client.q.Republish(ctx, jobID); err != nil {
		r.logger.Warn("republish job outbox failed", slog.String("job_id", jobID), slog.Any("error", err))
	}
}
