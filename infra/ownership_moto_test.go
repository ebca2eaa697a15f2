package infra_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/infra"
)

// localStackOn is a stack with the rules schedule mode, as on LocalStack.
func localStackOn(name, zips string) infra.Stack {
	return infra.Stack{Name: name, Target: infra.TargetLocalStack, Functions: infra.FunctionsSpec{ZipDir: zips,
		RedisURLSecret: "arn:aws:ssm:us-east-1:" + account + ":parameter/redis"}}
}

func lambdaNotificationIDs(t *testing.T, s3c *s3.Client, bucket string) []string {
	t.Helper()
	nc, err := s3c.GetBucketNotificationConfiguration(context.Background(), &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	var ids []string
	for _, c := range nc.LambdaFunctionConfigurations {
		ids = append(ids, aws.ToString(c.Id))
	}
	slices.Sort(ids)
	return ids
}

// Stack prod's ids are a prefix of stack prod-eu's (runfleet-prod-…):
// neither takes the other's notifications on a bucket both watch.
func TestStacksWhoseNamesSharePrefixKeepEachOthersNotifications(t *testing.T) {
	t.Parallel()
	m := startMoto(t)
	ctx := context.Background()
	cfg := m.config()
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	_, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("shared-in")})
	require.NoError(t, err)
	zips := writeZips(t, "v1")
	prod := newEngine(t, cfg, localStackOn("prod", zips), infra.Options{AutomationsKnown: true, Automations: []controlplane.Automation{
		{ID: "au_p", Storage: "s3://shared-in/prod/"}, {ID: "au_pc", Cron: "0 3 * * *"}}})
	prodEU := newEngine(t, cfg, localStackOn("prod-eu", zips), infra.Options{AutomationsKnown: true, Automations: []controlplane.Automation{
		{ID: "au_e", Storage: "s3://shared-in/eu/"}, {ID: "au_ec", Cron: "0 4 * * *"}}})

	for _, e := range []*infra.Engine{prod, prodEU} {
		_, err := e.Deploy(ctx, nil)
		require.NoError(t, err, "deploy %s", e.Stack().Name)
	}
	both := []string{"runfleet-prod-au_p", "runfleet-prod-eu-au_e"}
	require.Equal(t, both, lambdaNotificationIDs(t, s3c, "shared-in"))
	for _, e := range []*infra.Engine{prod, prodEU} {
		again, err := e.Deploy(ctx, nil)
		require.NoError(t, err)
		require.Zero(t, again.Changes, "deploy %s again: %v", e.Stack().Name, changed(again))
	}
	require.Equal(t, both, lambdaNotificationIDs(t, s3c, "shared-in"))

	rep, err := prod.Destroy(ctx, infra.DestroyOptions{}, nil)
	require.NoError(t, err)
	require.Contains(t, changed(rep), "delete s3 notifications shared-in")
	require.Equal(t, []string{"runfleet-prod-eu-au_e"}, lambdaNotificationIDs(t, s3c, "shared-in"))
	plan, err := prodEU.Plan(ctx)
	require.NoError(t, err)
	require.Zero(t, plan.Changes, "prod-eu after prod's destroy: %v", changed(plan))

	_, err = prodEU.Destroy(ctx, infra.DestroyOptions{}, nil)
	require.NoError(t, err)
	require.Empty(t, lambdaNotificationIDs(t, s3c, "shared-in"))
	requireNothingTagged(t, cfg, "prod")
	requireNothingTagged(t, cfg, "prod-eu")
}

