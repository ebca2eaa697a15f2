package workflows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"os"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/runfleet/runfleet/internal/telemetry"
	"github.com/runfleet/runfleet/queue"
)

// DefaultRedisURL is used when neither WithRedisURL nor RUNFLEET_REDIS_URL is set.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// DefaultMaxInputBytes is the largest task input accepted unless
// WithMaxInputBytes lowers it: the hard limit, 256 MiB. Inputs above the
// inline limit (DefaultInlineInputBytes) need a payload store.
const DefaultMaxInputBytes = MaxInputBytes

// ErrInvalidRedisURL is returned by NewClient for a URL it cannot parse:
// retrying will not help, unlike a server that cannot be reached yet.
var ErrInvalidRedisURL = errors.New("invalid redis url")

// Client talks to a runfleet deployment: clusters, jobs and runners.
type Client struct {
	rdb       redis.UniversalClient
	ownsRedis bool
	q         *queue.Queue
	logger    *slog.Logger
	// inputs bounds task inputs and keeps large ones (payload.go).
	inputs inputPolicy

	// The job cache (jobcache.go) and the URL it was opened from.
	cache    cacheBackend
	cacheURL string

	// OpenTelemetry (tracing.go): tracer is nil when the client does not
	// trace; tel is the providers it made from the environment, if any.
	// instanceID is service.instance.id, and the id of the client's first
	// runner.
	tracer     trace.Tracer
	tel        *telemetry.Telemetry
	instanceID string
	idTaken    atomic.Bool
}

// ClientOption configures NewClient.
type ClientOption func(*clientConfig)

type clientConfig struct {
	redisURL    string
	rdb         redis.UniversalClient
	logger      *slog.Logger
	maxInput    int
	inlineInput int
	cacheURL    string
	payloadURL  string

	tracerProvider trace.TracerProvider
	serviceName    string
}

// WithRedisURL sets the Redis address (redis:// or rediss://). Default:
// $RUNFLEET_REDIS_URL, else redis://127.0.0.1:6379/0.
func WithRedisURL(url string) ClientOption { return func(c *clientConfig) { c.redisURL = url } }

// WithRedisClient uses an existing go-redis client (a *redis.Client or a
// *redis.ClusterClient); Close leaves it open.
func WithRedisClient(rdb redis.UniversalClient) ClientOption {
	return func(c *clientConfig) { c.rdb = rdb }
}

// WithLogger sets the logger for client and runners. Default: slog.Default().
func WithLogger(l *slog.Logger) ClientOption { return func(c *clientConfig) { c.logger = l } }

// WithMaxInputBytes lowers the largest task input accepted at submit.
// Default and most: MaxInputBytes (256 MiB); 0, a negative value or more
// than that is the hard limit.
func WithMaxInputBytes(n int) ClientOption { return func(c *clientConfig) { c.maxInput = n } }

// WithInlineInputBytes sets the largest task input kept in Redis with its
// task, at most MaxInlineInputBytes; larger inputs go to the payload store.
// Default: DefaultInlineInputBytes (64 KiB).
func WithInlineInputBytes(n int) ClientOption { return func(c *clientConfig) { c.inlineInput = n } }

// WithPayloadStore sets the object store (a URL as artifacts.OpenStore takes
// it: s3://bucket/prefix?endpoint=..., file:///dir) that keeps task inputs
// above the inline limit; runners fetch them from it, so submitters and
// runners must name the same store. Default: $RUNFLEET_PAYLOADS, else the
// job cache's store when that is an object store (WithJobCache), else none:
// larger inputs are then refused.
func WithPayloadStore(url string) ClientOption { return func(c *clientConfig) { c.payloadURL = url } }

// WithJobCache sets where job caches live (JobCache, JobClient.Cache):
// "redis" for the client's Redis (values up to 1 MiB), or an object store
// URL as artifacts.OpenStore takes it (s3://bucket/prefix?endpoint=...,
// file:///dir) for values of any size. Runners pass it on to release
// workers. Default: $RUNFLEET_CACHE, else "redis".
func WithJobCache(url string) ClientOption { return func(c *clientConfig) { c.cacheURL = url } }

