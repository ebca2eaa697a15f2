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

	"github.com/runfleet/runfleet/artifacts"
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
)

// ConfigFromEnv builds a Config from the environment, as the Lambda
// functions are configured: RUNFLEET_REDIS_URL, RUNFLEET_STORE and
// RUNFLEET_RETENTION (see EnvRedisURL, EnvStore, EnvRetention). Logs go to
// stderr as JSON, at AWS_LAMBDA_LOG_LEVEL when Lambda sets it (else info).
// It connects to Redis; the returned func closes that connection. Errors
// name the variable at fault.
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

	// Checked here rather than left to NewClient's default of a local
	// Redis, which never exists where the functions run.
	redisURL := os.Getenv(EnvRedisURL)
	if redisURL == "" {
		return Config{}, nil, fmt.Errorf("%s is not set: want the Redis URL, e.g. rediss://user:password@host:6379/0", EnvRedisURL)
	}
	// go-redis quotes the whole URL, password included, when it does not
	// parse; say what is wrong without it.
	if _, err := url.Parse(redisURL); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Config{}, nil, fmt.Errorf("%s: not a valid URL: %v", EnvRedisURL, err)
	}
	client, err := workflows.NewClient(ctx, workflows.WithRedisURL(redisURL), workflows.WithLogger(cfg.Logger))
	if err != nil {
		return Config{}, nil, fmt.Errorf("%s: %w", EnvRedisURL, err)
	}
	cfg.Client = client
	return cfg, func() { _ = client.Close() }, nil
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
