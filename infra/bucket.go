package infra

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// bucketResource is the stack's bucket: versioned, private, with a
// lifecycle rule for the job archive.
type bucketResource struct {
	e     *Engine
	force bool // destroy: delete every object version first

	// read by plan
	tags  map[string]string
	rules []types.LifecycleRule // every rule on the bucket
}

func (b *bucketResource) kind() string { return "s3 bucket" }
func (b *bucketResource) name() string { return b.e.stack.Bucket.Name }

// publicAccessBlock is S3's only; MinIO has no such API (its buckets are
// private unless given a policy).
func (b *bucketResource) publicAccessBlock() bool { return b.e.stack.Target != TargetMinIO }

func (b *bucketResource) exists(ctx context.Context) (bool, error) {
	_, err := b.e.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b.name())})
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	case isCode(err, "Forbidden", "AccessDenied") || strings.Contains(err.Error(), "StatusCode: 403"):
		return false, fmt.Errorf("the bucket name is taken by another account or these credentials may not read it (set bucket.name to another name): %w", err)
	}
	return false, err
}

func (b *bucketResource) readTags(ctx context.Context) (map[string]string, error) {
	out, err := b.e.s3.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: aws.String(b.name())})
	if err != nil {
		if isNotFound(err) {
			return map[string]string{}, nil
		}
		return nil, fmt.Errorf("get tags: %w", err)
	}
	tags := map[string]string{}
	for _, t := range out.TagSet {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return tags, nil
}

func (b *bucketResource) archiveRuleID() string { return b.e.ownPrefix() + "archive" }

// archiveRule is the desired lifecycle rule.
func (b *bucketResource) archiveRule() types.LifecycleRule {
	bs := b.e.stack.Bucket
	r := types.LifecycleRule{
		ID:     aws.String(b.archiveRuleID()),
		Status: types.ExpirationStatusEnabled,
		Filter: &types.LifecycleRuleFilter{Prefix: aws.String(bs.ArchivePrefix)},
		NoncurrentVersionExpiration: &types.NoncurrentVersionExpiration{
			NoncurrentDays: aws.Int32(bs.NoncurrentExpireDays)},
	}
	if bs.ArchiveExpireDays > 0 {
		r.Expiration = &types.LifecycleExpiration{Days: aws.Int32(bs.ArchiveExpireDays)}
	}
	return r
}

// describeRule reduces a rule to what the stack sets, as the services
// return it in several shapes (Filter.Prefix or the old Prefix).
func describeRule(r types.LifecycleRule) string {
	prefix := aws.ToString(r.Prefix)
	if r.Filter != nil && r.Filter.Prefix != nil {
		prefix = aws.ToString(r.Filter.Prefix)
	}
	s := fmt.Sprintf("prefix %q", prefix)
	if r.Status != types.ExpirationStatusEnabled {
		s += " " + strings.ToLower(string(r.Status))
	}
	if r.Expiration != nil && aws.ToInt32(r.Expiration.Days) > 0 {
		s += fmt.Sprintf(", objects after %dd", aws.ToInt32(r.Expiration.Days))
	}
	if r.NoncurrentVersionExpiration != nil {
		s += fmt.Sprintf(", old versions after %dd", aws.ToInt32(r.NoncurrentVersionExpiration.NoncurrentDays))
	}
	return s
}

func (b *bucketResource) plan(ctx context.Context) (diff, error) {
	var d diff
	found, err := b.exists(ctx)
	if err != nil {
		return d, err
	}
	if !found {
		d.action = ActionCreate
		d.detail = fmt.Sprintf("versioned, private; archive %s%s: %s", b.name(), "/"+b.e.stack.Bucket.ArchivePrefix, describeRule(b.archiveRule()))
		return d, nil
	}
	if b.tags, err = b.readTags(ctx); err != nil {
		return d, err
	}
	if owner := b.tags[TagKey]; owner == "" && !b.e.opts.Adopt {
		// CreateBucket and PutBucketTagging are two requests (tags in
		// CreateBucket need s3:TagResource and are not taken by MinIO),
		// so a deploy stopped between them leaves the stack's bucket
		// untagged, and a rerun must take it over to converge. An empty
		// bucket holds nothing anyone could lose; one with object
		// versions may be someone else's and needs --adopt.
		n, err := b.countVersions(ctx)
		if err != nil {
			return d, err
		}
		if n > 0 {
			return d, fmt.Errorf("it exists, holds %s object versions and is not tagged %s=%s; it is not this stack's. Rename the stack (or set bucket.name), delete it, or pass --adopt to take it over",
				countText(n), TagKey, b.e.stack.Name)
		}
		d.change("tags", "untagged", TagKey+"="+b.e.stack.Name)
	} else if err := b.e.claim(owner, &d); err != nil {
		return d, err
	}
	v, err := b.e.s3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(b.name())})
	if err != nil {
		return d, fmt.Errorf("get versioning: %w", err)
	}
	if v.Status != types.BucketVersioningStatusEnabled {
		d.change("versioning", strings.ToLower(orNone(string(v.Status))), "enabled")
	}
	if b.publicAccessBlock() {
		pab, err := b.e.s3.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String(b.name())})
		if err != nil && !isNotFound(err) {
			return d, fmt.Errorf("get public access block: %w", err)
		}
		if err != nil || !allBlocked(pab.PublicAccessBlockConfiguration) {
			d.change("public access block", "off", "on")
		}
	}
	lc, err := b.e.s3.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String(b.name())})
	b.rules = nil
	if err != nil && !isNotFound(err) {
		return d, fmt.Errorf("get lifecycle: %w", err)
	}
	if err == nil {
		b.rules = lc.Rules
	}
	current := "(none)"
	for _, r := range b.rules {
		if aws.ToString(r.ID) == b.archiveRuleID() {
			current = describeRule(r)
		}
	}
	if want := describeRule(b.archiveRule()); current != want {
		d.change("lifecycle", current, want)
	}
	return d, nil
}

