package controlplane

import (
	"context"
	"time"

	"github.com/robfig/cron/v3"
)

// maxCatchUp bounds how many ticks one walk steps through.
const maxCatchUp = 100000

// latestTick is the last tick of sched after from and not after now, or
// zero. A dense schedule missed for long would take many steps from
// "from": the last hour is looked at first, and further back only when it
// has no tick (a sparse schedule, few steps).
func latestTick(sched cron.Schedule, from, now time.Time) time.Time {
	walk := func(from time.Time) time.Time {
		var due time.Time
		for t, n := sched.Next(from), 0; !t.IsZero() && !t.After(now) && n < maxCatchUp; t, n = sched.Next(t), n+1 {
			due = t
		}
		return due
	}
	if recent := now.Add(-time.Hour); from.Before(recent) {
		if due := walk(recent); !due.IsZero() {
			return due
		}
	}
	return walk(from)
}

// FireDueTicks fires, for every active cron automation, its latest tick
// that is due and not yet fired, and records it. Ticks missed while no
// scheduler ran are skipped except that latest one: a schedule that was
// down for a night runs once when it comes back, not once per missed tick.
// A new automation's first tick is the first after its creation. Ticks
// that pass while an automation is paused are recorded as skipped.
//
// Any number of schedulers (gateways) may run this at once against one
// Redis: they compute the same ticks, and each tick's submission is
// idempotent, so each tick makes exactly one job.
func (s *Server) FireDueTicks(ctx context.Context) (int, error) {
	autos, err := ListAutomations(ctx, s.cfg.Client)
	if err != nil {
		return 0, err
	}
	ticks, err := s.cfg.Client.Queue().CronTicks(ctx)
	if err != nil {
		return 0, err
	}
	now := s.cfg.Now()
	fired := 0
	for _, a := range autos {
		if a.Cron == "" {
			continue
		}
		sched, err := parseCron(a.Cron, a.Timezone)
		if err != nil {
			s.log.Error("cron automation has a bad schedule", "automation", a.Name, "err", err)
			continue
		}
		from := a.CreatedAt
		if ms, ok := ticks[a.ID]; ok && ms > 0 {
			from = time.UnixMilli(ms)
		}
		due := latestTick(sched, from, now)
		if due.IsZero() {
			continue
		}
		if a.Paused {
			// Ticks that pass while paused are skipped: recording them
			// keeps a resumed automation from catching up.
			if err := s.cfg.Client.Queue().SetCronTick(ctx, a.ID, due); err != nil {
				return fired, err
			}
			continue
		}
		if _, err := s.HandleSchedule(ctx, ScheduleEvent{Automation: a.ID, ScheduledTime: due}); err != nil {
			s.log.Error("cron tick failed; retried on the next pass", "automation", a.Name, "tick", due, "err", err)
			continue
		}
		if err := s.cfg.Client.Queue().SetCronTick(ctx, a.ID, due); err != nil {
			return fired, err
		}
		fired++
	}
	return fired, nil
}
