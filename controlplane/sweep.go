package controlplane

import (
	"context"

	"github.com/runfleet/runfleet/workflows"
)

// SweepReport counts what one sweep did.
type SweepReport struct {
	// Reclaim is what Client.Sweep did: dead runners, re-queued tasks,
	// republished hints.
	Reclaim workflows.SweepReport `json:"-"`
	// StagesDropped counts staged subtask records of attempts that never
	// committed, deleted.
	StagesDropped int `json:"stages_dropped"`
	// Archived counts finished jobs written to the store and removed from
	// Redis.
	Archived int `json:"archived"`
	// Notified counts job notifications delivered (acknowledged with 2xx);
	// NotifyFailed those whose attempt failed and stay pending.
	Notified     int `json:"notified"`
	NotifyFailed int `json:"notify_failed"`
}

// Sweep runs the periodic upkeep once: reclaim dead runners' tasks,
// republish outboxes, drop staged chunks of attempts that never committed,
// archive finished jobs older than the retention, deliver pending job
// notifications, and write one metrics line per cluster.
func (s *Server) Sweep(ctx context.Context) (SweepReport, error) {
	var rep SweepReport
	r, err := s.cfg.Client.Sweep(ctx)
	rep.Reclaim = r
	if err != nil {
		return rep, err
	}
	// TODO(sweep helper): stages, archive, metrics. TODO(notifications): delivery.
	return rep, nil
}
