package infra

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	schedtypes "github.com/aws/aws-sdk-go-v2/service/scheduler/types"
)

// scheduleGroupResource is the EventBridge Scheduler group holding the
// sweep's schedule and the cron automations' schedules. Schedules take no
// tags, so the group carries the stack's tag, and deleting it deletes them.
type scheduleGroupResource struct{ e *Engine }

func (g *scheduleGroupResource) kind() string { return "schedule group" }
func (g *scheduleGroupResource) name() string { return g.e.scheduleGroup() }

func (g *scheduleGroupResource) read(ctx context.Context) (bool, map[string]string, error) {
	out, err := g.e.sched.GetScheduleGroup(ctx, &scheduler.GetScheduleGroupInput{Name: aws.String(g.name())})
	if isNotFound(err) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, err
	}
	tags, err := g.e.sched.ListTagsForResource(ctx, &scheduler.ListTagsForResourceInput{ResourceArn: out.Arn})
	if err != nil {
		return false, nil, fmt.Errorf("list tags: %w", err)
	}
	m := map[string]string{}
	for _, t := range tags.Tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return true, m, nil
}

func (g *scheduleGroupResource) schedTags() []schedtypes.Tag {
	return []schedtypes.Tag{{Key: aws.String(TagKey), Value: aws.String(g.e.stack.Name)}}
}

func (g *scheduleGroupResource) plan(ctx context.Context) (diff, error) {
	var d diff
	found, tags, err := g.read(ctx)
	if err != nil {
		return d, err
	}
	if !found {
		d.action, d.detail = ActionCreate, "holds the sweep's and the cron automations' schedules"
		return d, nil
	}
	if err := g.e.claim(tags[TagKey], &d); err != nil {
		return d, err
	}
	return d, nil
}

func (g *scheduleGroupResource) apply(ctx context.Context, d diff) error {
	if d.action == ActionCreate {
		_, err := g.e.sched.CreateScheduleGroup(ctx, &scheduler.CreateScheduleGroupInput{Name: aws.String(g.name()), Tags: g.schedTags()})
		return err
	}
	arn := fmt.Sprintf("arn:aws:scheduler:%s:%s:schedule-group/%s", g.e.region, g.e.account, g.name())
	_, err := g.e.sched.TagResource(ctx, &scheduler.TagResourceInput{ResourceArn: aws.String(arn), Tags: g.schedTags()})
	return err
}

func (g *scheduleGroupResource) inspect(ctx context.Context) (presence, error) {
	found, tags, err := g.read(ctx)
	return presence{exists: found, owner: tags[TagKey]}, err
}

func (g *scheduleGroupResource) remove(ctx context.Context) error {
	_, err := g.e.sched.DeleteScheduleGroup(ctx, &scheduler.DeleteScheduleGroupInput{Name: aws.String(g.name())})
	if isNotFound(err) {
		return nil
	}
	return err
}

// sweepScheduleResource runs the sweep function every minute through
// EventBridge Scheduler, with the scheduler role.
type sweepScheduleResource struct{ e *Engine }

func (s *sweepScheduleResource) kind() string { return "schedule" }
func (s *sweepScheduleResource) name() string { return s.e.scheduleGroup() + "/sweep" }

func (s *sweepScheduleResource) plan(ctx context.Context) (diff, error) {
	var d diff
	out, err := s.e.sched.GetSchedule(ctx, &scheduler.GetScheduleInput{Name: aws.String("sweep"), GroupName: aws.String(s.e.scheduleGroup())})
	if isNotFound(err) {
		d.action, d.detail = ActionCreate, s.e.stack.Schedule.Sweep+" → "+s.e.functionName("sweep")
		return d, nil
	}
	if err != nil {
		return d, err
	}
	if got := aws.ToString(out.ScheduleExpression); got != s.e.stack.Schedule.Sweep {
		d.change("expression", got, s.e.stack.Schedule.Sweep)
	}
	if out.State != schedtypes.ScheduleStateEnabled {
		d.change("state", string(out.State), string(schedtypes.ScheduleStateEnabled))
	}
	if out.Target == nil || aws.ToString(out.Target.Arn) != s.e.functionARN("sweep") {
		d.changed("target")
	}
	if out.Target == nil || aws.ToString(out.Target.RoleArn) != s.e.roleARN("scheduler") {
		d.changed("role")
	}
	return d, nil
}

func (s *sweepScheduleResource) apply(ctx context.Context, d diff) error {
	target := &schedtypes.Target{Arn: aws.String(s.e.functionARN("sweep")), RoleArn: aws.String(s.e.roleARN("scheduler"))}
	window := &schedtypes.FlexibleTimeWindow{Mode: schedtypes.FlexibleTimeWindowModeOff}
	if d.action == ActionCreate {
		_, err := s.e.sched.CreateSchedule(ctx, &scheduler.CreateScheduleInput{Name: aws.String("sweep"), GroupName: aws.String(s.e.scheduleGroup()),
			ScheduleExpression: aws.String(s.e.stack.Schedule.Sweep), State: schedtypes.ScheduleStateEnabled,
			FlexibleTimeWindow: window, Target: target, Description: aws.String("runfleet sweep")})
		return err
	}
	_, err := s.e.sched.UpdateSchedule(ctx, &scheduler.UpdateScheduleInput{Name: aws.String("sweep"), GroupName: aws.String(s.e.scheduleGroup()),
		ScheduleExpression: aws.String(s.e.stack.Schedule.Sweep), State: schedtypes.ScheduleStateEnabled,
		FlexibleTimeWindow: window, Target: target, Description: aws.String("runfleet sweep")})
	return err
}

