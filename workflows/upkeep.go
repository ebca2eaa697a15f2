package workflows

import (
	"context"
	"log/slog"
	"time"

	"github.com/runfleet/runfleet/internal/backoff"
)

// maintain does the runner's share of fleet upkeep until ctx ends: trimming
// its streams and reclaiming the tasks of dead runners of its cluster.
func (r *Runner) maintain(ctx context.Context, cfg runConfig) {
	trim := time.NewTicker(trimEvery)
	defer trim.Stop()
	reclaim := time.NewTimer(backoff.Jitter(cfg.reclaimEvery))
	defer reclaim.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-trim.C:
			if err := r.client.q.TrimStreams(ctx, r.streams); err != nil && ctx.Err() == nil {
				r.logger.Warn("trim task streams failed", slog.Any("error", err))
			}
		case <-reclaim.C:
			rep, err := r.client.q.ReclaimDead(ctx, r.cluster, r.id, r.streams, 20)
			if err != nil && ctx.Err() == nil {
				r.logger.Warn("reclaim dead runners failed", slog.Any("error", err))
			}
			if rep.Runners > 0 {
				r.logger.Info("reclaimed dead runners", slog.Int("runners", rep.Runners),
					slog.Int("requeued", rep.Requeued), slog.Int("failed", rep.Failed), slog.Int("republished", rep.Republish))
			}
			reclaim.Reset(backoff.Jitter(cfg.reclaimEvery))
		}
	}
}
