package infra

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	logtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
)

// logGroupResource is a function's log group, created before the function
// so Lambda does not create it untagged and with no retention.
type logGroupResource struct {
	e     *Engine
	group string
	arn   string // read by plan
}

func (l *logGroupResource) kind() string { return "log group" }
func (l *logGroupResource) name() string { return l.group }

func (l *logGroupResource) find(ctx context.Context) (*logtypes.LogGroup, error) {
	p := cloudwatchlogs.NewDescribeLogGroupsPaginator(l.e.logs, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String(l.group)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, g := range out.LogGroups {
			if aws.ToString(g.LogGroupName) == l.group {
				return &g, nil
			}
		}
	}
	return nil, nil
}

func (l *logGroupResource) tags(ctx context.Context, g *logtypes.LogGroup) (map[string]string, error) {
	l.arn = strings.TrimSuffix(aws.ToString(g.Arn), ":*")
	out, err := l.e.logs.ListTagsForResource(ctx, &cloudwatchlogs.ListTagsForResourceInput{ResourceArn: aws.String(l.arn)})
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	return out.Tags, nil
}

func (l *logGroupResource) plan(ctx context.Context) (diff, error) {
	var d diff
	want := l.e.stack.Functions.LogRetentionDays
	g, err := l.find(ctx)
	if err != nil {
		return d, err
	}
	if g == nil {
		d.action, d.detail = ActionCreate, fmt.Sprintf("retention %d days", want)
		return d, nil
	}
	tags, err := l.tags(ctx, g)
	if err != nil {
		return d, err
	}
	if err := l.e.claim(tags[TagKey], &d); err != nil {
		return d, err
	}
	if got := aws.ToInt32(g.RetentionInDays); got != want {
		d.change("retention", days(got), days(want))
	}
	return d, nil
}

func days(n int32) string {
	if n == 0 {
		return "never expire"
	}
	return strconv.Itoa(int(n)) + " days"
}

func (l *logGroupResource) apply(ctx context.Context, d diff) error {
	if d.action == ActionCreate {
		if _, err := l.e.logs.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String(l.group),
			Tags: l.e.tags()}); err != nil {
			return err
		}
	}
	if d.has("tags") {
		if _, err := l.e.logs.TagResource(ctx, &cloudwatchlogs.TagResourceInput{ResourceArn: aws.String(l.arn), Tags: l.e.tags()}); err != nil {
			return fmt.Errorf("tag: %w", err)
		}
	}
	if d.action == ActionCreate || d.has("retention") {
		if _, err := l.e.logs.PutRetentionPolicy(ctx, &cloudwatchlogs.PutRetentionPolicyInput{LogGroupName: aws.String(l.group),
			RetentionInDays: aws.Int32(l.e.stack.Functions.LogRetentionDays)}); err != nil {
			return fmt.Errorf("set retention: %w", err)
		}
	}
	return nil
}

func (l *logGroupResource) inspect(ctx context.Context) (presence, error) {
	g, err := l.find(ctx)
	if err != nil || g == nil {
		return presence{}, err
	}
	tags, err := l.tags(ctx, g)
	if err != nil {
		return presence{}, err
	}
	return presence{exists: true, owner: tags[TagKey]}, nil
}

func (l *logGroupResource) remove(ctx context.Context) error {
	_, err := l.e.logs.DeleteLogGroup(ctx, &cloudwatchlogs.DeleteLogGroupInput{LogGroupName: aws.String(l.group)})
	if isNotFound(err) {
		return nil
	}
	return err
}