func (s *sweepScheduleResource) inspect(ctx context.Context) (presence, error) {
	_, err := s.e.sched.GetSchedule(ctx, &scheduler.GetScheduleInput{Name: aws.String("sweep"), GroupName: aws.String(s.e.scheduleGroup())})
	if isNotFound(err) {
		return presence{}, nil
	}
	return presence{exists: err == nil, tagless: true}, err
}

func (s *sweepScheduleResource) remove(ctx context.Context) error {
	_, err := s.e.sched.DeleteSchedule(ctx, &scheduler.DeleteScheduleInput{Name: aws.String("sweep"), GroupName: aws.String(s.e.scheduleGroup())})
	if isNotFound(err) {
		return nil
	}
	return err
}

// sweepRuleResource runs the sweep function through an EventBridge rule
// with a schedule expression, for LocalStack, whose Scheduler does not
// fire targets.
type sweepRuleResource struct{ e *Engine }

func (r *sweepRuleResource) kind() string { return "eventbridge rule" }
func (r *sweepRuleResource) name() string { return r.e.name("sweep") }
func (r *sweepRuleResource) arn() string {
	return fmt.Sprintf("arn:aws:events:%s:%s:rule/%s", r.e.region, r.e.account, r.name())
}

func (r *sweepRuleResource) read(ctx context.Context) (*eventbridge.DescribeRuleOutput, map[string]string, error) {
	out, err := r.e.events.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(r.name())})
	if isNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	tags, err := r.e.events.ListTagsForResource(ctx, &eventbridge.ListTagsForResourceInput{ResourceARN: out.Arn})
	if err != nil {
		return nil, nil, fmt.Errorf("list tags: %w", err)
	}
	m := map[string]string{}
	for _, t := range tags.Tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out, m, nil
}

func (r *sweepRuleResource) plan(ctx context.Context) (diff, error) {
	var d diff
	out, tags, err := r.read(ctx)
	if err != nil {
		return d, err
	}
	if out == nil {
		d.action, d.detail = ActionCreate, r.e.stack.Schedule.Sweep+" → "+r.e.functionName("sweep")
		return d, nil
	}
	if err := r.e.claim(tags[TagKey], &d); err != nil {
		return d, err
	}
	if got := aws.ToString(out.ScheduleExpression); got != r.e.stack.Schedule.Sweep {
		d.change("expression", got, r.e.stack.Schedule.Sweep)
	}
	if out.State != ebtypes.RuleStateEnabled {
		d.change("state", string(out.State), string(ebtypes.RuleStateEnabled))
	}
	targets, err := r.e.events.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(r.name())})
	if err != nil {
		return d, fmt.Errorf("list targets: %w", err)
	}
	if len(targets.Targets) != 1 || aws.ToString(targets.Targets[0].Arn) != r.e.functionARN("sweep") {
		d.changed("target")
	}
	return d, nil
}

func (r *sweepRuleResource) apply(ctx context.Context, d diff) error {
	if d.action == ActionCreate || d.has("expression") || d.has("state") {
		if _, err := r.e.events.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(r.name()),
			ScheduleExpression: aws.String(r.e.stack.Schedule.Sweep), State: ebtypes.RuleStateEnabled,
			Description: aws.String("runfleet sweep (stack " + r.e.stack.Name + ")"),
			Tags:        []ebtypes.Tag{{Key: aws.String(TagKey), Value: aws.String(r.e.stack.Name)}}}); err != nil {
			return err
		}
	}
	if d.has("tags") {
		if _, err := r.e.events.TagResource(ctx, &eventbridge.TagResourceInput{ResourceARN: aws.String(r.arn()),
			Tags: []ebtypes.Tag{{Key: aws.String(TagKey), Value: aws.String(r.e.stack.Name)}}}); err != nil {
			return fmt.Errorf("tag: %w", err)
		}
	}
	if d.action == ActionCreate || d.has("target") {
		if err := r.removeTargets(ctx); err != nil {
			return err
		}
		if _, err := r.e.events.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(r.name()),
			Targets: []ebtypes.Target{{Id: aws.String("sweep"), Arn: aws.String(r.e.functionARN("sweep"))}}}); err != nil {
			return fmt.Errorf("put target: %w", err)
		}
	}
	return nil
}

func (r *sweepRuleResource) removeTargets(ctx context.Context) error {
	targets, err := r.e.events.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(r.name())})
	if err != nil {
		return fmt.Errorf("list targets: %w", err)
	}
	var ids []string
	for _, t := range targets.Targets {
		ids = append(ids, aws.ToString(t.Id))
	}
	if len(ids) == 0 {
		return nil
	}
	_, err = r.e.events.RemoveTargets(ctx, &eventbridge.RemoveTargetsInput{Rule: aws.String(r.name()), Ids: ids})
	if err != nil {
		return fmt.Errorf("remove targets: %w", err)
	}
	return nil
}

func (r *sweepRuleResource) inspect(ctx context.Context) (presence, error) {
	out, tags, err := r.read(ctx)
	return presence{exists: out != nil, owner: tags[TagKey]}, err
}

func (r *sweepRuleResource) remove(ctx context.Context) error {
	if err := r.removeTargets(ctx); err != nil {
		return err
	}
	_, err := r.e.events.DeleteRule(ctx, &eventbridge.DeleteRuleInput{Name: aws.String(r.name())})
	if isNotFound(err) {
		return nil
	}
	return err
}
