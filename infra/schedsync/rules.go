package schedsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
)

// StackTag is the tag every resource of a stack carries; a rule without
// it, or with another stack's value, is never touched.
const StackTag = "runfleet:stack"

// ruleTargetID is the id of the submit function among a rule's targets.
const ruleTargetID = "submit"

// rules is the Rules mode: one rule per automation on the default event
// bus, for LocalStack, where EventBridge Scheduler does not fire targets.
type rules struct {
	c *eventbridge.Client
	t Target
}

func (b *rules) prefix() string { return "runfleet-" + b.t.Stack + "-cron-" }

func (b *rules) nameOf(id string) string { return b.prefix() + id }

// fill sets the input template: a scheduled event's "time" is the tick
// (RFC 3339, UTC), and EventBridge quotes a string it puts in place of
// an unquoted placeholder.
func (b *rules) fill(d *desired) {
	d.input = `{"automation": "` + d.automation + `", "scheduled_time": <time>}`
	d.target = ruleTargetID + "=" + b.t.FunctionARN
}

func (b *rules) where(name string) string { return "rule " + name }

func (b *rules) list(ctx context.Context) (map[string]desired, error) {
	have := map[string]desired{}
	in := &eventbridge.ListRulesInput{NamePrefix: aws.String(b.prefix())}
	for {
		page, err := b.c.ListRules(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list rules named %s*: %w", b.prefix(), err)
		}
		for _, r := range page.Rules {
			d, ok, err := b.describe(ctx, r)
			if err != nil {
				return nil, err
			}
			if ok {
				have[d.name] = d
			}
		}
		if aws.ToString(page.NextToken) == "" {
			return have, nil
		}
		in.NextToken = page.NextToken
	}
}

// describe reads one listed rule; ok is false for a rule the stack does
// not own (no runfleet:stack tag of this stack).
func (b *rules) describe(ctx context.Context, r types.Rule) (desired, bool, error) {
	name := aws.ToString(r.Name)
	if !strings.HasPrefix(name, b.prefix()) {
		return desired{}, false, nil
	}
	tags, err := b.c.ListTagsForResource(ctx, &eventbridge.ListTagsForResourceInput{ResourceARN: r.Arn})
	if err != nil {
		return desired{}, false, fmt.Errorf("list tags of %s: %w", b.where(name), err)
	}
	if !slices.ContainsFunc(tags.Tags, func(t types.Tag) bool {
		return aws.ToString(t.Key) == StackTag && aws.ToString(t.Value) == b.t.Stack
	}) {
		return desired{}, false, nil
	}
	d := desired{
		name:        name,
		expression:  aws.ToString(r.ScheduleExpression),
		timezone:    "UTC",
		enabled:     r.State != types.RuleStateDisabled,
		description: aws.ToString(r.Description),
	}
	targets, err := b.c.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: &name})
	if err != nil {
		return desired{}, false, fmt.Errorf("list targets of %s: %w", b.where(name), err)
	}
	var ids []string
	for _, t := range targets.Targets {
		ids = append(ids, aws.ToString(t.Id)+"="+aws.ToString(t.Arn))
		if aws.ToString(t.Id) != ruleTargetID {
			continue
		}
		if tr := t.InputTransformer; tr != nil && len(tr.InputPathsMap) == 1 && tr.InputPathsMap["time"] == "$.time" {
			d.input = aws.ToString(tr.InputTemplate)
		}
	}
	slices.Sort(ids)
	d.target = strings.Join(ids, ",")
	return d, true, nil
}

func (b *rules) state(d desired) types.RuleState {
	if d.enabled {
		return types.RuleStateEnabled
	}
	return types.RuleStateDisabled
}

func (b *rules) create(ctx context.Context, d desired) error {
	if err := b.put(ctx, d); err != nil {
		return fmt.Errorf("create %s: %w", b.where(d.name), err)
	}
	return nil
}

func (b *rules) update(ctx context.Context, d desired) error {
	if err := b.put(ctx, d); err != nil {
		return fmt.Errorf("update %s: %w", b.where(d.name), err)
	}
	return nil
}

// put writes the rule, its tag and its one target; PutRule and
// PutTargets create or replace, so create and update are the same calls.
func (b *rules) put(ctx context.Context, d desired) error {
	tags := []types.Tag{{Key: aws.String(StackTag), Value: &b.t.Stack}}
	if _, err := b.c.PutRule(ctx, &eventbridge.PutRuleInput{
		Name: &d.name, ScheduleExpression: &d.expression, State: b.state(d),
		Description: &d.description, Tags: tags,
	}); err != nil {
		return err
	}
	if _, err := b.c.PutTargets(ctx, &eventbridge.PutTargetsInput{
		Rule: &d.name,
		Targets: []types.Target{{
			Id: aws.String(ruleTargetID), Arn: &b.t.FunctionARN,
			InputTransformer: &types.InputTransformer{
				InputPathsMap: map[string]string{"time": "$.time"},
				InputTemplate: &d.input,
			},
		}},
	}); err != nil {
		return fmt.Errorf("put target: %w", err)
	}
	return b.removeTargets(ctx, d.name, func(id string) bool { return id != ruleTargetID })
}

// removeTargets removes the rule's targets whose id drop selects.
func (b *rules) removeTargets(ctx context.Context, name string, drop func(id string) bool) error {
	got, err := b.c.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: &name})
	if err != nil {
		return fmt.Errorf("list targets: %w", err)
	}
	var ids []string
	for _, t := range got.Targets {
		if drop(aws.ToString(t.Id)) {
			ids = append(ids, aws.ToString(t.Id))
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := b.c.RemoveTargets(ctx, &eventbridge.RemoveTargetsInput{Rule: &name, Ids: ids}); err != nil {
		return fmt.Errorf("remove targets %s: %w", strings.Join(ids, ", "), err)
	}
	return nil
}

func (b *rules) delete(ctx context.Context, name string) error {
	// A rule with targets cannot be deleted.
	err := b.removeTargets(ctx, name, func(string) bool { return true })
	if err == nil {
		_, err = b.c.DeleteRule(ctx, &eventbridge.DeleteRuleInput{Name: &name})
	}
	var nf *types.ResourceNotFoundException
	if err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("delete %s: %w", b.where(name), err)
	}
	return nil
}
