package infra

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// notificationResource is the stack's share of one bucket's notification
// configuration: one entry per storage automation watching the bucket,
// with id runfleet-<stack>-<automation id>. Entries of others on the same
// bucket, other stacks' included, are kept as they are. On aws and localstack the entries invoke
// the submit function; on MinIO they name the webhook target that posts to
// the gateway.
type notificationResource struct {
	e      *Engine
	bucket string
	// want maps automation id → key prefix.
	want map[string]string

	current *s3.GetBucketNotificationConfigurationOutput
}

func (n *notificationResource) kind() string { return "s3 notifications" }
func (n *notificationResource) name() string { return n.bucket }

func (n *notificationResource) minio() bool { return n.e.stack.Target == TargetMinIO }

// webhookARN names MinIO's webhook target.
func (e *Engine) webhookARN() string {
	return "arn:minio:sqs:" + e.stack.MinIO.Region + ":" + e.stack.MinIO.WebhookID + ":webhook"
}

// entry is one notification the stack owns, reduced to what it sets.
type entry struct{ id, arn, prefix string }

func (x entry) String() string { return x.id + " (prefix " + fmt.Sprintf("%q", x.prefix) + ")" }

func filterPrefix(f *types.NotificationConfigurationFilter) string {
	if f == nil || f.Key == nil {
		return ""
	}
	for _, r := range f.Key.FilterRules {
		if strings.EqualFold(string(r.Name), "prefix") {
			return aws.ToString(r.Value)
		}
	}
	return ""
}

func prefixFilter(prefix string) *types.NotificationConfigurationFilter {
	if prefix == "" {
		return nil
	}
	return &types.NotificationConfigurationFilter{Key: &types.S3KeyFilter{FilterRules: []types.FilterRule{{Name: types.FilterRuleNamePrefix, Value: aws.String(prefix)}}}}
}

// owned reports whether id is one the stack writes: runfleet-<stack>-
// followed by an automation id. Automation ids have no hyphen, so what
// follows the prefix in another stack's id (stack prod-eu's
// runfleet-prod-eu-au_… seen from stack prod: "eu-au_…") always has one.
func (n *notificationResource) owned(id string) bool {
	rest, ok := strings.CutPrefix(id, n.e.ownPrefix())
	return ok && rest != "" && !strings.Contains(rest, "-")
}

// ours lists the stack's entries now on the bucket.
func (n *notificationResource) ours() []entry {
	var out []entry
	if n.current == nil {
		return nil
	}
	for _, c := range n.current.LambdaFunctionConfigurations {
		if n.owned(aws.ToString(c.Id)) {
			out = append(out, entry{aws.ToString(c.Id), aws.ToString(c.LambdaFunctionArn), filterPrefix(c.Filter)})
		}
	}
	for _, c := range n.current.QueueConfigurations {
		if n.owned(aws.ToString(c.Id)) {
			out = append(out, entry{aws.ToString(c.Id), aws.ToString(c.QueueArn), filterPrefix(c.Filter)})
		}
	}
	slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.id, b.id) })
	return out
}

func (n *notificationResource) wanted() []entry {
	arn := n.e.functionARN("submit")
	if n.minio() {
		arn = n.e.webhookARN()
	}
	var out []entry
	for _, id := range sortedKeys(n.want) {
		out = append(out, entry{n.e.ownPrefix() + id, arn, n.want[id]})
	}
	return out
}

func (n *notificationResource) read(ctx context.Context) error {
	out, err := n.e.s3.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String(n.bucket)})
	if err != nil {
		n.current = nil
		return fmt.Errorf("get notification configuration: %w", err)
	}
	n.current = out
	return nil
}

