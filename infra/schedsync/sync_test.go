package schedsync_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	schedtypes "github.com/aws/aws-sdk-go-v2/service/scheduler/types"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/infra/schedsync"
)

const (
	functionARN = "arn:aws:lambda:us-east-1:123456789012:function:runfleet-t1-submit"
	roleARN     = "arn:aws:iam::123456789012:role/runfleet-t1-scheduler"
)

// actions maps each change's name to its action, for short assertions.
func actions(changes []schedsync.Change) map[string]string {
	m := map[string]string{}
	for _, c := range changes {
		m[c.Name] = c.Action
	}
	return m
}

func TestSchedulerModeKeepsOneSchedulePerCronAutomation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := startMoto(t)
	sc := scheduler.NewFromConfig(cfg)

	// The deployer owns the group; a foreign group has a schedule with the
	// same kind of name, and our group has the sweep's schedule.
	for _, g := range []string{"runfleet-t1", "someone-else"} {
		_, err := sc.CreateScheduleGroup(ctx, &scheduler.CreateScheduleGroupInput{Name: aws.String(g)})
		require.NoError(t, err)
	}
	foreign := func(group, name string) {
		_, err := sc.CreateSchedule(ctx, &scheduler.CreateScheduleInput{
			Name: aws.String(name), GroupName: aws.String(group), ScheduleExpression: aws.String("rate(1 minute)"),
			FlexibleTimeWindow: &schedtypes.FlexibleTimeWindow{Mode: schedtypes.FlexibleTimeWindowModeOff},
			Target:             &schedtypes.Target{Arn: aws.String(functionARN), RoleArn: aws.String(roleARN)},
		})
		require.NoError(t, err)
	}
	foreign("someone-else", "cron-au_b")
	foreign("runfleet-t1", "sweep")

	s := schedsync.New(cfg, schedsync.Target{Mode: schedsync.Scheduler, Stack: "t1", FunctionARN: functionARN, RoleARN: roleARN})
	require.Equal(t, "runfleet-t1", s.Target().Group)
	autos := []schedsync.Automation{
		{ID: "au_a", Name: "every quarter", Cron: "*/15 * * * *", Timezone: "Europe/Berlin"},
		{ID: "au_b", Name: "nightly", Cron: "@daily", Paused: true},
		{ID: "au_c", Name: "every 30 seconds", Cron: "*/30 * * * * *"},
		{ID: "au_d", Name: "uploads", Cron: ""}, // a storage automation
	}

	plan, err := s.Plan(ctx, autos)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"cron-au_a": "create", "cron-au_b": "create", "cron-au_c": "skip"}, actions(plan))
	require.Contains(t, plan[2].Reason, "the sweep fires it instead")
	require.Contains(t, plan[2].Reason, "every 30 seconds")

	applied, err := s.Apply(ctx, autos)
	require.NoError(t, err)
	require.Equal(t, plan, applied)

	get := func(name string) *scheduler.GetScheduleOutput {
		got, err := sc.GetSchedule(ctx, &scheduler.GetScheduleInput{Name: aws.String(name), GroupName: aws.String("runfleet-t1")})
		require.NoError(t, err, name)
		return got
	}
	a := get("cron-au_a")
	require.Equal(t, "cron(0/15 * * * ? *)", aws.ToString(a.ScheduleExpression))
	require.Equal(t, "Europe/Berlin", aws.ToString(a.ScheduleExpressionTimezone))
	require.Equal(t, schedtypes.ScheduleStateEnabled, a.State)
	require.Equal(t, schedtypes.FlexibleTimeWindowModeOff, a.FlexibleTimeWindow.Mode)
	require.Equal(t, functionARN, aws.ToString(a.Target.Arn))
	require.Equal(t, roleARN, aws.ToString(a.Target.RoleArn))
	var input map[string]string
	require.NoError(t, json.Unmarshal([]byte(aws.ToString(a.Target.Input)), &input))
	require.Equal(t, map[string]string{"automation": "au_a", "scheduled_time": "<aws.scheduler.scheduled-time>"}, input)
	b := get("cron-au_b")
	require.Equal(t, schedtypes.ScheduleStateDisabled, b.State, "a paused automation's schedule is disabled")
	require.Equal(t, "cron(0 0 * * ? *)", aws.ToString(b.ScheduleExpression))
	_, err = sc.GetSchedule(ctx, &scheduler.GetScheduleInput{Name: aws.String("cron-au_c"), GroupName: aws.String("runfleet-t1")})
	require.Error(t, err, "an expression EventBridge cannot express gets no schedule")

	// In sync: nothing to do.
	plan, err = s.Plan(ctx, autos)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"cron-au_a": "none", "cron-au_b": "none", "cron-au_c": "skip"}, actions(plan))

	// One cron changes: one update, of the expression only.
	autos[0].Cron = "*/5 * * * *"
	applied, err = s.Apply(ctx, autos)
	require.NoError(t, err)
	require.Equal(t, schedsync.Change{Action: "update", Name: "cron-au_a", Fields: []string{"expression"}}, applied[0])
	require.Equal(t, "none", applied[1].Action)
	require.Equal(t, "cron(0/5 * * * ? *)", aws.ToString(get("cron-au_a").ScheduleExpression))

	// Resuming is a state change.
	autos[1].Paused = false
	plan, err = s.Plan(ctx, autos)
	require.NoError(t, err)
	require.Equal(t, schedsync.Change{Action: "update", Name: "cron-au_b", Fields: []string{"state"}}, plan[1])

	// An automation deleted: its schedule goes, nothing else does.
	applied, err = s.Apply(ctx, []schedsync.Automation{autos[0], autos[2]})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"cron-au_a": "none", "cron-au_b": "delete", "cron-au_c": "skip"}, actions(applied))
	_, err = sc.GetSchedule(ctx, &scheduler.GetScheduleInput{Name: aws.String("cron-au_b"), GroupName: aws.String("runfleet-t1")})
	var nf *schedtypes.ResourceNotFoundException
	require.ErrorAs(t, err, &nf)
	get("sweep")
	_, err = sc.GetSchedule(ctx, &scheduler.GetScheduleInput{Name: aws.String("cron-au_b"), GroupName: aws.String("someone-else")})
	require.NoError(t, err, "a schedule in another group is not ours")

	// A cron changed to one EventBridge cannot express: its schedule goes
	// (the sweep fires it), with the reason.
	autos[0].Cron = "@every 5m"
	applied, err = s.Apply(ctx, []schedsync.Automation{autos[0]})
	require.NoError(t, err)
	require.Equal(t, "delete", applied[0].Action)
	require.Contains(t, applied[0].Reason, "the sweep fires it instead")
	plan, err = s.Plan(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, plan)
}

