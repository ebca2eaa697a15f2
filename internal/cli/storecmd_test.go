package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
)

func TestStoreInitCreatesTheBucketOnce(t *testing.T) {
	m := testenv.NewMinIO(t)
	t.Setenv("AWS_ENDPOINT_URL_S3", m.Endpoint())
	t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	t.Setenv("AWS_REGION", "us-east-1")
	r := runCLI(t, "", "store", "init", "--store", "s3://fresh-bucket/team")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, "created store s3://fresh-bucket/team\n", r.stdout)
	r = runCLI(t, "", "store", "init", "--store", "s3://fresh-bucket/team")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, "store s3://fresh-bucket/team is ready\n", r.stdout)

	dir := filepath.Join(t.TempDir(), "store")
	r = runCLI(t, "", "store", "init", "--store", "file://"+dir)
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.DirExists(t, dir)

	r = runCLI(t, "", "store", "init", "--store", "s3://")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "bucket")
}

func TestRunnerStartRefusesBadFlags(t *testing.T) {
	r := runCLI(t, "", "runner", "start")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, "--cluster is required")
	r = runCLI(t, "", "runner", "start", "--cluster", "dev", "-n", "0")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, "-n must be at least 1")
	r = runCLI(t, "", "runner", "start", "--cluster", "dev", "--trusted-key", "not-a-key")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, "neither a base64 public key nor a readable file")
}

func TestRunnerdHelpAndUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	code := RunnerdMain(context.Background(), []string{"--help"}, Streams{Out: &out, Err: &errOut})
	require.Equal(t, ExitOK, code)
	require.Contains(t, out.String(), "Example:\n  runnerd --cluster dev")
	require.Contains(t, out.String(), "--redis")
	out.Reset()
	code = RunnerdMain(context.Background(), []string{"--bogus"}, Streams{Out: &out, Err: &errOut})
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut.String(), "unknown flag: --bogus")
}
