// Package localstack_test deploys a runfleet stack into LocalStack 4.14.0
// started with testcontainers-go. No registry is reachable on the machines
// this project is built on, so the test runs only where the image is
// already present (docker load) and skips, saying so, everywhere else.
package localstack_test

import (
	"archive/zip"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/localstack"

	"github.com/runfleet/runfleet/infra"
	"github.com/runfleet/runfleet/infra/images"
	"github.com/runfleet/runfleet/internal/testenv"
)

// Image is the last LocalStack image that starts without an auth token.
const Image = "localstack/localstack:4.14.0"

func TestInfraDeployIntoLocalStack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	docker, err := images.Connect(ctx)
	if err != nil {
		t.Skipf("LocalStack test needs a Docker engine: %v", err)
	}
	_, err = docker.ImageInspect(ctx, Image)
	docker.Close()
	if err != nil {
		t.Skipf("LocalStack test skipped: the image %s is not on this machine and no registry is reachable to pull it "+
			"(load it with `docker load` to run this test): %v", Image, err)
	}
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		// The reaper's image cannot be pulled either; t.Cleanup terminates.
		t.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}

	ls, err := localstack.Run(ctx, Image, testcontainers.WithEnv(map[string]string{
		"SERVICES":                   "s3,iam,sts,lambda,apigateway,events,scheduler,logs,ssm,secretsmanager",
		"LAMBDA_IGNORE_ARCHITECTURE": "1",
	}))
	testcontainers.CleanupContainer(t, ls)
	require.NoError(t, err, "start LocalStack")
	host, err := ls.Host(ctx)
	require.NoError(t, err)
	port, err := ls.MappedPort(ctx, "4566/tcp")
	require.NoError(t, err)
	endpoint := "http://" + host + ":" + port.Port()

	rdb := testenv.NewRedis(t)
	stack := infra.Stack{
		Name: "lstest", Target: infra.TargetLocalStack, EndpointURL: endpoint, Region: "us-east-1",
		Functions: infra.FunctionsSpec{ZipDir: writeZips(t), RedisURLParameter: "/runfleet/lstest/redis-url"},
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")))
	require.NoError(t, err)
	awsCfg.BaseEndpoint = aws.String(endpoint)
	engine, err := infra.New(ctx, stack, infra.Options{AWS: &awsCfg, RedisURL: rdb.URL()})
	require.NoError(t, err)

	first, err := engine.Deploy(ctx, nil)
	require.NoError(t, err, "first deploy")
	require.Positive(t, first.Changes, "the first deploy creates the stack")
	again, err := engine.Deploy(ctx, nil)
	require.NoError(t, err, "second deploy")
	require.Zero(t, again.Changes, "a second deploy changes nothing: %+v", again.Resources)

	gone, err := engine.Destroy(ctx, infra.DestroyOptions{}, nil)
	require.NoError(t, err, "destroy")
	require.Positive(t, gone.Changes)
}

// writeZips writes function zips for both architectures: LocalStack stores
// them; the functions' behaviour is tested under the Lambda emulator.
func writeZips(t *testing.T) string {
	dir := t.TempDir()
	for _, name := range []string{"submit-arm64", "sweep-arm64", "submit-amd64", "sweep-amd64"} {
		f, err := os.Create(filepath.Join(dir, name+".zip"))
		require.NoError(t, err)
		zw := zip.NewWriter(f)
		w, err := zw.CreateHeader(&zip.FileHeader{Name: "bootstrap", Method: zip.Deflate})
		require.NoError(t, err)
		_, err = w.Write([]byte("#!/bin/sh\necho " + name + "\n"))
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		require.NoError(t, f.Close())
	}
	return dir
}
