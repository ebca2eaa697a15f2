package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/infra/schedsync"
	"github.com/runfleet/runfleet/workflows"
)

// Environment variables read by ConfigFromEnv.
const (
	// EnvRedisURL is the Redis address (redis:// or rediss://). Required.
	EnvRedisURL = "RUNFLEET_REDIS_URL"
	// EnvStore is the archive store URL (s3://bucket/prefix or
	// file:///dir, see artifacts.OpenStore). Optional: without it the
	// sweep archives nothing.
	EnvStore = "RUNFLEET_STORE"
	// EnvRetention is how long finished jobs stay in Redis before the sweep
	// archives them: days such as 30d, or a Go duration such as 36h (see
	// ParseRetention). Optional: default DefaultRetention.
	EnvRetention = "RUNFLEET_RETENTION"
	// EnvRedisURLSecret is the ARN of an SSM SecureString parameter or a
	// Secrets Manager secret that holds the Redis URL (or a JSON object
	// {"url": ...}), read once at start: how the functions are deployed,
	// so that Redis's password is not in their configuration. Give it or
	// EnvRedisURL, not both.
	EnvRedisURLSecret = "RUNFLEET_REDIS_URL_SECRET"

	// EnvScheduleMode turns on the sweep's schedule sync (see
	// Config.Schedules): "scheduler" (EventBridge Scheduler, AWS) or
	// "rules" (EventBridge rules, LocalStack). Optional: without it the
	// sweep leaves schedules alone and fires no cron ticks. With it,
	// EnvStack and EnvScheduleTargetARN are required, and
	// EnvScheduleRoleARN in scheduler mode.
	EnvScheduleMode = "RUNFLEET_SCHEDULE_MODE"
	// EnvStack is the stack's name, which names and tags its rules.
	EnvStack = "RUNFLEET_STACK"
	// EnvScheduleGroup is the schedule group (scheduler mode). Default
	// runfleet-<stack>.
	EnvScheduleGroup = "RUNFLEET_SCHEDULE_GROUP"
	// EnvScheduleTargetARN is the submit function's ARN, which the
	// schedules invoke.
	EnvScheduleTargetARN = "RUNFLEET_SCHEDULE_TARGET_ARN"
	// EnvScheduleRoleARN is the role EventBridge Scheduler assumes to
	// invoke the submit function (scheduler mode).
	EnvScheduleRoleARN = "RUNFLEET_SCHEDULE_ROLE_ARN"
)

// ConfigFromEnv builds a Config from the environment, as the Lambda
// functions are configured: RUNFLEET_REDIS_URL or
// RUNFLEET_REDIS_URL_SECRET, RUNFLEET_STORE, RUNFLEET_RETENTION, and the
// schedule sync's RUNFLEET_SCHEDULE_* and RUNFLEET_STACK (see the Env
// constants). AWS calls (the secret, the schedules) take region,
// credentials and endpoint (AWS_ENDPOINT_URL*) from the SDK's usual
// sources. Logs go to stderr as JSON, at AWS_LAMBDA_LOG_LEVEL when Lambda
// sets it (else info). It connects to Redis; the returned func closes that
// connection. Errors name the variable at fault, and never show the Redis
// URL's password or the secret's value.
func ConfigFromEnv(ctx context.Context) (Config, func(), error) {
	var cfg Config
	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lambdaLogLevel()}))

	if v := os.Getenv(EnvRetention); v != "" {
		d, err := ParseRetention(v)
		if err != nil {
			return Config{}, nil, fmt.Errorf("%s: %w", EnvRetention, err)
		}
		cfg.Retention = d
	}

	if v := os.Getenv(EnvStore); v != "" {
		// OpenStore's errors show the URL without credentials.
		st, err := artifacts.OpenStore(v)
		if err != nil {
			return Config{}, nil, fmt.Errorf("%s: %w", EnvStore, err)
		}
		cfg.Store, cfg.StoreURL = st, v
	}

	var awsCfg *aws.Config
	loadAWS := func() (aws.Config, error) {
		if awsCfg == nil {
			c, err := config.LoadDefaultConfig(ctx)
			if err != nil {
				return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
			}
			awsCfg = &c
		}
		return *awsCfg, nil
	}

	if err := scheduleSyncFromEnv(&cfg, loadAWS); err != nil {
		return Config{}, nil, err
	}

	// source names where the URL came from, for errors.
	redisURL, source := os.Getenv(EnvRedisURL), EnvRedisURL
	secretARN := os.Getenv(EnvRedisURLSecret)
	switch {
	case redisURL != "" && secretARN != "":
		return Config{}, nil, fmt.Errorf("both %s and %s are set: give one", EnvRedisURL, EnvRedisURLSecret)
	case secretARN != "":
		awsc, err := loadAWS()
		if err != nil {
			return Config{}, nil, fmt.Errorf("%s: %w", EnvRedisURLSecret, err)
		}
		if redisURL, err = redisURLFromSecret(ctx, awsc, secretARN); err != nil {
			return Config{}, nil, err
		}
		source = EnvRedisURLSecret + " " + secretARN
	case redisURL == "":
		// Checked here rather than left to NewClient's default of a
		// local Redis, which never exists where the functions run.
		return Config{}, nil, fmt.Errorf("%s is not set: want the Redis URL, e.g. rediss://user:password@host:6379/0 (or %s: the ARN of an SSM parameter or a secret holding it)", EnvRedisURL, EnvRedisURLSecret)
	}
	// go-redis quotes the whole URL, password included, when it does not
	// parse; say what is wrong without it.
	if _, err := url.Parse(redisURL); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Config{}, nil, fmt.Errorf("%s: not a valid URL: %v", source, err)
	}
	client, err := workflows.NewClient(ctx, workflows.WithRedisURL(redisURL), workflows.WithLogger(cfg.Logger),
		workflows.WithServiceName("runfleet-function"))
	if err != nil {
		return Config{}, nil, fmt.Errorf("%s: %w", source, err)
	}
	cfg.Client = client
	return cfg, func() { _ = client.Close() }, nil
}