func TestRefusedDestroyDeletesNothing(t *testing.T) {
	t.Parallel()
	m := startMoto(t)
	ctx := context.Background()
	cfg := m.config()
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	iamc := iam.NewFromConfig(cfg)
	ebc := eventbridge.NewFromConfig(cfg)
	e := newEngine(t, cfg, localStackOn("keep", writeZips(t, "v1")), infra.Options{AutomationsKnown: true,
		Automations: []controlplane.Automation{{ID: "au_in", Storage: "s3://runfleet-keep/in/"}, {ID: "au_nightly", Cron: "0 3 * * *"}}})
	dep, err := e.Deploy(ctx, nil)
	require.NoError(t, err)
	require.Contains(t, changed(dep), "create cron rule runfleet-keep-cron-au_nightly")
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("runfleet-keep"), Key: aws.String("archive/jobs/x.json.zst"),
		Body: stringReader("x")})
	require.NoError(t, err)

	// A bucket with objects, without --force-delete-bucket.
	_, err = e.Destroy(ctx, infra.DestroyOptions{}, nil)
	require.ErrorIs(t, err, infra.ErrBucketNotEmpty)
	require.ErrorContains(t, err, "destroy stack keep: refusing, nothing deleted: bucket is not empty: s3 bucket runfleet-keep holds 1 object versions")
	require.ErrorContains(t, err, "--force-delete-bucket")
	plan, err := e.Plan(ctx)
	require.NoError(t, err)
	require.Zero(t, plan.Changes, "after a refused destroy: %v", changed(plan))

	// A resource with one of the stack's names that is not the stack's,
	// with --force-delete-bucket: the cron rule stays too.
	_, err = iamc.TagRole(ctx, &iam.TagRoleInput{RoleName: aws.String("runfleet-keep-functions"),
		Tags: []iamtypes.Tag{{Key: aws.String(infra.TagKey), Value: aws.String("other")}}})
	require.NoError(t, err)
	_, err = e.Destroy(ctx, infra.DestroyOptions{ForceDeleteBucket: true}, nil)
	require.ErrorContains(t, err, "refusing, nothing deleted: iam role runfleet-keep-functions belongs to stack other")
	_, err = ebc.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String("runfleet-keep-cron-au_nightly")})
	require.NoError(t, err, "the cron rule was deleted by a refused destroy")
	_, err = s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("runfleet-keep"), Key: aws.String("archive/jobs/x.json.zst")})
	require.NoError(t, err)

	// Given back: everything goes, the cron rule after the sweep's rule
	// and function, which would re-create it.
	_, err = iamc.TagRole(ctx, &iam.TagRoleInput{RoleName: aws.String("runfleet-keep-functions"),
		Tags: []iamtypes.Tag{{Key: aws.String(infra.TagKey), Value: aws.String("keep")}}})
	require.NoError(t, err)
	rep, err := e.Destroy(ctx, infra.DestroyOptions{ForceDeleteBucket: true}, nil)
	require.NoError(t, err)
	at := func(what string) int {
		i := slices.IndexFunc(rep.Resources, func(c infra.Change) bool {
			return c.Action == infra.ActionDelete && c.Type+" "+c.Name == what
		})
		require.GreaterOrEqual(t, i, 0, "no delete of %s in %v", what, changed(rep))
		return i
	}
	cron := at("cron rule runfleet-keep-cron-au_nightly")
	require.Greater(t, cron, at("eventbridge rule runfleet-keep-sweep"))
	require.Greater(t, cron, at("lambda function runfleet-keep-sweep"))
	_, err = ebc.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String("runfleet-keep-cron-au_nightly")})
	require.Error(t, err)
	requireNothingTagged(t, cfg, "keep")
}

