package infra_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/infra"
)

func TestDeployKilledMidwayConvergesWhenRunAgain(t *testing.T) {
	t.Parallel()
	m := startMoto(t)
	zips := writeZips(t, "v1")
	s3c := s3.NewFromConfig(m.config(), func(o *s3.Options) { o.UsePathStyle = true })
	// Deploy plans the whole stack before it changes anything: count the
	// requests of that read-only pass, so the kill points fall in the
	// changes that follow it.
	counter := &killAfter{next: m.config().HTTPClient, n: 1 << 40, cancel: func() {}}
	countCfg := m.config()
	countCfg.HTTPClient = counter
	probe := newEngine(t, countCfg, infra.Stack{Name: "killcount", Target: infra.TargetLocalStack,
		Functions: infra.FunctionsSpec{ZipDir: zips, RedisURLSecret: "arn:aws:ssm:us-east-1:" + account + ":parameter/redis"}},
		infra.Options{AutomationsKnown: true, Automations: []controlplane.Automation{{ID: "au_x", Storage: "s3://runfleet-killcount/in/"}}})
	before := counter.sent.Load()
	_, err := probe.Plan(context.Background())
	require.NoError(t, err)
	planRequests := counter.sent.Load() - before
	// Kill points after the plan: inside the bucket's setup, among the
	// roles and functions, and in the API's routes.
	for i, k := range []int64{3, 19, 40} {
		n := k + planRequests
		stack := fmt.Sprintf("kill%d", i)
		st := infra.Stack{Name: stack, Target: infra.TargetLocalStack, Functions: infra.FunctionsSpec{ZipDir: zips,
			RedisURLSecret: "arn:aws:ssm:us-east-1:" + account + ":parameter/redis"}}
		opts := infra.Options{AutomationsKnown: true, Automations: []controlplane.Automation{
			{ID: "au_x", Storage: "s3://runfleet-" + stack + "/in/"}}}

		ctx, cancel := context.WithCancel(context.Background())
		cfg := m.config()
		kill := &killAfter{next: cfg.HTTPClient, n: n, cancel: cancel}
		cfg.HTTPClient = kill
		_, err := newEngine(t, cfg, st, opts).Deploy(ctx, nil)
		require.Error(t, err, "kill after %d requests", n)
		require.ErrorIs(t, err, context.Canceled)
		cancel()
		if k == 3 {
			// Killed between CreateBucket and PutBucketTagging: the
			// bucket is there, untagged and empty, and the rerun
			// takes it over without Adopt.
			_, err := s3c.HeadBucket(context.Background(), &s3.HeadBucketInput{Bucket: aws.String("runfleet-" + stack)})
			require.NoError(t, err)
			_, err = s3c.GetBucketTagging(context.Background(), &s3.GetBucketTaggingInput{Bucket: aws.String("runfleet-" + stack)})
			require.Error(t, err, "the bucket is tagged already: the kill point is not between create and tag")
		}

		e := newEngine(t, m.config(), st, opts)
		_, err = e.Deploy(context.Background(), nil)
		require.NoError(t, err, "deploy after a kill at request %d", n)
		again, err := e.Deploy(context.Background(), nil)
		require.NoError(t, err)
		require.Zero(t, again.Changes, "kill at request %d: %v", n, changed(again))
	}
}

func TestForeignResourcesAreNeverTakenOverNorDeleted(t *testing.T) {
	t.Parallel()
	m := startMoto(t)
	ctx := context.Background()
	cfg := m.config()
	iamc := iam.NewFromConfig(cfg)
	// A role with one of the stack's names, tagged for another stack.
	_, err := iamc.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("runfleet-fx-functions"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[]}`),
		Tags:                     []iamtypes.Tag{{Key: aws.String(infra.TagKey), Value: aws.String("other")}}})
	require.NoError(t, err)

	st := infra.Stack{Name: "fx", Target: infra.TargetLocalStack, Functions: infra.FunctionsSpec{ZipDir: writeZips(t, "v1"),
		RedisURLSecret: "arn:aws:secretsmanager:us-east-1:" + account + ":secret:redis-AbCdEf"}}
	e := newEngine(t, cfg, st, infra.Options{})
	_, err = e.Deploy(ctx, nil)
	require.ErrorContains(t, err, "iam role runfleet-fx-functions: it exists and belongs to stack other")

	// Deploy planned the whole stack first, so it refused before creating
	// anything: the bucket, first in order, is not there.
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	_, err = s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("runfleet-fx")})
	require.Error(t, err, "a refused deploy created the bucket")
	// Destroy refuses as a whole and deletes nothing.
	_, err = e.Destroy(ctx, infra.DestroyOptions{}, nil)
	require.ErrorContains(t, err, "refusing, nothing deleted: iam role runfleet-fx-functions belongs to stack other")

	// Untagged is refused too, by deploy (without Adopt) and destroy.
	_, err = iamc.UntagRole(ctx, &iam.UntagRoleInput{RoleName: aws.String("runfleet-fx-functions"), TagKeys: []string{infra.TagKey}})
	require.NoError(t, err)
	_, err = e.Deploy(ctx, nil)
	require.ErrorContains(t, err, "iam role runfleet-fx-functions: it exists but is not tagged runfleet:stack=fx; it is not this stack's")
	require.ErrorContains(t, err, "--adopt")
	_, err = e.Destroy(ctx, infra.DestroyOptions{}, nil)
	require.ErrorContains(t, err, "iam role runfleet-fx-functions is not tagged runfleet:stack=fx")
	_, err = iamc.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("runfleet-fx-functions")})
	require.NoError(t, err)
}
