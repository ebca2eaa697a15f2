package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/infra/schedsync"
	"github.com/runfleet/runfleet/workflows"
)

// Config configures a Server. Client is required; everything else has a
// default.
type Config struct {
	// Client reaches Redis. Required.
	Client *workflows.Client
	// Store receives archived jobs (under "jobs/"). Default: none, and the
	// sweep archives nothing.
	Store artifacts.Store
	// StoreURL names Store in archive records so readers can find the
	// archive again. Required when Store is set.
	StoreURL string
	// Retention is how long a finished job stays in Redis before the sweep
	// archives it. Default 7 days.
	Retention time.Duration
	// Logger receives one record per notable event. Default slog.Default().
	Logger *slog.Logger
	// Metrics receives the sweep's CloudWatch embedded-metric-format lines,
	// one per cluster. Default: none.
	Metrics interface{ Write([]byte) (int, error) }
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Schedules keeps the EventBridge schedules of cron automations in
	// sync on each sweep, which then also fires due cron ticks itself (see
	// schedules.go). Default: none, and the sweep does neither.
	Schedules *schedsync.Syncer
	// HTTPClient delivers job notifications. Default: a go-retryablehttp
	// client with short retries (each sweep or delivery pass retries a few
	// times; later passes go on for up to an hour).
	HTTPClient *http.Client
}

// Server holds the handlers of the control plane.
type Server struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil {
		return nil, errors.New("controlplane: Config.Client is required")
	}
	if cfg.Store != nil && cfg.StoreURL == "" {
		return nil, errors.New("controlplane: Config.StoreURL is required with Config.Store")
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		// One client for every delivery, so connections to receivers are
		// reused across passes.
		cfg.HTTPClient = notifyClient()
	}
	return &Server{cfg: cfg, log: cfg.Logger}, nil
}

// DefaultRetention is how long finished jobs stay in Redis before the sweep
// archives them.
const DefaultRetention = 7 * 24 * time.Hour

// SubmitJobRequest is the body of POST /v1/jobs.
type SubmitJobRequest struct {
	Cluster    string          `json:"cluster"`
	Name       string          `json:"name"`
	Task       string          `json:"task"`
	Version    string          `json:"version"`
	Input      json.RawMessage `json:"input,omitempty"`
	MaxRetries int             `json:"max_retries,omitempty"`
	// Notify is a URL that receives the job's final state (see Notifications).
	Notify string `json:"notify,omitempty"`
}

// JobPage is one page of GET /v1/jobs.
type JobPage struct {
	Jobs       []workflows.Job `json:"jobs"`
	NextCursor string          `json:"next_cursor"`
}

// ClusterList is the body of GET /v1/clusters.
type ClusterList struct {
	Clusters []workflows.Cluster `json:"clusters"`
}

// EventReport says what one event did: the jobs it submitted (or found
// already submitted for the same object version or tick) and the records
// it ignored, with the reason.
type EventReport struct {
	Submitted []EventJob `json:"submitted"`
	Ignored   []string   `json:"ignored,omitempty"`
}

// EventJob is one job an event led to.
type EventJob struct {
	Automation string `json:"automation"`
	JobID      string `json:"job_id"`
	// Created is false when an earlier delivery of the same event already
	// created the job.
	Created bool `json:"created"`
}

// ScheduleEvent is what an EventBridge schedule or rule passes to the submit
// function as its target input, and what the gateway's scheduler fires.
type ScheduleEvent struct {
	Automation    string    `json:"automation"`
	ScheduledTime time.Time `json:"scheduled_time"`
}

// Handler returns the HTTP API v1.
func (s *Server) Handler() http.Handler { return s.routes() }

// HandleS3Event submits one job per created object that a storage
// automation watches. Records no automation watches are ignored and logged.
func (s *Server) HandleS3Event(ctx context.Context, ev events.S3Event) (EventReport, error) {
	return s.handleS3EventAs(ctx, ev, nil)
}
