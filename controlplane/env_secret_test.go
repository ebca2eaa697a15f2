package controlplane_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/internal/testenv"
)

// Not parallel: the tests set environment variables.

// awsEnv points the SDK's default configuration at moto, as Lambda's
// environment (or LocalStack's) would point it at AWS.
func awsEnv(t *testing.T, cfg aws.Config) {
	t.Setenv("AWS_ENDPOINT_URL", aws.ToString(cfg.BaseEndpoint))
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, v := range []string{"RUNFLEET_REDIS_URL", "RUNFLEET_REDIS_URL_SECRET", "RUNFLEET_STORE", "RUNFLEET_RETENTION",
		"RUNFLEET_SCHEDULE_MODE", "RUNFLEET_STACK", "RUNFLEET_SCHEDULE_GROUP", "RUNFLEET_SCHEDULE_TARGET_ARN", "RUNFLEET_SCHEDULE_ROLE_ARN"} {
		t.Setenv(v, "")
	}
}

// reachesRedis checks a Config's client answers.
func reachesRedis(t *testing.T, cfg controlplane.Config, closeFn func()) {
	t.Helper()
	defer closeFn()
	_, err := cfg.Client.Clusters().List(context.Background())
	require.NoError(t, err)
}

func TestConfigFromEnvReadsTheRedisURLFromASecret(t *testing.T) {
	ctx := context.Background()
	r := testenv.NewRedis(t)
	moto := startMoto(t)
	awsEnv(t, moto)

	// An SSM SecureString parameter holding the URL.
	_, err := ssm.NewFromConfig(moto).PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String("/runfleet/t1/redis-url"), Type: ssmtypes.ParameterTypeSecureString, Value: aws.String(r.URL())})
	require.NoError(t, err)
	t.Setenv("RUNFLEET_REDIS_URL_SECRET", "arn:aws:ssm:us-east-1:123456789012:parameter/runfleet/t1/redis-url")
	cfg, closeFn, err := controlplane.ConfigFromEnv(ctx)
	require.NoError(t, err)
	reachesRedis(t, cfg, closeFn)

	// A Secrets Manager secret holding the URL, or {"url": URL}.
	sm := secretsmanager.NewFromConfig(moto)
	for name, value := range map[string]string{"plain": r.URL(), "json": `{"url": "` + r.URL() + `", "note": "x"}`} {
		out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("runfleet/t1/" + name), SecretString: aws.String(value)})
		require.NoError(t, err)
		t.Setenv("RUNFLEET_REDIS_URL_SECRET", aws.ToString(out.ARN))
		cfg, closeFn, err := controlplane.ConfigFromEnv(ctx)
		require.NoError(t, err, name)
		reachesRedis(t, cfg, closeFn)
	}
}

func TestConfigFromEnvSecretErrorsNameTheARNNotTheValue(t *testing.T) {
	ctx := context.Background()
	moto := startMoto(t)
	awsEnv(t, moto)
	const password = "hunter2"
	bad := "redis://user:" + password + "@host:notaport/0"
	_, err := ssm.NewFromConfig(moto).PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String("/runfleet/t1/bad-url"), Type: ssmtypes.ParameterTypeSecureString, Value: aws.String(bad)})
	require.NoError(t, err)
	sm := secretsmanager.NewFromConfig(moto)
	noURL, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("runfleet/t1/no-url"),
		SecretString: aws.String(`{"password": "` + password + `"}`)})
	require.NoError(t, err)
	binary, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("runfleet/t1/binary"),
		SecretBinary: []byte(password)})
	require.NoError(t, err)

	for _, tc := range []struct {
		name, secret string
		says         []string
	}{
		{"missing parameter", "arn:aws:ssm:us-east-1:123456789012:parameter/runfleet/t1/nope",
			[]string{"RUNFLEET_REDIS_URL_SECRET", "arn:aws:ssm:us-east-1:123456789012:parameter/runfleet/t1/nope"}},
		{"missing secret", "arn:aws:secretsmanager:us-east-1:123456789012:secret:runfleet/t1/nope-AbCdEf",
			[]string{"RUNFLEET_REDIS_URL_SECRET", "arn:aws:secretsmanager:us-east-1:123456789012:secret:runfleet/t1/nope-AbCdEf"}},
		{"unknown service", "arn:aws:s3:::bucket/redis-url",
			[]string{"RUNFLEET_REDIS_URL_SECRET", "arn:aws:s3:::bucket/redis-url", "SSM parameter ARN"}},
		{"not an ARN", "/runfleet/t1/redis-url", []string{"RUNFLEET_REDIS_URL_SECRET", "not an ARN"}},
		{"the URL itself", "rediss://default:" + password + "@redis.example:6379/0",
			[]string{"RUNFLEET_REDIS_URL_SECRET", "(a URL, not shown)", "RUNFLEET_REDIS_URL"}},
		{"URL that does not parse", "arn:aws:ssm:us-east-1:123456789012:parameter/runfleet/t1/bad-url",
			[]string{"RUNFLEET_REDIS_URL_SECRET arn:aws:ssm:us-east-1:123456789012:parameter/runfleet/t1/bad-url", "not a valid URL"}},
		{"JSON without url", aws.ToString(noURL.ARN), []string{aws.ToString(noURL.ARN), `"url"`}},
		{"binary secret", aws.ToString(binary.ARN), []string{aws.ToString(binary.ARN), "binary"}},
	} {
		t.Setenv("RUNFLEET_REDIS_URL_SECRET", tc.secret)
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, closeFn, err := controlplane.ConfigFromEnv(ctx)
		cancel()
		require.Error(t, err, tc.name)
		require.Nil(t, closeFn, tc.name)
		for _, s := range tc.says {
			require.Contains(t, err.Error(), s, tc.name)
		}
		require.NotContains(t, err.Error(), password, "%s: the value must not show", tc.name)
	}

	// Both ways at once is a mistake, whichever works.
	t.Setenv("RUNFLEET_REDIS_URL", "redis://127.0.0.1:6379/0")
	_, _, err = controlplane.ConfigFromEnv(ctx)
	require.ErrorContains(t, err, "both RUNFLEET_REDIS_URL and RUNFLEET_REDIS_URL_SECRET are set")
}

