package controlplane

import (
	"context"
	"log/slog"

	"github.com/runfleet/runfleet/infra/schedsync"
)

// On AWS, cron automations fire from EventBridge: one schedule each (see
// infra/schedsync), which the deploy creates and the sweep keeps in sync
// (Config.Schedules), so an automation created, changed, paused or
// deleted reaches EventBridge within a sweep, without a deploy.
//
// With Config.Schedules set, the sweep also fires the due tick of every
// cron automation itself (FireDueTicks), as the gateway's scheduler does.
// That covers what EventBridge cannot express (seconds, @every, both day
// fields, a timezone on LocalStack's rules), a tick between an
// automation's creation and the next sync, and a tick EventBridge failed
// to deliver. It never makes a second job: a tick's submission is keyed by
// automation and tick time (cron:<id>:<unix>), so the schedule's and the
// sweep's firing of one tick are one job. The sweep runs once a minute and
// fires only the latest due tick of each automation, so a schedule more
// frequent than a minute gets one job per sweep there, not one per tick.

// syncSchedules makes the EventBridge schedules match the cron automations
// in Redis and returns how many it created, updated or deleted.
func (s *Server) syncSchedules(ctx context.Context) (int, error) {
	autos, err := ListAutomations(ctx, s.cfg.Client)
	if err != nil {
		return 0, err
	}
	want := make([]schedsync.Automation, 0, len(autos))
	for _, a := range autos {
		if a.Cron == "" {
			continue
		}
		want = append(want, schedsync.Automation{ID: a.ID, Name: a.Name, Cron: a.Cron, Timezone: a.Timezone, Paused: a.Paused})
	}
	changes, err := s.cfg.Schedules.Apply(ctx, want)
	n := 0
	for _, c := range changes {
		switch c.Action {
		case schedsync.ActionCreate, schedsync.ActionUpdate, schedsync.ActionDelete:
			n++
			s.log.Info("cron schedule "+c.Action+"d", slog.String("schedule", c.Name),
				slog.Any("fields", c.Fields), slog.String("reason", c.Reason))
		case schedsync.ActionSkip:
			s.log.Debug("cron automation fired by the sweep", slog.String("schedule", c.Name), slog.String("reason", c.Reason))
		}
	}
	return n, err
}
