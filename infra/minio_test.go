package infra_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/infra"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// TestMinIOStackStartsJobsOnUpload deploys a stack to a real MinIO whose
// webhook target posts to a running gateway: an upload under a storage
// automation's prefix then submits a job.
func TestMinIOStackStartsJobsOnUpload(t *testing.T) {
	t.Parallel()
	// CI has both; a missing one fails, as testenv does, rather than
	// passing with nothing tested.
	if _, err := testenv.RedisServerPath(); err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.MinIOPath(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := testenv.NewRedis(t)
	wc, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = wc.Close() })
	_, err = wc.Clusters().Create(ctx, "scans", "")
	require.NoError(t, err)
	for _, task := range benchtask.All() {
		require.NoError(t, wc.Clusters().Declare(ctx, "scans", workflows.IdentifierOf(task)))
	}
	_, token, err := controlplane.CreateToken(ctx, wc, controlplane.TokenSpec{Name: "minio", Scope: controlplane.ScopeSubmit})
	require.NoError(t, err)
	auto, err := controlplane.CreateAutomation(ctx, wc, controlplane.Automation{Name: "ingest", Cluster: "scans",
		Task: "Ingest", Version: benchtask.Version, Storage: "s3://runfleet-mdev/incoming/"})
	require.NoError(t, err)

	// The gateway.
	srv, err := controlplane.New(controlplane.Config{Client: wc,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- (&controlplane.Gateway{Server: srv, TickEvery: time.Second, SweepEvery: -1}).Serve(gctx, l)
	}()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })

	m := testenv.NewMinIOEnv(t,
		"MINIO_REGION=us-east-1",
		"MINIO_NOTIFY_WEBHOOK_ENABLE_RF=on",
		"MINIO_NOTIFY_WEBHOOK_ENDPOINT_RF=http://"+l.Addr().String()+"/v1/events/s3",
		"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_RF="+token)
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, "")}
	st := infra.Stack{Name: "mdev", Target: infra.TargetMinIO, EndpointURL: m.Endpoint(),
		Bucket: infra.BucketSpec{ArchiveExpireDays: 90}, MinIO: infra.MinIOSpec{WebhookID: "RF", Region: "us-east-1"}}
	autos, err := controlplane.ListAutomations(ctx, wc)
	require.NoError(t, err)
	e := newEngine(t, cfg, st, infra.Options{AutomationsKnown: true, Automations: autos})

	plan, err := e.Plan(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"create s3 bucket runfleet-mdev": nil, "create s3 notifications runfleet-mdev": nil}, changed(plan))
	require.NotEmpty(t, plan.Notes, "a note says how to give runners read access")

	// MinIO registers its webhook target shortly after it starts serving;
	// until then it refuses the ARN, and deploy says what to check.

	require.Eventually(t, func() bool {
		_, err = e.Deploy(ctx, nil)
		if err != nil {
			require.ErrorContains(t, err, "MinIO has no webhook target RF")
		}
		return err == nil
	}, 20*time.Second, 100*time.Millisecond, "deploy: %v; %s", err, m.LogTail())
	// A MinIO that has just started loads bucket metadata in the
	// background and may drop a notification set before that load: deploy
	// again until it has stayed for a second (a later deploy converges the
	// same way for an operator).
	hasNotification := func() bool {
		nc, err := m.Client().GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String("runfleet-mdev")})
		return err == nil && len(nc.QueueConfigurations) == 1
	}
	for stable, deadline := time.Now(), time.Now().Add(20*time.Second); time.Since(stable) < time.Second; time.Sleep(100 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "the notification does not stay set; %s", m.LogTail())
		if !hasNotification() {
			_, err = e.Deploy(ctx, nil)
			require.NoError(t, err)
			stable = time.Now()
		}
	}
	again, err := e.Deploy(ctx, nil)
	require.NoError(t, err)
	require.Zero(t, again.Changes, "%v", changed(again))

	c := m.Client()
	v, err := c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String("runfleet-mdev")})
	require.NoError(t, err)
	require.Equal(t, s3types.BucketVersioningStatusEnabled, v.Status)
	lc, err := c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String("runfleet-mdev")})
	require.NoError(t, err)
	require.Len(t, lc.Rules, 1)
	require.Equal(t, int32(90), aws.ToInt32(lc.Rules[0].Expiration.Days))
	require.Equal(t, int32(30), aws.ToInt32(lc.Rules[0].NoncurrentVersionExpiration.NoncurrentDays))
	nc, err := c.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String("runfleet-mdev")})
	require.NoError(t, err)
	require.Len(t, nc.QueueConfigurations, 1)
	require.Equal(t, "arn:minio:sqs:us-east-1:RF:webhook", aws.ToString(nc.QueueConfigurations[0].QueueArn))

	// An upload outside the prefix starts nothing; one under it starts a job.
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("runfleet-mdev"), Key: aws.String("incoming/scan-1.tif"),
		Body: strings.NewReader("pixels")})
	require.NoError(t, err)
	var jobs []workflows.Job
	require.Eventually(t, func() bool {
		jobs, err = wc.Jobs().List(ctx, workflows.ListOptions{Cluster: "scans", Limit: 10})
		require.NoError(t, err)
		return len(jobs) > 0
	}, 60*time.Second, 100*time.Millisecond, "no job submitted for the upload; %s", m.LogTail())
	require.Len(t, jobs, 1)
	require.Contains(t, jobs[0].Name, auto.Name)

	_, err = e.Destroy(ctx, infra.DestroyOptions{}, nil)
	require.ErrorIs(t, err, infra.ErrBucketNotEmpty)
	rep, err := e.Destroy(ctx, infra.DestroyOptions{ForceDeleteBucket: true}, nil)
	require.NoError(t, err)
	require.Contains(t, changed(rep), "delete s3 bucket runfleet-mdev")
	_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("runfleet-mdev")})
	require.Error(t, err)
}
