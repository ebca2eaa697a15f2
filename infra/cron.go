package infra

import (
	"context"
	"fmt"

	"github.com/runfleet/runfleet/infra/schedsync"
)

// syncer is the schedule sync of cron automations for this stack: the
// same code the sweep function runs every minute.
func (e *Engine) syncer() *schedsync.Syncer {
	t := schedsync.Target{Mode: schedsync.Mode(e.stack.Schedule.Mode), Stack: e.stack.Name,
		FunctionARN: e.functionARN("submit")}
	if e.stack.Schedule.Mode == ScheduleScheduler {
		t.Group, t.RoleARN = e.scheduleGroup(), e.roleARN("scheduler")
	}
	return schedsync.New(e.cfg, t)
}

func (e *Engine) cronAutomations() []schedsync.Automation {
	var out []schedsync.Automation
	for _, a := range e.opts.Automations {
		if a.Cron != "" {
			out = append(out, schedsync.Automation{ID: a.ID, Name: a.Name, Cron: a.Cron, Timezone: a.Timezone, Paused: a.Paused})
		}
	}
	return out
}

func (e *Engine) cronKind() string {
	if e.stack.Schedule.Mode == ScheduleScheduler {
		return "cron schedule"
	}
	return "cron rule"
}

// syncCron plans or applies the cron automations' schedules, after the
// functions and the schedule group exist. On MinIO the gateway's own
// scheduler fires them.
func (e *Engine) syncCron(ctx context.Context, apply bool, rep *Report, progress func(Change)) error {
	if e.stack.Target == TargetMinIO || !e.opts.AutomationsKnown {
		return nil
	}
	autos := e.cronAutomations()
	var (
		changes []schedsync.Change
		err     error
	)
	if apply {
		changes, err = e.syncer().Apply(ctx, autos)
	} else {
		groupMissing := false
		if e.stack.Schedule.Mode == ScheduleScheduler {
			found, _, gerr := (&scheduleGroupResource{e: e}).read(ctx)
			if gerr != nil {
				return fmt.Errorf("read schedule group %s: %w", e.scheduleGroup(), gerr)
			}
			groupMissing = !found
		}
		if groupMissing {
			// Before the first deploy every schedule is new.
			for _, a := range autos {
				changes = append(changes, schedsync.Change{Action: schedsync.ActionCreate, Name: "cron-" + a.ID,
					Reason: a.Cron + " → " + e.functionName("submit")})
			}
		} else {
			changes, err = e.syncer().Plan(ctx, autos)
		}
	}
	e.reportCron(rep, progress, changes)
	if err != nil {
		return fmt.Errorf("sync cron automations' schedules: %w", err)
	}
	return nil
}

// syncCronDestroy deletes the cron rules of the stack (rules mode); in
// scheduler mode deleting the group deletes its schedules.
func (e *Engine) syncCronDestroy(ctx context.Context, rep *Report, progress func(Change)) error {
	if e.stack.Target == TargetMinIO || e.stack.Schedule.Mode != ScheduleRules {
		return nil
	}
	changes, err := e.syncer().Apply(ctx, nil)
	e.reportCron(rep, progress, changes)
	if err != nil {
		return fmt.Errorf("delete cron rules: %w", err)
	}
	return nil
}

// reportCron adds schedsync's changes to rep as the stack's resources.
func (e *Engine) reportCron(rep *Report, progress func(Change), changes []schedsync.Change) {
	for _, c := range changes {
		ch := Change{Type: e.cronKind(), Name: c.Name, Action: c.Action, Fields: c.Fields, Detail: c.Reason}
		rep.add(ch)
		if progress != nil {
			progress(ch)
		}
	}
}