func TestSchedulerModeNamesAMissingGroup(t *testing.T) {
	t.Parallel()
	cfg := startMoto(t)
	s := schedsync.New(cfg, schedsync.Target{Mode: schedsync.Scheduler, Stack: "t9", FunctionARN: functionARN, RoleARN: roleARN})
	_, err := s.Apply(context.Background(), []schedsync.Automation{{ID: "au_a", Name: "a", Cron: "@daily"}})
	require.ErrorContains(t, err, "schedule group runfleet-t9 does not exist")
}

func TestTargetIsChecked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		t    schedsync.Target
		says string
	}{
		{schedsync.Target{Mode: "cron", Stack: "s", FunctionARN: functionARN}, `schedule mode "cron"`},
		{schedsync.Target{Mode: schedsync.Rules, Stack: "", FunctionARN: functionARN}, `stack ""`},
		{schedsync.Target{Mode: schedsync.Rules, Stack: "a-very-long-stack-name-that-overflows", FunctionARN: functionARN}, "stack"},
		{schedsync.Target{Mode: schedsync.Rules, Stack: "s"}, "function ARN"},
		{schedsync.Target{Mode: schedsync.Scheduler, Stack: "s", FunctionARN: functionARN}, "role ARN"},
	} {
		// No endpoint is reached: the target is checked first.
		_, err := schedsync.New(aws.Config{Region: "us-east-1"}, tc.t).Plan(context.Background(), nil)
		require.ErrorContains(t, err, tc.says)
	}
}