func (n *notificationResource) plan(ctx context.Context) (diff, error) {
	var d diff
	for id := range n.want {
		if id == "" || strings.Contains(id, "-") {
			return d, fmt.Errorf("automation id %q: a notification id is runfleet-<stack>-<automation id>, which needs an id without hyphens (as runfleet creates them: au_…)", id)
		}
	}
	if err := n.read(ctx); err != nil {
		if isNotFound(err) {
			// The stack's own bucket is not created yet (plan).
			d.action, d.detail = ActionCreate, fmt.Sprintf("%d storage automations → %s", len(n.want), n.target())
			return d, nil
		}
		return d, err
	}
	have, want := n.ours(), n.wanted()
	if slices.Equal(have, want) {
		return d, nil
	}
	if len(have) == 0 {
		d.action, d.detail = ActionCreate, fmt.Sprintf("%d storage automations → %s", len(want), n.target())
		return d, nil
	}
	var parts []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			parts = append(parts, "+"+w.String())
		}
	}
	for _, h := range have {
		if !slices.Contains(want, h) {
			parts = append(parts, "-"+h.String())
		}
	}
	d.changed("automations " + strings.Join(parts, " "))
	return d, nil
}

func (n *notificationResource) target() string {
	if n.minio() {
		return "MinIO webhook " + n.e.stack.MinIO.WebhookID
	}
	return n.e.functionName("submit")
}

// put writes the bucket's configuration with the stack's entries replaced
// by want.
func (n *notificationResource) put(ctx context.Context, want []entry) error {
	cur := n.current
	if cur == nil {
		cur = &s3.GetBucketNotificationConfigurationOutput{}
	}
	cfg := &types.NotificationConfiguration{TopicConfigurations: cur.TopicConfigurations, EventBridgeConfiguration: cur.EventBridgeConfiguration}
	for _, c := range cur.LambdaFunctionConfigurations {
		if !n.owned(aws.ToString(c.Id)) {
			cfg.LambdaFunctionConfigurations = append(cfg.LambdaFunctionConfigurations, c)
		}
	}
	for _, c := range cur.QueueConfigurations {
		if !n.owned(aws.ToString(c.Id)) {
			cfg.QueueConfigurations = append(cfg.QueueConfigurations, c)
		}
	}
	events := []types.Event{"s3:ObjectCreated:*"}
	for _, w := range want {
		if n.minio() {
			cfg.QueueConfigurations = append(cfg.QueueConfigurations, types.QueueConfiguration{Id: aws.String(w.id),
				QueueArn: aws.String(w.arn), Events: events, Filter: prefixFilter(w.prefix)})
		} else {
			cfg.LambdaFunctionConfigurations = append(cfg.LambdaFunctionConfigurations, types.LambdaFunctionConfiguration{Id: aws.String(w.id),
				LambdaFunctionArn: aws.String(w.arn), Events: events, Filter: prefixFilter(w.prefix)})
		}
	}
	_, err := n.e.s3.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: aws.String(n.bucket),
		NotificationConfiguration: cfg})
	return err
}

func (n *notificationResource) apply(ctx context.Context, _ diff) error {
	if n.current == nil {
		if err := n.read(ctx); err != nil {
			return err
		}
	}
	err := n.put(ctx, n.wanted())
	if err != nil && n.minio() && strings.Contains(err.Error(), "ARN does not exist") {
		return fmt.Errorf("MinIO has no webhook target %s: start MinIO with MINIO_NOTIFY_WEBHOOK_ENABLE_%s=on and MINIO_NOTIFY_WEBHOOK_ENDPOINT_%s=http://GATEWAY/v1/events/s3 (and _AUTH_TOKEN_%s), or set minio.webhook_id / minio.region to match it: %w",
			n.e.stack.MinIO.WebhookID, n.e.stack.MinIO.WebhookID, n.e.stack.MinIO.WebhookID, n.e.stack.MinIO.WebhookID, err)
	}
	return err
}

func (n *notificationResource) inspect(ctx context.Context) (presence, error) {
	if err := n.read(ctx); err != nil {
		if isNotFound(err) {
			return presence{}, nil
		}
		return presence{}, err
	}
	ours := n.ours()
	return presence{exists: len(ours) > 0, tagless: true, detail: fmt.Sprintf("%d notifications", len(ours))}, nil
}

func (n *notificationResource) remove(ctx context.Context) error { return n.put(ctx, nil) }