func TestUntaggedResourcesBlockDeployUnlessAdopted(t *testing.T) {
	t.Parallel()
	m := startMoto(t)
	ctx := context.Background()
	cfg := m.config()
	iamc := iam.NewFromConfig(cfg)
	lc := lambda.NewFromConfig(cfg)
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	zips := writeZips(t, "v1")
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`

	// Stack ada: its functions role exists, untagged.
	_, err := iamc.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("runfleet-ada-functions"), AssumeRolePolicyDocument: aws.String(trust)})
	require.NoError(t, err)
	// Stack adb: its submit function exists, untagged, with code of its own.
	role, err := iamc.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("someone-elses"), AssumeRolePolicyDocument: aws.String(trust)})
	require.NoError(t, err)
	foreignZip, err := os.ReadFile(filepath.Join(zips, "submit-amd64.zip"))
	require.NoError(t, err)
	_, err = lc.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("runfleet-adb-submit"), Role: role.Role.Arn,
		Runtime: lambdatypes.RuntimeProvidedal2023, Handler: aws.String("bootstrap"), Code: &lambdatypes.FunctionCode{ZipFile: foreignZip},
		// moto keeps the architecture a function was created with
		// through UpdateFunctionCode.
		Architectures: []lambdatypes.Architecture{lambdatypes.ArchitectureArm64}})
	require.NoError(t, err)
	// Stack adc: its bucket exists, untagged, holding an object.
	_, err = s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("runfleet-adc")})
	require.NoError(t, err)
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("runfleet-adc"), Key: aws.String("data"), Body: stringReader("x")})
	require.NoError(t, err)

	for _, tc := range []struct {
		stack, refused string
		tagged         func() map[string]string
	}{
		{"ada", "iam role runfleet-ada-functions: it exists but is not tagged runfleet:stack=ada; it is not this stack's. Rename the stack, delete it, or pass --adopt to take it over",
			func() map[string]string {
				out, err := iamc.ListRoleTags(ctx, &iam.ListRoleTagsInput{RoleName: aws.String("runfleet-ada-functions")})
				require.NoError(t, err)
				tags := map[string]string{}
				for _, t := range out.Tags {
					tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
				}
				return tags
			}},
		{"adb", "lambda function runfleet-adb-submit: it exists but is not tagged runfleet:stack=adb; it is not this stack's. Rename the stack, delete it, or pass --adopt",
			func() map[string]string {
				out, err := lc.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("runfleet-adb-submit")})
				require.NoError(t, err)
				return out.Tags
			}},
		{"adc", "s3 bucket runfleet-adc: it exists, holds 1 object versions and is not tagged runfleet:stack=adc; it is not this stack's",
			func() map[string]string {
				out, err := s3c.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: aws.String("runfleet-adc")})
				if err != nil {
					return nil
				}
				tags := map[string]string{}
				for _, t := range out.TagSet {
					tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
				}
				return tags
			}},
	} {
		st := localStackOn(tc.stack, zips)
		_, err := newEngine(t, cfg, st, infra.Options{}).Plan(ctx)
		require.ErrorContains(t, err, tc.refused)
		_, err = newEngine(t, cfg, st, infra.Options{}).Deploy(ctx, nil)
		require.ErrorContains(t, err, tc.refused)
		require.Empty(t, tc.tagged()[infra.TagKey], "stack %s: refused, yet tagged", tc.stack)

		e := newEngine(t, cfg, st, infra.Options{Adopt: true})
		dep, err := e.Deploy(ctx, nil)
		require.NoError(t, err, "stack %s with Adopt", tc.stack)
		require.Equal(t, tc.stack, tc.tagged()[infra.TagKey])
		adopted := 0
		for _, c := range dep.Resources {
			if c.Action == infra.ActionUpdate && slices.Contains(c.Fields, "tags") {
				adopted++
			}
		}
		require.Equal(t, 1, adopted, "stack %s: %v", tc.stack, changed(dep))
		again, err := newEngine(t, cfg, st, infra.Options{}).Deploy(ctx, nil)
		require.NoError(t, err)
		require.Zero(t, again.Changes, "stack %s: %v", tc.stack, changed(again))
		_, err = e.Destroy(ctx, infra.DestroyOptions{ForceDeleteBucket: true}, nil)
		require.NoError(t, err)
		requireNothingTagged(t, cfg, tc.stack)
	}
	// The role the adopted function used is not the stack's and stays.
	_, err = iamc.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("someone-elses")})
	require.NoError(t, err)
}
