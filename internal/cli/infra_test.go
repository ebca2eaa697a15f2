package cli

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
)

func writeFunctionZips(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"submit-arm64.zip", "sweep-arm64.zip"} {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, err := zw.Create("bootstrap")
		require.NoError(t, err)
		_, err = w.Write([]byte(name))
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644))
	}
	return dir
}

func TestInfraPlanDeployOutputsAgainstMoto(t *testing.T) {
	moto := testenv.NewMoto(t).Endpoint
	t.Setenv("AWS_ENDPOINT_URL", moto)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("RUNFLEET_REDIS_URL", "")
	zips := writeFunctionZips(t)
	secret := "arn:aws:ssm:us-east-1:123456789012:parameter/runfleet/cli/redis-url"
	stack := []string{"--stack", "cli", "--target", "aws", "--zip-dir", zips, "--redis-url-secret", secret}
	run := func(args ...string) result {
		t.Helper()
		return runCLI(t, "", args...)
	}

	type report struct {
		Changes   int `json:"changes"`
		Resources []struct {
			Type, Name, Action string
			Fields             []string
		} `json:"resources"`
	}
	r := run(append([]string{"infra", "plan", "--json"}, stack...)...)
	require.Equal(t, 0, r.code, r.stderr)
	var plan report
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &plan), r.stdout)
	require.Positive(t, plan.Changes)
	require.Len(t, plan.Resources, plan.Changes)
	require.Equal(t, "lambda function", plan.Resources[6].Type)
	require.Equal(t, "runfleet-cli-submit", plan.Resources[6].Name)
	require.Equal(t, "create", plan.Resources[6].Action)

	r = run(append([]string{"infra", "deploy", "--json"}, stack...)...)
	require.Equal(t, 0, r.code, r.stderr)
	var dep report
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &dep), r.stdout)
	require.Equal(t, plan.Changes, dep.Changes)

	r = run(append([]string{"infra", "plan"}, stack...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "= no change  lambda function runfleet-cli-sweep\n")
	require.Contains(t, r.stdout, "note: storage automations not read (no Redis URL")
	require.Contains(t, r.stdout, "Plan: 0 to create, 0 to update, "+strconv.Itoa(plan.Changes)+" unchanged.\n")

	r = run("infra", "outputs", "--stack", "cli", "--target", "aws", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var out map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	require.Equal(t, "runfleet-cli-123456789012", out["bucket"])
	require.NotEmpty(t, out["api_url"])
	require.Equal(t, "arn:aws:lambda:us-east-1:123456789012:function:runfleet-cli-submit", out["submit_function_arn"])
	require.Equal(t, "arn:aws:iam::123456789012:role/runfleet-cli-functions", out["functions_role_arn"])

	r = run("infra", "destroy", "--stack", "cli", "--target", "aws")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "- delete     lambda function runfleet-cli-submit\n")
	require.Contains(t, r.stdout, "Destroyed stack cli:")
	r = run("infra", "outputs", "--stack", "cli", "--target", "aws")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "stack cli is not deployed")
}

func TestInfraRefusesBadInput(t *testing.T) {
	zips := writeFunctionZips(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown target", []string{"infra", "plan", "--stack", "dev", "--target", "gcp"}, ExitUsage, `unknown --target "gcp": want aws, localstack or minio`},
		{"missing target", []string{"infra", "deploy", "--stack", "dev"}, ExitUsage, "missing --target"},
		{"bad stack name", []string{"infra", "plan", "--stack", "Dev_1", "--target", "minio", "--endpoint-url", "http://127.0.0.1:1"}, ExitFailure, `stack name "Dev_1": want 2 to 26 lowercase letters`},
		{"url instead of a secret arn", []string{"infra", "plan", "--stack", "dev", "--target", "localstack", "--redis-url-secret", "redis://:pw@host:6379"}, ExitFailure, "redis_url_secret \"a URL (hidden)\""},
		{"no secret", []string{"infra", "plan", "--stack", "dev", "--target", "localstack", "--zip-dir", zips}, ExitFailure, "redis_url_secret is missing"},
		{"minio without endpoint", []string{"infra", "plan", "--stack", "dev", "--target", "minio"}, ExitFailure, "target minio needs MinIO's address"},
		{"unknown key in the stack file", []string{"infra", "plan", "--file", "testdata/typo.toml"}, ExitFailure, "unknown key functions.memroy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_ENDPOINT_URL", "")
			t.Setenv("AWS_ENDPOINT_URL_S3", "")
			r := runCLI(t, "", tc.args...)
			require.Equal(t, tc.code, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
			require.Contains(t, r.stderr, tc.want)
			require.NotContains(t, r.stderr, ":pw@")
		})
	}
}

func TestInfraMissingZipSaysHowToBuildIt(t *testing.T) {
	moto := testenv.NewMoto(t).Endpoint
	t.Setenv("AWS_ENDPOINT_URL", moto)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	r := runCLI(t, "", "infra", "plan", "--stack", "dev", "--target", "localstack", "--zip-dir", t.TempDir(),
		"--redis-url-secret", "arn:aws:ssm:us-east-1:000000000000:parameter/redis")
	require.Equal(t, ExitFailure, r.code, r.stderr)
	require.Contains(t, r.stderr, "submit-arm64.zip is missing: run `go tool task functions`")
}

func TestInfraDeployRefusesAnUntaggedResourceUnlessAdopt(t *testing.T) {
	m := testenv.NewMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", m.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("RUNFLEET_REDIS_URL", "")
	// A log group with one of the stack's names, made by someone else.
	_, err := cloudwatchlogs.NewFromConfig(m.Config()).CreateLogGroup(context.Background(),
		&cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String("/aws/lambda/runfleet-cla-submit")})
	require.NoError(t, err)
	stack := []string{"--stack", "cla", "--target", "aws", "--zip-dir", writeFunctionZips(t),
		"--redis-url-secret", "arn:aws:ssm:us-east-1:123456789012:parameter/runfleet/cla/redis-url"}

	for _, cmd := range []string{"plan", "deploy"} {
		r := runCLI(t, "", append([]string{"infra", cmd}, stack...)...)
		require.Equal(t, ExitFailure, r.code, "%s: %s", cmd, r.stdout)
		require.Contains(t, r.stderr, "log group /aws/lambda/runfleet-cla-submit: it exists but is not tagged runfleet:stack=cla; it is not this stack's. Rename the stack, delete it, or pass --adopt to take it over")
	}
	r := runCLI(t, "", append([]string{"infra", "deploy", "--adopt"}, stack...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "~ update     log group /aws/lambda/runfleet-cla-submit: tags untagged → runfleet:stack=cla, retention never expire → 30 days\n")
	r = runCLI(t, "", append([]string{"infra", "plan"}, stack...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "Plan: 0 to create, 0 to update,")
}
