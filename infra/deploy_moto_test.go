package infra_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewayv2"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/infra"
)

const account = "123456789012" // moto's

// changed lists "type name: fields" of every create, update or delete.
func changed(rep infra.Report) map[string][]string {
	out := map[string][]string{}
	for _, c := range rep.Resources {
		if c.Action == infra.ActionCreate || c.Action == infra.ActionUpdate || c.Action == infra.ActionDelete {
			out[c.Action+" "+c.Type+" "+c.Name] = c.Fields
		}
	}
	return out
}

func newEngine(t *testing.T, cfg aws.Config, st infra.Stack, opts infra.Options) *infra.Engine {
	t.Helper()
	opts.AWS = &cfg
	e, err := infra.New(context.Background(), st, opts)
	require.NoError(t, err)
	return e
}

func TestDeployIsIdempotentAndDestroyRemovesOnlyTheStack(t *testing.T) {
	t.Parallel()
	m := startMoto(t)
	ctx := context.Background()
	cfg := m.config()
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	iamc := iam.NewFromConfig(cfg)
	logsc := cloudwatchlogs.NewFromConfig(cfg)

	// Things with the stack's prefix that are not the stack's: an untagged
	// role, a log group of another stack, and a bucket a storage
	// automation watches that already notifies someone else.
	_, err := iamc.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("runfleet-dev-other"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[]}`)})
	require.NoError(t, err)
	_, err = logsc.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String("/aws/lambda/runfleet-dev-extra"),
		Tags: map[string]string{infra.TagKey: "prod"}})
	require.NoError(t, err)
	_, err = s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("incoming-data")})
	require.NoError(t, err)
	otherTopic := "arn:aws:sns:us-east-1:" + account + ":other-team"
	_, err = s3c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: aws.String("incoming-data"),
		NotificationConfiguration: &s3types.NotificationConfiguration{TopicConfigurations: []s3types.TopicConfiguration{{
			Id: aws.String("other-team"), TopicArn: aws.String(otherTopic), Events: []s3types.Event{"s3:ObjectRemoved:*"}}}}})
	require.NoError(t, err)

	zips := writeZips(t, "v1")
	st := infra.Stack{Name: "dev", Target: infra.TargetAWS,
		Functions: infra.FunctionsSpec{ZipDir: zips, RedisURLParameter: "/runfleet/dev/redis-url"}}
	opts := infra.Options{AutomationsKnown: true, RedisURL: "rediss://default:s3cret@redis.example:6379/0",
		Automations: []controlplane.Automation{
			{ID: "au_scan", Name: "scans", Storage: "s3://incoming-data/scans/", Glob: "*.tif"},
			{ID: "au_nightly", Name: "nightly", Cron: "0 3 * * *"},
		}}
	e := newEngine(t, cfg, st, opts)

	plan, err := e.Plan(ctx)
	require.NoError(t, err)
	require.Positive(t, plan.Changes)
	for _, c := range plan.Resources {
		require.Equal(t, infra.ActionCreate, c.Action, "%+v", c)
	}
	bucket := "runfleet-dev-" + account
	require.Contains(t, changed(plan), "create s3 bucket "+bucket)
	require.Contains(t, changed(plan), "create lambda function runfleet-dev-submit")
	require.Contains(t, changed(plan), "create s3 notifications incoming-data")
	require.Contains(t, changed(plan), "create cron schedule cron-au_nightly")

	dep, err := e.Deploy(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, plan.Changes, dep.Changes)
	require.Equal(t, changed(plan), changed(dep))

	again, err := e.Deploy(ctx, nil)
	require.NoError(t, err)
	require.Zero(t, again.Changes, "a second deploy changed %v", changed(again))
	require.Len(t, again.Resources, len(dep.Resources))

	// The functions got the secret's ARN, never the URL.
	lc := lambda.NewFromConfig(cfg)
	fn, err := lc.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("runfleet-dev-sweep")})
	require.NoError(t, err)
	env := fn.Configuration.Environment.Variables
	require.Equal(t, "arn:aws:ssm:us-east-1:"+account+":parameter/runfleet/dev/redis-url", env[infra.EnvRedisURLSecret])
	require.Equal(t, "s3://"+bucket+"/archive", env["RUNFLEET_STORE"])
	require.Equal(t, "arn:aws:lambda:us-east-1:"+account+":function:runfleet-dev-submit", env[infra.EnvScheduleTarget])
	for k, v := range env {
		require.NotContains(t, v, "s3cret", "env %s", k)
	}
	require.NotContains(t, mustJSONString(t, dep), "s3cret")

	// The watched bucket keeps the other team's notification.
	nc, err := s3c.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String("incoming-data")})
	require.NoError(t, err)
	require.Len(t, nc.TopicConfigurations, 1)
	require.Len(t, nc.LambdaFunctionConfigurations, 1)
	require.Equal(t, "runfleet-dev-au_scan", aws.ToString(nc.LambdaFunctionConfigurations[0].Id))

	// One setting changes: the plan names exactly it.
	st.Functions.MemoryMB = 512
	e = newEngine(t, cfg, st, opts)
	plan, err = e.Plan(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string][]string{
		"update lambda function runfleet-dev-submit": {"memory"},
		"update lambda function runfleet-dev-sweep":  {"memory"},
	}, changed(plan))
	for _, c := range plan.Resources {
		if c.Action == infra.ActionUpdate {
			require.Equal(t, "memory 256 → 512", c.Detail)
		}
	}
	dep, err = e.Deploy(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, 2, dep.Changes)

	// New code: only the code is updated.
	st.Functions.ZipDir = writeZips(t, "v2")
	e = newEngine(t, cfg, st, opts)
	dep, err = e.Deploy(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, map[string][]string{
		"update lambda function runfleet-dev-submit": {"code"},
		"update lambda function runfleet-dev-sweep":  {"code"},
	}, changed(dep))
	again, err = e.Deploy(ctx, nil)
	require.NoError(t, err)
	require.Zero(t, again.Changes, "%v", changed(again))

	out, err := e.Outputs(ctx)
	require.NoError(t, err)
	require.Equal(t, bucket, out.Bucket)
	require.NotEmpty(t, out.APIURL)
	require.Equal(t, "arn:aws:lambda:us-east-1:"+account+":function:runfleet-dev-sweep", out.SweepFunctionARN)
	require.Equal(t, "arn:aws:iam::"+account+":policy/runfleet-dev-runner-read", out.RunnerReadPolicyARN)

	// A bucket with objects is refused without force.
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("archive/jobs/x.json.zst"),
		Body: stringReader("x")})
	require.NoError(t, err)
	_, err = e.Destroy(ctx, infra.DestroyOptions{}, nil)
	require.ErrorIs(t, err, infra.ErrBucketNotEmpty)
	require.ErrorContains(t, err, "refusing, nothing deleted: bucket is not empty: s3 bucket "+bucket+" holds 1 object versions")
	plan, err = e.Plan(ctx)
	require.NoError(t, err)
	require.Zero(t, plan.Changes, "a refused destroy deleted %v", changed(plan))

	rep, err := e.Destroy(ctx, infra.DestroyOptions{ForceDeleteBucket: true}, nil)
	require.NoError(t, err)
	require.Contains(t, changed(rep), "delete s3 bucket "+bucket)

	requireNothingTagged(t, cfg, "dev")
	// What the stack does not own is still there.
	_, err = iamc.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("runfleet-dev-other")})
	require.NoError(t, err)
	groups, err := logsc.DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String("/aws/lambda/runfleet-dev-")})
	require.NoError(t, err)
	require.Len(t, groups.LogGroups, 1)
	require.Equal(t, "/aws/lambda/runfleet-dev-extra", aws.ToString(groups.LogGroups[0].LogGroupName))
	nc, err = s3c.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String("incoming-data")})
	require.NoError(t, err)
	require.Len(t, nc.TopicConfigurations, 1)
	require.Empty(t, nc.LambdaFunctionConfigurations)
}

// requireNothingTagged lists every service's resources and fails on one
// tagged for stack.
func requireNothingTagged(t *testing.T, cfg aws.Config, stack string) {
	t.Helper()
	ctx := context.Background()
	iamc := iam.NewFromConfig(cfg)
	roles, err := iamc.ListRoles(ctx, &iam.ListRolesInput{})
	require.NoError(t, err)
	for _, r := range roles.Roles {
		tags, err := iamc.ListRoleTags(ctx, &iam.ListRoleTagsInput{RoleName: r.RoleName})
		require.NoError(t, err)
		require.False(t, hasTag(tags.Tags, stack), "role %s left", aws.ToString(r.RoleName))
	}
	pols, err := iamc.ListPolicies(ctx, &iam.ListPoliciesInput{Scope: iamtypes.PolicyScopeTypeLocal})
	require.NoError(t, err)
	for _, p := range pols.Policies {
		tags, err := iamc.ListPolicyTags(ctx, &iam.ListPolicyTagsInput{PolicyArn: p.Arn})
		require.NoError(t, err)
		require.False(t, hasTag(tags.Tags, stack), "policy %s left", aws.ToString(p.PolicyName))
	}
	lc := lambda.NewFromConfig(cfg)
	fns, err := lc.ListFunctions(ctx, &lambda.ListFunctionsInput{})
	require.NoError(t, err)
	for _, f := range fns.Functions {
		tags, err := lc.ListTags(ctx, &lambda.ListTagsInput{Resource: f.FunctionArn})
		require.NoError(t, err)
		require.NotEqual(t, stack, tags.Tags[infra.TagKey], "function %s left", aws.ToString(f.FunctionName))
	}
	logsc := cloudwatchlogs.NewFromConfig(cfg)
	groups, err := logsc.DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{})
	require.NoError(t, err)
	for _, g := range groups.LogGroups {
		tags, err := logsc.ListTagsLogGroup(ctx, &cloudwatchlogs.ListTagsLogGroupInput{LogGroupName: g.LogGroupName})
		require.NoError(t, err)
		require.NotEqual(t, stack, tags.Tags[infra.TagKey], "log group %s left", aws.ToString(g.LogGroupName))
	}
	sc := scheduler.NewFromConfig(cfg)
	sgs, err := sc.ListScheduleGroups(ctx, &scheduler.ListScheduleGroupsInput{})
	require.NoError(t, err)
	for _, g := range sgs.ScheduleGroups {
		require.NotEqual(t, "runfleet-"+stack, aws.ToString(g.Name), "schedule group left")
	}
	apis, err := apigatewayv2.NewFromConfig(cfg).GetApis(ctx, &apigatewayv2.GetApisInput{})
	require.NoError(t, err)
	for _, api := range apis.Items {
		require.NotEqual(t, stack, api.Tags[infra.TagKey], "api %s left", aws.ToString(api.Name))
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	buckets, err := s3c.ListBuckets(ctx, &s3.ListBucketsInput{})
	require.NoError(t, err)
	for _, b := range buckets.Buckets {
		tags, err := s3c.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: b.Name})
		if err != nil {
			continue // no tags
		}
		for _, tag := range tags.TagSet {
			require.False(t, aws.ToString(tag.Key) == infra.TagKey && aws.ToString(tag.Value) == stack, "bucket %s left", aws.ToString(b.Name))
		}
	}
	ssmc := ssm.NewFromConfig(cfg)
	params, err := ssmc.DescribeParameters(ctx, &ssm.DescribeParametersInput{})
	require.NoError(t, err)
	for _, p := range params.Parameters {
		tags, err := ssmc.ListTagsForResource(ctx, &ssm.ListTagsForResourceInput{ResourceType: ssmtypes.ResourceTypeForTaggingParameter, ResourceId: p.Name})
		require.NoError(t, err)
		for _, tag := range tags.TagList {
			require.False(t, aws.ToString(tag.Key) == infra.TagKey && aws.ToString(tag.Value) == stack, "parameter %s left", aws.ToString(p.Name))
		}
	}
}

func hasTag(tags []iamtypes.Tag, stack string) bool {
	for _, t := range tags {
		if aws.ToString(t.Key) == infra.TagKey && aws.ToString(t.Value) == stack {
			return true
		}
	}
	return false
}