func TestRulesModeKeepsOneTaggedRulePerCronAutomation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := startMoto(t)
	eb := eventbridge.NewFromConfig(cfg)

	// A rule with our naming but no tag, and one tagged for another stack.
	_, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String("runfleet-t1-cron-au_b"), ScheduleExpression: aws.String("rate(5 minutes)")})
	require.NoError(t, err)
	_, err = eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String("runfleet-t1-cron-au_x"), ScheduleExpression: aws.String("rate(5 minutes)"),
		Tags: []ebtypes.Tag{{Key: aws.String("runfleet:stack"), Value: aws.String("t1-other")}}})
	require.NoError(t, err)

	s := schedsync.New(cfg, schedsync.Target{Mode: schedsync.Rules, Stack: "t1", FunctionARN: functionARN})
	autos := []schedsync.Automation{
		{ID: "au_a", Name: "every quarter", Cron: "*/15 * * * *"},
		{ID: "au_c", Name: "nightly", Cron: "0 0 * * *", Paused: true},
		{ID: "au_d", Name: "berlin mornings", Cron: "0 9 * * *", Timezone: "Europe/Berlin"},
		{ID: "au_e", Name: "every 30 seconds", Cron: "*/30 * * * * *"},
	}
	applied, err := s.Apply(ctx, autos)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"runfleet-t1-cron-au_a": "create", "runfleet-t1-cron-au_c": "create",
		"runfleet-t1-cron-au_d": "skip", "runfleet-t1-cron-au_e": "skip",
	}, actions(applied))
	require.Contains(t, applied[2].Reason, "UTC only")

	rule := func(name string) *eventbridge.DescribeRuleOutput {
		got, err := eb.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(name)})
		require.NoError(t, err, name)
		return got
	}
	a := rule("runfleet-t1-cron-au_a")
	require.Equal(t, "cron(0/15 * * * ? *)", aws.ToString(a.ScheduleExpression))
	require.Equal(t, ebtypes.RuleStateEnabled, a.State)
	tags, err := eb.ListTagsForResource(ctx, &eventbridge.ListTagsForResourceInput{ResourceARN: a.Arn})
	require.NoError(t, err)
	require.Equal(t, []ebtypes.Tag{{Key: aws.String("runfleet:stack"), Value: aws.String("t1")}}, tags.Tags)
	targets, err := eb.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String("runfleet-t1-cron-au_a")})
	require.NoError(t, err)
	require.Len(t, targets.Targets, 1)
	require.Equal(t, functionARN, aws.ToString(targets.Targets[0].Arn))
	require.Equal(t, map[string]string{"time": "$.time"}, targets.Targets[0].InputTransformer.InputPathsMap)
	template := aws.ToString(targets.Targets[0].InputTransformer.InputTemplate)
	require.Equal(t, `{"automation": "au_a", "scheduled_time": <time>}`, template)
	// EventBridge puts the scheduled event's "time", a string, in place of
	// <time>, quoted: what the submit function takes as a schedule.
	var ev controlplane.ScheduleEvent
	require.NoError(t, json.Unmarshal([]byte(strings.Replace(template, "<time>", `"2027-03-10T07:00:00Z"`, 1)), &ev))
	require.Equal(t, controlplane.ScheduleEvent{Automation: "au_a", ScheduledTime: time.Date(2027, 3, 10, 7, 0, 0, 0, time.UTC)}, ev)
	require.Equal(t, ebtypes.RuleStateDisabled, rule("runfleet-t1-cron-au_c").State)

	plan, err := s.Plan(ctx, autos)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"runfleet-t1-cron-au_a": "none", "runfleet-t1-cron-au_c": "none",
		"runfleet-t1-cron-au_d": "skip", "runfleet-t1-cron-au_e": "skip",
	}, actions(plan))

	autos[0].Cron = "0 * * * *"
	applied, err = s.Apply(ctx, autos)
	require.NoError(t, err)
	require.Equal(t, schedsync.Change{Action: "update", Name: "runfleet-t1-cron-au_a", Fields: []string{"expression"}}, applied[0])
	require.Equal(t, "cron(0 * * * ? *)", aws.ToString(rule("runfleet-t1-cron-au_a").ScheduleExpression))

	// A rule of ours lost its target: the update puts it back.
	_, err = eb.RemoveTargets(ctx, &eventbridge.RemoveTargetsInput{Rule: aws.String("runfleet-t1-cron-au_c"), Ids: []string{"submit"}})
	require.NoError(t, err)
	plan, err = s.Plan(ctx, autos)
	require.NoError(t, err)
	require.Equal(t, []string{"input", "target"}, plan[1].Fields)

	// Deleting au_c removes its rule (targets first); the untagged and the
	// other stack's rules stay.
	applied, err = s.Apply(ctx, autos[:1])
	require.NoError(t, err)
	require.Equal(t, map[string]string{"runfleet-t1-cron-au_a": "none", "runfleet-t1-cron-au_c": "delete"}, actions(applied))
	_, err = eb.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String("runfleet-t1-cron-au_c")})
	var nf *ebtypes.ResourceNotFoundException
	require.ErrorAs(t, err, &nf)
	rule("runfleet-t1-cron-au_b")
	rule("runfleet-t1-cron-au_x")
}
