package infra

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/runfleet/runfleet/controlplane"
)

// Targets a stack deploys to.
const (
	TargetAWS        = "aws"
	TargetLocalStack = "localstack"
	TargetMinIO      = "minio"
)

// Schedule modes: how the sweep (and cron automations) are triggered.
const (
	// ScheduleScheduler uses EventBridge Scheduler (AWS).
	ScheduleScheduler = "scheduler"
	// ScheduleRules uses EventBridge rules with a schedule expression
	// (LocalStack, whose Scheduler does not fire targets).
	ScheduleRules = "rules"
)

// TagKey is the tag every taggable resource of a stack carries, with the
// stack's name as value.
const TagKey = "runfleet:stack"

// LocalStackEndpoint is where LocalStack listens by default.
const LocalStackEndpoint = "http://localhost:4566"

// Stack is the desired state of one deployment. It is read from a TOML file
// (see infra/stack.example.toml, which documents every key) and flags.
type Stack struct {
	// Name names every resource: runfleet-<name>-<thing>. Required.
	Name string `toml:"stack"`
	// Target is aws, localstack or minio. Required.
	Target string `toml:"target"`
	// Region of every resource. Default: the AWS config chain ($AWS_REGION,
	// the profile), else us-east-1 for localstack and minio.
	Region string `toml:"region"`
	// EndpointURL replaces every service's endpoint. Default:
	// $AWS_ENDPOINT_URL / $AWS_ENDPOINT_URL_<SERVICE>; for localstack
	// http://localhost:4566.
	EndpointURL string `toml:"endpoint_url"`

	Bucket    BucketSpec    `toml:"bucket"`
	Functions FunctionsSpec `toml:"functions"`
	Schedule  ScheduleSpec  `toml:"schedule"`
	MinIO     MinIOSpec     `toml:"minio"`
}

// BucketSpec is the stack's bucket.
type BucketSpec struct {
	// Name of the bucket. Default: runfleet-<stack>-<account id> on aws,
	// runfleet-<stack> elsewhere.
	Name string `toml:"name"`
	// ArchivePrefix is where the sweep archives finished jobs. Default
	// "archive/".
	ArchivePrefix string `toml:"archive_prefix"`
	// ArchiveExpireDays deletes archived jobs this many days after they were
	// written; 0 keeps them. Default 0.
	ArchiveExpireDays int32 `toml:"archive_expire_days"`
	// NoncurrentExpireDays deletes overwritten or deleted versions under the
	// archive prefix this many days after they stopped being current.
	// Default 30.
	NoncurrentExpireDays int32 `toml:"noncurrent_expire_days"`
	// ReleasesPrefix is where release artifacts live; runners get read-only
	// access to it. Default "releases/".
	ReleasesPrefix string `toml:"releases_prefix"`
}

// FunctionsSpec is the submit and sweep Lambda functions.
type FunctionsSpec struct {
	// ZipDir holds submit-<arch>.zip and sweep-<arch>.zip, as `go tool task
	// functions` builds them. Default "dist/functions".
	ZipDir string `toml:"zip_dir"`
	// Architecture is arm64 or x86_64. Default arm64.
	Architecture string `toml:"architecture"`
	// MemoryMB of each function. Default 256.
	MemoryMB int32 `toml:"memory"`
	// TimeoutSeconds of each function. Default 60.
	TimeoutSeconds int32 `toml:"timeout"`
	// Retention is RUNFLEET_RETENTION: how long finished jobs stay in Redis
	// before the sweep archives them. Default "30d".
	Retention string `toml:"retention"`
	// LogRetentionDays of the functions' log groups. Default 30.
	LogRetentionDays int32 `toml:"log_retention_days"`
	// RedisURLSecret is the ARN of an SSM SecureString parameter or a Secrets
	// Manager secret holding the Redis URL; the functions get the ARN, never
	// the URL. Required on aws and localstack unless RedisURLParameter is set.
	RedisURLSecret string `toml:"redis_url_secret"`
	// RedisURLParameter, when set, is an SSM parameter name the stack owns:
	// deploy writes $RUNFLEET_REDIS_URL into it as a SecureString and points
	// the functions at it. Default: unset.
	RedisURLParameter string `toml:"redis_url_parameter"`
}

