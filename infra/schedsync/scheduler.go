package schedsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	"github.com/aws/aws-sdk-go-v2/service/scheduler/types"
)

// schedulePrefix starts the name of every schedule this package owns in
// the group; the sweep's own schedule and anything else there is not
// named so.
const schedulePrefix = "cron-"

// scheduledTime is the context attribute EventBridge Scheduler replaces
// with the tick's time (RFC 3339, UTC) in the target input.
const scheduledTime = "<aws.scheduler.scheduled-time>"

// schedules is the Scheduler mode: one schedule per automation in the
// stack's group.
type schedules struct {
	c *scheduler.Client
	t Target
}

func (b *schedules) nameOf(id string) string { return schedulePrefix + id }

func (b *schedules) fill(d *desired) {
	in, _ := json.Marshal(map[string]string{"automation": d.automation, "scheduled_time": scheduledTime})
	d.input = string(in)
	d.target = b.t.FunctionARN + " role " + b.t.RoleARN
}

func (b *schedules) where(name string) string {
	return fmt.Sprintf("schedule %s in group %s", name, b.t.Group)
}

func (b *schedules) list(ctx context.Context) (map[string]desired, error) {
	// A missing group would otherwise list as empty and fail every
	// create with a less helpful message. Any other error (a role that
	// may not read groups) is left to the calls that need to succeed.
	_, err := b.c.GetScheduleGroup(ctx, &scheduler.GetScheduleGroupInput{Name: &b.t.Group})
	var missing *types.ResourceNotFoundException
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("schedule group %s does not exist: `runfleet infra deploy` creates it", b.t.Group)
	}
	have := map[string]desired{}
	p := scheduler.NewListSchedulesPaginator(b.c, &scheduler.ListSchedulesInput{
		GroupName: &b.t.Group, NamePrefix: aws.String(schedulePrefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list schedules in group %s: %w", b.t.Group, err)
		}
		for _, s := range page.Schedules {
			name := aws.ToString(s.Name)
			// Checked again: not every implementation filters by prefix
			// and group.
			if !strings.HasPrefix(name, schedulePrefix) || aws.ToString(s.GroupName) != b.t.Group {
				continue
			}
			got, err := b.c.GetSchedule(ctx, &scheduler.GetScheduleInput{Name: &name, GroupName: &b.t.Group})
			if err != nil {
				var nf *types.ResourceNotFoundException
				if errors.As(err, &nf) {
					continue // deleted meanwhile
				}
				return nil, fmt.Errorf("get %s: %w", b.where(name), err)
			}
			d := desired{
				name:        name,
				expression:  aws.ToString(got.ScheduleExpression),
				timezone:    aws.ToString(got.ScheduleExpressionTimezone),
				enabled:     got.State != types.ScheduleStateDisabled,
				description: aws.ToString(got.Description),
			}
			if d.timezone == "" {
				d.timezone = "UTC"
			}
			if got.Target != nil {
				d.input = aws.ToString(got.Target.Input)
				d.target = aws.ToString(got.Target.Arn) + " role " + aws.ToString(got.Target.RoleArn)
			}
			if got.FlexibleTimeWindow == nil || got.FlexibleTimeWindow.Mode != types.FlexibleTimeWindowModeOff {
				// A flexible window would move the tick: count it as the
				// expression changing.
				d.expression += " (flexible)"
			}
			have[name] = d
		}
	}
	return have, nil
}

func (b *schedules) state(d desired) types.ScheduleState {
	if d.enabled {
		return types.ScheduleStateEnabled
	}
	return types.ScheduleStateDisabled
}

func (b *schedules) target(d desired) *types.Target {
	return &types.Target{Arn: &b.t.FunctionARN, RoleArn: &b.t.RoleARN, Input: aws.String(d.input)}
}

func (b *schedules) create(ctx context.Context, d desired) error {
	_, err := b.c.CreateSchedule(ctx, &scheduler.CreateScheduleInput{
		Name: &d.name, GroupName: &b.t.Group, Description: &d.description,
		ScheduleExpression: &d.expression, ScheduleExpressionTimezone: &d.timezone,
		FlexibleTimeWindow: &types.FlexibleTimeWindow{Mode: types.FlexibleTimeWindowModeOff},
		State:              b.state(d), Target: b.target(d),
	})
	var conflict *types.ConflictException
	if errors.As(err, &conflict) {
		// Created meanwhile by another sync (a deploy and a sweep):
		// make it ours.
		return b.update(ctx, d)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", b.where(d.name), err)
	}
	return nil
}

func (b *schedules) update(ctx context.Context, d desired) error {
	// UpdateSchedule replaces every field, so all are given.
	_, err := b.c.UpdateSchedule(ctx, &scheduler.UpdateScheduleInput{
		Name: &d.name, GroupName: &b.t.Group, Description: &d.description,
		ScheduleExpression: &d.expression, ScheduleExpressionTimezone: &d.timezone,
		FlexibleTimeWindow: &types.FlexibleTimeWindow{Mode: types.FlexibleTimeWindowModeOff},
		State:              b.state(d), Target: b.target(d),
	})
	if err != nil {
		return fmt.Errorf("update %s: %w", b.where(d.name), err)
	}
	return nil
}

func (b *schedules) delete(ctx context.Context, name string) error {
	_, err := b.c.DeleteSchedule(ctx, &scheduler.DeleteScheduleInput{Name: &name, GroupName: &b.t.Group})
	var nf *types.ResourceNotFoundException
	if err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("delete %s: %w", b.where(name), err)
	}
	return nil
}
