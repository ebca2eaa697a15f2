package infra_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/infra"
)

// The example documents every key with its default: it loads, and with a
// secret it is a valid stack.
func TestStackExampleLoads(t *testing.T) {
	st, err := infra.LoadStack("stack.example.toml")
	require.NoError(t, err)
	require.Equal(t, "dev", st.Name)
	require.Equal(t, int32(256), st.Functions.MemoryMB)
	require.Equal(t, int32(30), st.Bucket.NoncurrentExpireDays)
	require.ErrorContains(t, st.Validate(), "redis_url_secret is missing")
	st.Functions.RedisURLSecret = "arn:aws:ssm:us-east-1:123456789012:parameter/runfleet/dev/redis-url"
	require.NoError(t, st.Validate())
}

func TestStackFileRefusesUnknownKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "stack.toml")
	require.NoError(t, os.WriteFile(p, []byte("stack = \"dev\"\n[bucket]\narchive_days = 3\n"), 0o644))
	_, err := infra.LoadStack(p)
	require.ErrorContains(t, err, "unknown key bucket.archive_days")
}

func TestStackValidation(t *testing.T) {
	secret := infra.FunctionsSpec{RedisURLSecret: "arn:aws:secretsmanager:us-east-1:1:secret:r"}
	for _, tc := range []struct {
		stack infra.Stack
		want  string
	}{
		{infra.Stack{Target: "aws", Functions: secret}, "stack name is missing"},
		{infra.Stack{Name: "a--b", Target: "aws", Functions: secret}, `stack name "a--b"`},
		{infra.Stack{Name: "dev", Target: "gcp"}, `unknown target "gcp"`},
		{infra.Stack{Name: "dev", Target: "aws", Functions: infra.FunctionsSpec{RedisURLSecret: secret.RedisURLSecret, Architecture: "mips"}}, `architecture "mips"`},
		{infra.Stack{Name: "dev", Target: "aws", Functions: infra.FunctionsSpec{RedisURLSecret: secret.RedisURLSecret, LogRetentionDays: 10}}, "log_retention_days 10"},
		{infra.Stack{Name: "dev", Target: "aws", Functions: infra.FunctionsSpec{RedisURLSecret: "rediss://u:p@h:6379"}}, "never the URL itself"},
		{infra.Stack{Name: "dev", Target: "aws", Schedule: infra.ScheduleSpec{Mode: "cron"}, Functions: secret}, `mode "cron"`},
	} {
		require.ErrorContains(t, tc.stack.Validate(), tc.want)
	}
}
