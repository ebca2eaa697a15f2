package infra

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

// policyDoc is an IAM policy document.
type policyDoc struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

type statement struct {
	Sid       string         `json:"Sid,omitempty"`
	Effect    string         `json:"Effect"`
	Principal map[string]any `json:"Principal,omitempty"`
	Action    any            `json:"Action"`
	Resource  any            `json:"Resource,omitempty"`
	Condition map[string]any `json:"Condition,omitempty"`
}

func newPolicy(st ...statement) string {
	for i := range st {
		if st[i].Effect == "" {
			st[i].Effect = "Allow"
		}
	}
	return mustJSON(policyDoc{Version: "2012-10-17", Statement: st})
}

func trustPolicy(service string) string {
	return newPolicy(statement{Principal: map[string]any{"Service": service}, Action: "sts:AssumeRole"})
}

// roleResource is an IAM role with one inline policy, both named after the
// role.
type roleResource struct {
	e       *Engine
	role    string // runfleet-<stack>-<role>
	service string // the service that assumes it
	policy  func() string
}

func (r *roleResource) kind() string { return "iam role" }
func (r *roleResource) name() string { return r.role }

func (r *roleResource) roleTags(ctx context.Context) (map[string]string, error) {
	out, err := r.e.iam.ListRoleTags(ctx, &iam.ListRoleTagsInput{RoleName: aws.String(r.role)})
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	return iamTags(out.Tags), nil
}

func iamTags(ts []iamtypes.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range ts {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func (r *roleResource) iamTagList() []iamtypes.Tag {
	return []iamtypes.Tag{{Key: aws.String(TagKey), Value: aws.String(r.e.stack.Name)}}
}

func (r *roleResource) plan(ctx context.Context) (diff, error) {
	var d diff
	got, err := r.e.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(r.role)})
	if isNotFound(err) {
		d.action, d.detail = ActionCreate, "assumed by "+r.service+", inline policy "+r.role
		return d, nil
	}
	if err != nil {
		return d, err
	}
	tags, err := r.roleTags(ctx)
	if err != nil {
		return d, err
	}
	if err := r.e.claim(tags[TagKey], &d); err != nil {
		return d, err
	}
	if canonicalJSON(aws.ToString(got.Role.AssumeRolePolicyDocument)) != canonicalJSON(trustPolicy(r.service)) {
		d.changed("trust policy")
	}
	pol, err := r.e.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(r.role), PolicyName: aws.String(r.role)})
	switch {
	case isNotFound(err):
		d.changed("policy")
	case err != nil:
		return d, fmt.Errorf("get inline policy: %w", err)
	case canonicalJSON(aws.ToString(pol.PolicyDocument)) != canonicalJSON(r.policy()):
		d.changed("policy")
	}
	return d, nil
}

func (r *roleResource) apply(ctx context.Context, d diff) error {
	name := aws.String(r.role)
	if d.action == ActionCreate {
		if _, err := r.e.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: name,
			AssumeRolePolicyDocument: aws.String(trustPolicy(r.service)), Tags: r.iamTagList(),
			Description: aws.String("runfleet stack " + r.e.stack.Name)}); err != nil {
			return err
		}
	}
	if d.has("tags") {
		if _, err := r.e.iam.TagRole(ctx, &iam.TagRoleInput{RoleName: name, Tags: r.iamTagList()}); err != nil {
			return fmt.Errorf("tag: %w", err)
		}
	}
	if d.has("trust policy") {
		if _, err := r.e.iam.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: name,
			PolicyDocument: aws.String(trustPolicy(r.service))}); err != nil {
			return fmt.Errorf("update trust policy: %w", err)
		}
	}
	if d.action == ActionCreate || d.has("policy") {
		if _, err := r.e.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: name, PolicyName: name,
			PolicyDocument: aws.String(r.policy())}); err != nil {
			return fmt.Errorf("put inline policy: %w", err)
		}
	}
	return nil
}

func (r *roleResource) inspect(ctx context.Context) (presence, error) {
	_, err := r.e.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(r.role)})
	return taggedPresence(err, func() (map[string]string, error) { return r.roleTags(ctx) })
}

func (r *roleResource) remove(ctx context.Context) error {
	name := aws.String(r.role)
	inline, err := r.e.iam.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: name})
	if err != nil {
		return fmt.Errorf("list inline policies: %w", err)
	}
	for _, p := range inline.PolicyNames {
		if _, err := r.e.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: name, PolicyName: aws.String(p)}); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete inline policy %s: %w", p, err)
		}
	}
	attached, err := r.e.iam.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: name})
	if err != nil {
		return fmt.Errorf("list attached policies: %w", err)
	}
	for _, p := range attached.AttachedPolicies {
		if _, err := r.e.iam.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: name, PolicyArn: p.PolicyArn}); err != nil && !isNotFound(err) {
			return fmt.Errorf("detach policy %s: %w", aws.ToString(p.PolicyArn), err)
		}
	}
	_, err = r.e.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: name})
	if isNotFound(err) {
		return nil
	}
	return err
}