func TestConfigFromEnvBuildsTheScheduleSync(t *testing.T) {
	r := testenv.NewRedis(t)
	awsEnv(t, aws.Config{BaseEndpoint: aws.String("http://127.0.0.1:1")})
	t.Setenv("RUNFLEET_REDIS_URL", r.URL())

	// Without the variables, no sync.
	cfg, closeFn, err := controlplane.ConfigFromEnv(context.Background())
	require.NoError(t, err)
	closeFn()
	require.Nil(t, cfg.Schedules)

	fn := "arn:aws:lambda:us-east-1:123456789012:function:runfleet-t1-submit"
	for _, tc := range []struct {
		mode, stack, target, role, says string
	}{
		{"cron", "t1", fn, "", `RUNFLEET_SCHEDULE_MODE "cron"`},
		{"rules", "", fn, "", "RUNFLEET_STACK is not set"},
		{"rules", "t1", "", "", "RUNFLEET_SCHEDULE_TARGET_ARN is not set"},
		{"scheduler", "t1", fn, "", "RUNFLEET_SCHEDULE_ROLE_ARN is not set"},
		{"rules", "t1", "runfleet-t1-submit", "", "function ARN"},
		{"rules", "no spaces please", fn, "", "stack"},
	} {
		t.Setenv("RUNFLEET_SCHEDULE_MODE", tc.mode)
		t.Setenv("RUNFLEET_STACK", tc.stack)
		t.Setenv("RUNFLEET_SCHEDULE_TARGET_ARN", tc.target)
		t.Setenv("RUNFLEET_SCHEDULE_ROLE_ARN", tc.role)
		_, closeFn, err := controlplane.ConfigFromEnv(context.Background())
		require.ErrorContains(t, err, tc.says, tc.mode+" "+tc.stack+" "+tc.target)
		require.Nil(t, closeFn)
	}

	t.Setenv("RUNFLEET_SCHEDULE_MODE", "scheduler")
	t.Setenv("RUNFLEET_STACK", "t1")
	t.Setenv("RUNFLEET_SCHEDULE_TARGET_ARN", fn)
	t.Setenv("RUNFLEET_SCHEDULE_ROLE_ARN", "arn:aws:iam::123456789012:role/runfleet-t1-scheduler")
	cfg, closeFn, err = controlplane.ConfigFromEnv(context.Background())
	require.NoError(t, err)
	closeFn()
	require.NotNil(t, cfg.Schedules)
	require.Equal(t, "runfleet-t1", cfg.Schedules.Target().Group)
	t.Setenv("RUNFLEET_SCHEDULE_GROUP", "my-group")
	cfg, closeFn, err = controlplane.ConfigFromEnv(context.Background())
	require.NoError(t, err)
	closeFn()
	require.Equal(t, "my-group", cfg.Schedules.Target().Group)
}