func allBlocked(c *types.PublicAccessBlockConfiguration) bool {
	return c != nil && aws.ToBool(c.BlockPublicAcls) && aws.ToBool(c.IgnorePublicAcls) &&
		aws.ToBool(c.BlockPublicPolicy) && aws.ToBool(c.RestrictPublicBuckets)
}

func orNone(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

func (b *bucketResource) apply(ctx context.Context, d diff) error {
	bucket := aws.String(b.name())
	if d.action == ActionCreate {
		in := &s3.CreateBucketInput{Bucket: bucket}
		if r := b.e.region; r != "us-east-1" && b.e.stack.Target != TargetMinIO {
			in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(r)}
		}
		if _, err := b.e.s3.CreateBucket(ctx, in); err != nil && !isCode(err, "BucketAlreadyOwnedByYou") {
			return err
		}
		b.tags, b.rules = map[string]string{}, nil
	}
	if d.action == ActionCreate || d.has("tags") {
		tags := map[string]string{}
		for k, v := range b.tags {
			tags[k] = v
		}
		tags[TagKey] = b.e.stack.Name
		var set []types.Tag
		for _, k := range sortedKeys(tags) {
			set = append(set, types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
		}
		if _, err := b.e.s3.PutBucketTagging(ctx, &s3.PutBucketTaggingInput{Bucket: bucket,
			Tagging: &types.Tagging{TagSet: set}}); err != nil {
			return fmt.Errorf("put tags: %w", err)
		}
	}
	if d.action == ActionCreate || d.has("versioning") {
		if _, err := b.e.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: bucket,
			VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
			return fmt.Errorf("enable versioning: %w", err)
		}
	}
	if b.publicAccessBlock() && (d.action == ActionCreate || d.has("public access block")) {
		if _, err := b.e.s3.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: bucket,
			PublicAccessBlockConfiguration: &types.PublicAccessBlockConfiguration{BlockPublicAcls: aws.Bool(true),
				IgnorePublicAcls: aws.Bool(true), BlockPublicPolicy: aws.Bool(true), RestrictPublicBuckets: aws.Bool(true)}}); err != nil {
			return fmt.Errorf("block public access: %w", err)
		}
	}
	if d.action == ActionCreate || d.has("lifecycle") {
		// Rules of others on the bucket stay as they are.
		rules := []types.LifecycleRule{b.archiveRule()}
		for _, r := range b.rules {
			if aws.ToString(r.ID) != b.archiveRuleID() {
				rules = append(rules, r)
			}
		}
		if _, err := b.e.s3.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{Bucket: bucket,
			LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: rules}}); err != nil {
			return fmt.Errorf("put lifecycle: %w", err)
		}
	}
	return nil
}

func (b *bucketResource) inspect(ctx context.Context) (presence, error) {
	found, err := b.exists(ctx)
	if err != nil || !found {
		return presence{}, err
	}
	tags, err := b.readTags(ctx)
	if err != nil {
		return presence{}, err
	}
	n, err := b.countVersions(ctx)
	if err != nil {
		return presence{}, err
	}
	p := presence{exists: true, owner: tags[TagKey], detail: "empty"}
	if n > 0 {
		p.detail = fmt.Sprintf("%s object versions", countText(n))
		if !b.force {
			p.refusal = fmt.Sprintf("holds %s object versions (archived jobs, releases): empty it yourself, or run destroy again with --force-delete-bucket to delete every object version in it, which cannot be undone", countText(n))
		}
	}
	return p, nil
}

// countText shows a count of countVersions, which stops at one page.
func countText(n int) string {
	if n >= 1000 {
		return fmt.Sprintf("%d or more", n)
	}
	return fmt.Sprint(n)
}

// countVersions counts object versions and delete markers, up to one page.
func (b *bucketResource) countVersions(ctx context.Context) (int, error) {
	out, err := b.e.s3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(b.name())})
	if err != nil {
		return 0, fmt.Errorf("list object versions: %w", err)
	}
	return len(out.Versions) + len(out.DeleteMarkers), nil
}

// ErrBucketNotEmpty is returned by Destroy for a bucket with objects when
// DestroyOptions.ForceDeleteBucket is not set.
var ErrBucketNotEmpty = errors.New("bucket is not empty")

func (b *bucketResource) remove(ctx context.Context) error {
	bucket := aws.String(b.name())
	n, err := b.countVersions(ctx)
	if err != nil {
		return err
	}
	if n > 0 && !b.force {
		// Objects written since destroy inspected the bucket.
		return fmt.Errorf("%w (it holds object versions: archived jobs, releases): empty it yourself, or run destroy again with --force-delete-bucket to delete every object version in it", ErrBucketNotEmpty)
	}
	for n > 0 {
		out, err := b.e.s3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: bucket})
		if err != nil {
			return fmt.Errorf("list object versions: %w", err)
		}
		var ids []types.ObjectIdentifier
		for _, v := range out.Versions {
			ids = append(ids, types.ObjectIdentifier{Key: v.Key, VersionId: v.VersionId})
		}
		for _, m := range out.DeleteMarkers {
			ids = append(ids, types.ObjectIdentifier{Key: m.Key, VersionId: m.VersionId})
		}
		if len(ids) == 0 {
			break
		}
		del, err := b.e.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: bucket, Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("delete object versions: %w", err)
		}
		if len(del.Errors) > 0 {
			return fmt.Errorf("delete object version %s: %s", aws.ToString(del.Errors[0].Key), aws.ToString(del.Errors[0].Message))
		}
	}
	_, err = b.e.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: bucket})
	return err
}
