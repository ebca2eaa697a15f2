package infra

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

// parameterResource is the SSM SecureString holding the Redis URL, when
// the stack owns it (functions.redis_url_parameter). Its value is compared
// decrypted and never shown.
type parameterResource struct {
	e      *Engine
	exists bool
}

func (p *parameterResource) kind() string { return "ssm parameter" }
func (p *parameterResource) name() string { return p.e.stack.Functions.RedisURLParameter }

func (p *parameterResource) tags(ctx context.Context) (map[string]string, error) {
	out, err := p.e.ssm.ListTagsForResource(ctx, &ssm.ListTagsForResourceInput{ResourceType: ssmtypes.ResourceTypeForTaggingParameter,
		ResourceId: aws.String(p.name())})
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	m := map[string]string{}
	for _, t := range out.TagList {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m, nil
}

func (p *parameterResource) plan(ctx context.Context) (diff, error) {
	var d diff
	out, err := p.e.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(p.name()), WithDecryption: aws.Bool(true)})
	p.exists = err == nil
	if isNotFound(err) {
		d.action, d.detail = ActionCreate, "SecureString holding the Redis URL (from RUNFLEET_REDIS_URL)"
		if p.e.opts.RedisURL == "" {
			d.detail += "; RUNFLEET_REDIS_URL is not set, deploy will stop here"
		}
		return d, nil
	}
	if err != nil {
		return d, err
	}
	tags, err := p.tags(ctx)
	if err != nil {
		return d, err
	}
	if err := p.e.claim(tags[TagKey], &d); err != nil {
		return d, err
	}
	if out.Parameter.Type != ssmtypes.ParameterTypeSecureString {
		d.change("type", string(out.Parameter.Type), string(ssmtypes.ParameterTypeSecureString))
	}
	if p.e.opts.RedisURL != "" && aws.ToString(out.Parameter.Value) != p.e.opts.RedisURL {
		d.changed("value (hidden)")
	}
	return d, nil
}

func (p *parameterResource) apply(ctx context.Context, d diff) error {
	if p.e.opts.RedisURL == "" {
		return errors.New("RUNFLEET_REDIS_URL is not set: deploy writes it into this SecureString parameter")
	}
	if d.action == ActionCreate || d.has("type") || d.has("value (hidden)") {
		in := &ssm.PutParameterInput{Name: aws.String(p.name()), Type: ssmtypes.ParameterTypeSecureString,
			Value: aws.String(p.e.opts.RedisURL), Description: aws.String("Redis URL of runfleet stack " + p.e.stack.Name)}
		if p.exists {
			in.Overwrite = aws.Bool(true)
		} else {
			in.Tags = []ssmtypes.Tag{{Key: aws.String(TagKey), Value: aws.String(p.e.stack.Name)}}
		}
		if _, err := p.e.ssm.PutParameter(ctx, in); err != nil {
			return err
		}
	}
	if p.exists && d.has("tags") {
		if _, err := p.e.ssm.AddTagsToResource(ctx, &ssm.AddTagsToResourceInput{ResourceType: ssmtypes.ResourceTypeForTaggingParameter,
			ResourceId: aws.String(p.name()), Tags: []ssmtypes.Tag{{Key: aws.String(TagKey), Value: aws.String(p.e.stack.Name)}}}); err != nil {
			return fmt.Errorf("tag: %w", err)
		}
	}
	return nil
}

func (p *parameterResource) inspect(ctx context.Context) (presence, error) {
	_, err := p.e.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(p.name())})
	return taggedPresence(err, func() (map[string]string, error) { return p.tags(ctx) })
}

func (p *parameterResource) remove(ctx context.Context) error {
	_, err := p.e.ssm.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String(p.name())})
	if isNotFound(err) {
		return nil
	}
	return err
}