// ScheduleSpec is how the sweep and cron automations are triggered.
type ScheduleSpec struct {
	// Mode is scheduler or rules. Default: scheduler on aws, rules on
	// localstack.
	Mode string `toml:"mode"`
	// Sweep is the sweep's schedule expression. Default "rate(1 minute)".
	Sweep string `toml:"sweep"`
}

// MinIOSpec is the MinIO side of storage automations.
type MinIOSpec struct {
	// WebhookID is the <ID> of MinIO's MINIO_NOTIFY_WEBHOOK_*_<ID> settings
	// whose endpoint is the gateway's /v1/events/s3. Default "RUNFLEET".
	WebhookID string `toml:"webhook_id"`
	// Region is MinIO's MINIO_REGION, which appears in the webhook's ARN.
	// Default: empty, as MinIO has it when MINIO_REGION is unset.
	Region string `toml:"region"`
}

// LoadStack reads a stack file. Unknown keys are errors, so a typo does not
// silently fall back to a default.
func LoadStack(path string) (Stack, error) {
	var s Stack
	md, err := toml.DecodeFile(path, &s)
	if err != nil {
		return Stack{}, fmt.Errorf("read stack file %s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return Stack{}, fmt.Errorf("read stack file %s: unknown key %s (see infra/stack.example.toml)", path, strings.Join(keys, ", "))
	}
	return s, nil
}

var stackNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,24}[a-z0-9]$`)

// withDefaults fills unset fields and checks the stack. It does not know the
// account id; Bucket.Name may stay empty on aws until then.
func (s Stack) withDefaults() (Stack, error) {
	if s.Name == "" {
		return s, errors.New("stack name is missing: give --stack NAME or stack = \"NAME\" in the stack file")
	}
	if !stackNameRE.MatchString(s.Name) || strings.Contains(s.Name, "--") {
		return s, fmt.Errorf("stack name %q: want 2 to 26 lowercase letters, digits and single hyphens, starting with a letter (it names buckets, functions and roles)", s.Name)
	}
	switch s.Target {
	case TargetAWS, TargetLocalStack, TargetMinIO:
	case "":
		return s, errors.New("target is missing: give --target aws, localstack or minio")
	default:
		return s, fmt.Errorf("unknown target %q: want aws, localstack or minio", s.Target)
	}
	b := &s.Bucket
	if b.Name == "" && s.Target != TargetAWS {
		b.Name = "runfleet-" + s.Name
	}
	b.ArchivePrefix = prefixOr(b.ArchivePrefix, "archive/")
	b.ReleasesPrefix = prefixOr(b.ReleasesPrefix, "releases/")
	// A release store keeps its catalog under <store prefix>/releases/, so
	// runners can only find releases under a prefix ending that way.
	if b.ReleasesPrefix != "releases/" && !strings.HasSuffix(b.ReleasesPrefix, "/releases/") {
		return s, fmt.Errorf("bucket: releases_prefix %q: must be \"releases/\" or end in \"/releases/\" (a release store keeps releases under <store>/releases/)", b.ReleasesPrefix)
	}
	if b.NoncurrentExpireDays == 0 {
		b.NoncurrentExpireDays = 30
	}
	if b.ArchiveExpireDays < 0 || b.NoncurrentExpireDays < 0 {
		return s, errors.New("bucket: archive_expire_days and noncurrent_expire_days must not be negative")
	}
	f := &s.Functions
	if f.ZipDir == "" {
		f.ZipDir = "dist/functions"
	}
	switch f.Architecture {
	case "":
		f.Architecture = "arm64"
	case "arm64", "x86_64":
	case "amd64":
		f.Architecture = "x86_64"
	default:
		return s, fmt.Errorf("functions: architecture %q: want arm64 or x86_64", f.Architecture)
	}
	if f.MemoryMB == 0 {
		f.MemoryMB = 256
	}
	if f.MemoryMB < 128 || f.MemoryMB > 10240 {
		return s, fmt.Errorf("functions: memory %d: want 128 to 10240 (MB)", f.MemoryMB)
	}
	if f.TimeoutSeconds == 0 {
		f.TimeoutSeconds = 60
	}
	if f.TimeoutSeconds < 1 || f.TimeoutSeconds > 900 {
		return s, fmt.Errorf("functions: timeout %d: want 1 to 900 (seconds)", f.TimeoutSeconds)
	}
	if f.Retention == "" {
		f.Retention = "30d"
	}
	if _, err := controlplane.ParseRetention(f.Retention); err != nil {
		return s, fmt.Errorf("functions: %w", err)
	}
	if f.LogRetentionDays == 0 {
		f.LogRetentionDays = 30
	}
	if !validLogRetention(f.LogRetentionDays) {
		return s, fmt.Errorf("functions: log_retention_days %d: CloudWatch Logs accepts 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653", f.LogRetentionDays)
	}
	sc := &s.Schedule
	switch sc.Mode {
	case "":
		sc.Mode = ScheduleScheduler
		if s.Target == TargetLocalStack {
			sc.Mode = ScheduleRules
		}
	case ScheduleScheduler, ScheduleRules:
	default:
		return s, fmt.Errorf("schedule: mode %q: want scheduler or rules", sc.Mode)
	}
	if sc.Sweep == "" {
		sc.Sweep = "rate(1 minute)"
	}
	if s.MinIO.WebhookID == "" {
		s.MinIO.WebhookID = "RUNFLEET"
	}
	return s, nil
}

// zipPath is the function's zip for the stack's architecture.
func (s Stack) zipPath(function string) string {
	arch := "arm64"
	if s.Functions.Architecture == "x86_64" {
		arch = "amd64"
	}
	return filepath.Join(s.Functions.ZipDir, function+"-"+arch+".zip")
}

func prefixOr(p, def string) string {
	if p == "" {
		return def
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return strings.TrimPrefix(p, "/")
}

func validLogRetention(days int32) bool {
	for _, d := range []int32{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653} {
		if d == days {
			return true
		}
	}
	return false
}

// redactSecretish hides what may be a URL with a password, which a user
// may paste where an ARN belongs.
func redactSecretish(s string) string {
	if strings.Contains(s, "://") {
		return "a URL (hidden)"
	}
	return s
}

// checkSecret checks the Redis URL secret, which plan and deploy need on
// aws and localstack (destroy and outputs do not).
func (s Stack) checkSecret() error {
	f := s.Functions
	if s.Target != TargetMinIO {
		switch {
		case f.RedisURLSecret != "" && f.RedisURLParameter != "":
			return errors.New("functions: set redis_url_secret or redis_url_parameter, not both")
		case f.RedisURLParameter != "":
			if !strings.HasPrefix(f.RedisURLParameter, "/") {
				return fmt.Errorf("functions: redis_url_parameter %q: want a parameter path such as /runfleet/%s/redis-url", f.RedisURLParameter, s.Name)
			}
		case f.RedisURLSecret == "":
			return fmt.Errorf("functions: redis_url_secret is missing: give the ARN of an SSM SecureString parameter or a Secrets Manager secret holding the Redis URL (or set redis_url_parameter = \"/runfleet/%s/redis-url\" to let the stack own it)", s.Name)
		case !strings.HasPrefix(f.RedisURLSecret, "arn:") || !(strings.Contains(f.RedisURLSecret, ":ssm:") || strings.Contains(f.RedisURLSecret, ":secretsmanager:")):
			return fmt.Errorf("functions: redis_url_secret %q: want an arn:aws:ssm:…:parameter/… or arn:aws:secretsmanager:…:secret:… ARN, never the URL itself", redactSecretish(f.RedisURLSecret))
		}
	}
	return nil
}

// Validate checks everything plan and deploy need from the stack itself,
// before any call to a service: the name, the target, the settings and
// the Redis URL secret.
func (s Stack) Validate() error {
	full, err := s.withDefaults()
	if err != nil {
		return err
	}
	return full.checkSecret()
}