// NewClient connects to Redis and loads runfleet's functions into it.
func NewClient(ctx context.Context, opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{redisURL: os.Getenv("RUNFLEET_REDIS_URL"), logger: slog.Default(), maxInput: DefaultMaxInputBytes,
		inlineInput: DefaultInlineInputBytes, cacheURL: os.Getenv("RUNFLEET_CACHE"), payloadURL: os.Getenv("RUNFLEET_PAYLOADS")}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxInput <= 0 || cfg.maxInput > MaxInputBytes {
		cfg.maxInput = MaxInputBytes // the hard limit; 0 meant "no limit" before it
	}
	if cfg.inlineInput <= 0 || cfg.inlineInput > MaxInlineInputBytes {
		return nil, fmt.Errorf("new client: inline input bytes %d is out of range: 1 to %d (1 MiB)", cfg.inlineInput, MaxInlineInputBytes)
	}
	c := &Client{rdb: cfg.rdb, logger: cfg.logger, instanceID: newRunnerID(),
		inputs: inputPolicy{max: cfg.maxInput, inline: min(cfg.inlineInput, cfg.maxInput)}}
	if c.rdb == nil {
		url := cfg.redisURL
		if url == "" {
			url = DefaultRedisURL
		}
		ro, err := redis.ParseURL(url)
		if err != nil {
			// The URL may hold a password: name only its scheme and host.
			return nil, fmt.Errorf("%w %s: %s", ErrInvalidRedisURL, redactURL(url), parseErrWithoutSecrets(url, err))
		}
		c.rdb = redis.NewClient(ro)
		c.ownsRedis = true
	}
	q, err := queue.New(ctx, c.rdb)
	if err != nil {
		if c.ownsRedis {
			_ = c.rdb.Close()
		}
		return nil, fmt.Errorf("connect to redis: %w", err)
	}
	c.q = q
	if c.cache, c.cacheURL, err = c.openCacheBackend(cfg.cacheURL); err != nil {
		if c.ownsRedis {
			_ = c.rdb.Close()
		}
		return nil, err
	}
	if c.inputs.store, err = c.openPayloadStore(cfg.payloadURL); err != nil {
		if c.ownsRedis {
			_ = c.rdb.Close()
		}
		return nil, err
	}
	if err := c.setUpTelemetry(ctx, cfg); err != nil {
		if c.ownsRedis {
			_ = c.rdb.Close()
		}
		return nil, err
	}
	return c, nil
}

// parseErrWithoutSecrets is the message of a URL parse error without the
// URL itself (net/url quotes it whole, password included).
func parseErrWithoutSecrets(raw string, err error) string {
	var ue *neturl.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if u, perr := neturl.Parse(raw); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	} else if strings.Contains(msg, raw) {
		msg = strings.ReplaceAll(msg, raw, "the URL")
	}
	return msg
}

func redactURL(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// Close releases the Redis connection the client opened and flushes the
// OpenTelemetry providers it set up from the environment.
func (c *Client) Close() error {
	err := c.shutdownTelemetry()
	if c.ownsRedis {
		return errors.Join(c.rdb.Close(), err)
	}
	return err
}

// Clusters manages clusters.
func (c *Client) Clusters() *ClusterClient { return &ClusterClient{c: c} }

// JobCacheURL is where the client's job caches live: "redis" or an object
// store URL (WithJobCache).
func (c *Client) JobCacheURL() string { return c.cacheURL }

// Jobs submits and manages jobs.
func (c *Client) Jobs() *JobClient { return &JobClient{c: c} }

// SweepReport counts what a sweep did.
type SweepReport = queue.ReclaimReport

// Sweep runs the periodic backstop once: it queues again the tasks of
// runners whose heartbeat expired (in every cluster) and republishes work
// that crashed processes left unpublished. Live runners do the first part
// for their own cluster all the time; Sweep is for operators and the sweep
// function.
func (c *Client) Sweep(ctx context.Context) (SweepReport, error) { return c.q.Sweep(ctx) }

// Queue is the Redis data model under the client, for runfleet's own control
// plane (tokens, automations, idempotency records, notifications); SDK users
// do not need it.
func (c *Client) Queue() *queue.Queue { return c.q }
