package workflows

import (
	"context"
	"log/slog"
	"time"

	"github.com/runfleet/runfleet/internal/backoff"
)

// maintain does the runner's share of fleet upkeep until ctx ends: trimming
// its streams and reclaiming the tasks of dead runners of its cluster.
//
// A runner trims only after it has read or acknowledged hints (held.touched)
// or reclaimed a dead runner: entries become trimmable only then, and
// trimming costs three commands per stream, which would otherwise be most
// of what an idle fleet asks of Redis. It trims once at the start, for
// whatever earlier runs left.
func (r *Runner) maintain(ctx context.Context, cfg runConfig, held *holdings) {
	trim := time.NewTicker(trimEvery)
	defer trim.Stop()
	reclaim := time.NewTimer(backoff.Jitter(cfg.reclaimEvery))
	defer reclaim.Stop()
	held.touched.Store(true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-trim.C:
			if !held.touched.Swap(false) {
				continue
			}
			if err := r.client.q.TrimStreams(ctx, r.streams); err != nil && ctx.Err() == nil {
				held.touched.Store(true) // try again next time
				r.logger.Warn("trim task streams failed", slog.Any("error", err))
			}
		case <-reclaim.C:
			rep, err := r.client.q.ReclaimDead(ctx, r.cluster, r.id, r.streams, 20)
			if err != nil && ctx.Err() == nil {
				r.logger.Warn("reclaim dead runners failed", slog.Any("error", err))
			}
			if rep.Runners > 0 {
				held.touched.Store(true) // their pending entries are settled
				r.logger.Info("reclaimed dead runners", slog.Int("runners", rep.Runners),
					slog.Int("requeued", rep.Requeued), slog.Int("failed", rep.Failed), slog.Int("republished", rep.Republish))
			}
			reclaim.Reset(backoff.Jitter(cfg.reclaimEvery))
		}
	}
}