// scheduleSyncFromEnv sets cfg.Schedules when EnvScheduleMode is set.
func scheduleSyncFromEnv(cfg *Config, loadAWS func() (aws.Config, error)) error {
	mode := schedsync.Mode(os.Getenv(EnvScheduleMode))
	if mode == "" {
		return nil
	}
	if mode != schedsync.Scheduler && mode != schedsync.Rules {
		return fmt.Errorf("%s %q: want %q (EventBridge Scheduler, AWS) or %q (EventBridge rules, LocalStack)", EnvScheduleMode, mode, schedsync.Scheduler, schedsync.Rules)
	}
	t := schedsync.Target{
		Mode: mode, Stack: os.Getenv(EnvStack), Group: os.Getenv(EnvScheduleGroup),
		FunctionARN: os.Getenv(EnvScheduleTargetARN), RoleARN: os.Getenv(EnvScheduleRoleARN),
	}
	required := []struct{ name, value string }{{EnvStack, t.Stack}, {EnvScheduleTargetARN, t.FunctionARN}}
	if mode == schedsync.Scheduler {
		required = append(required, struct{ name, value string }{EnvScheduleRoleARN, t.RoleARN})
	}
	for _, r := range required {
		if r.value == "" {
			return fmt.Errorf("%s is not set: %s=%s needs it", r.name, EnvScheduleMode, mode)
		}
	}
	awsc, err := loadAWS()
	if err != nil {
		return fmt.Errorf("%s: %w", EnvScheduleMode, err)
	}
	if awsc.Region == "" {
		// Outside Lambda AWS_REGION may be unset; the schedules live
		// where the function they invoke does.
		if a, err := arn.Parse(t.FunctionARN); err == nil {
			awsc.Region = a.Region
		}
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("schedule sync (%s=%s): %w; it is set by %s, %s and %s", EnvScheduleMode, mode, err, EnvStack, EnvScheduleTargetARN, EnvScheduleRoleARN)
	}
	cfg.Schedules = schedsync.New(awsc, t)
	return nil
}

// ParseRetention reads a retention as runfleet's flags and variables give
// it: a number of days ("7d", "1.5d"), since retention is counted in days
// and Go durations have no day unit, or a Go duration ("36h", "90m"). It
// must be more than zero.
func ParseRetention(s string) (time.Duration, error) {
	bad := fmt.Errorf("retention %q: want a number of days such as 7d or a Go duration such as 36h", s)
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n > 100*365 {
			return 0, bad
		}
		d = time.Duration(n * float64(24*time.Hour))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, bad
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("retention %q: must be more than zero", s)
	}
	return d, nil
}

// lambdaLogLevel is the level Lambda's advanced logging controls ask for
// (AWS_LAMBDA_LOG_LEVEL: TRACE, DEBUG, INFO, WARN, ERROR, FATAL).
func lambdaLogLevel() slog.Level {
	switch strings.ToUpper(os.Getenv("AWS_LAMBDA_LOG_LEVEL")) {
	case "TRACE", "DEBUG":
		return slog.LevelDebug
	case "WARN":
		return slog.LevelWarn
	case "ERROR", "FATAL":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