// managedPolicyResource is a customer managed policy (the runners'
// read-only access to releases), which users attach to runner roles.
type managedPolicyResource struct {
	e      *Engine
	policy string
	arn    string
	doc    func() string
}

func (p *managedPolicyResource) kind() string { return "iam policy" }
func (p *managedPolicyResource) name() string { return p.policy }

func (p *managedPolicyResource) tags(ctx context.Context) (map[string]string, error) {
	out, err := p.e.iam.ListPolicyTags(ctx, &iam.ListPolicyTagsInput{PolicyArn: aws.String(p.arn)})
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	return iamTags(out.Tags), nil
}

func (p *managedPolicyResource) plan(ctx context.Context) (diff, error) {
	var d diff
	got, err := p.e.iam.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(p.arn)})
	if isNotFound(err) {
		d.action, d.detail = ActionCreate, "read-only access to s3://"+p.e.stack.Bucket.Name+"/"+p.e.stack.Bucket.ReleasesPrefix+" for runners"
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
	v, err := p.e.iam.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(p.arn), VersionId: got.Policy.DefaultVersionId})
	if err != nil {
		return d, fmt.Errorf("get policy version: %w", err)
	}
	if canonicalJSON(aws.ToString(v.PolicyVersion.Document)) != canonicalJSON(p.doc()) {
		d.changed("policy")
	}
	return d, nil
}

func (p *managedPolicyResource) apply(ctx context.Context, d diff) error {
	tags := []iamtypes.Tag{{Key: aws.String(TagKey), Value: aws.String(p.e.stack.Name)}}
	if d.action == ActionCreate {
		_, err := p.e.iam.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(p.policy),
			PolicyDocument: aws.String(p.doc()), Tags: tags,
			Description: aws.String("runfleet stack " + p.e.stack.Name + ": runners read releases")})
		return err
	}
	if d.has("tags") {
		if _, err := p.e.iam.TagPolicy(ctx, &iam.TagPolicyInput{PolicyArn: aws.String(p.arn), Tags: tags}); err != nil {
			return fmt.Errorf("tag: %w", err)
		}
	}
	if d.has("policy") {
		// A policy keeps at most 5 versions: drop the oldest non-default one.
		vs, err := p.e.iam.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: aws.String(p.arn)})
		if err != nil {
			return fmt.Errorf("list policy versions: %w", err)
		}
		if len(vs.Versions) >= 5 {
			old := slices.DeleteFunc(vs.Versions, func(v iamtypes.PolicyVersion) bool { return v.IsDefaultVersion })
			slices.SortFunc(old, func(a, b iamtypes.PolicyVersion) int {
				return aws.ToTime(a.CreateDate).Compare(aws.ToTime(b.CreateDate))
			})
			if _, err := p.e.iam.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(p.arn), VersionId: old[0].VersionId}); err != nil {
				return fmt.Errorf("delete old policy version: %w", err)
			}
		}
		if _, err := p.e.iam.CreatePolicyVersion(ctx, &iam.CreatePolicyVersionInput{PolicyArn: aws.String(p.arn),
			PolicyDocument: aws.String(p.doc()), SetAsDefault: true}); err != nil {
			return fmt.Errorf("create policy version: %w", err)
		}
	}
	return nil
}

func (p *managedPolicyResource) inspect(ctx context.Context) (presence, error) {
	_, err := p.e.iam.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(p.arn)})
	return taggedPresence(err, func() (map[string]string, error) { return p.tags(ctx) })
}

func (p *managedPolicyResource) remove(ctx context.Context) error {
	vs, err := p.e.iam.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: aws.String(p.arn)})
	if err != nil {
		return fmt.Errorf("list policy versions: %w", err)
	}
	for _, v := range vs.Versions {
		if !v.IsDefaultVersion {
			if _, err := p.e.iam.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(p.arn), VersionId: v.VersionId}); err != nil {
				return fmt.Errorf("delete policy version: %w", err)
			}
		}
	}
	_, err = p.e.iam.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: aws.String(p.arn)})
	if isCode(err, "DeleteConflict") {
		return fmt.Errorf("it is still attached to roles, users or groups (detach it from your runners first): %w", err)
	}
	if isNotFound(err) {
		return nil
	}
	return err
}
