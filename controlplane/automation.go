package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/runfleet/runfleet/workflows"
)

// Automation submits jobs on events: a cron schedule or objects created in a
// bucket.
type Automation struct {
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	Cluster string          `json:"cluster"`
	Task    string          `json:"task"`
	Version string          `json:"version"`
	Input   json.RawMessage `json:"input,omitempty"` // prototype input, a JSON object
	// MaxRetries of the submitted jobs' root task.
	MaxRetries int `json:"max_retries,omitempty"`
	// Notify receives the final state of each job (see Notifications).
	Notify string `json:"notify,omitempty"`

	// Cron is a cron expression (5 fields, or 6 with seconds first, or a
	// descriptor such as @hourly or @every 10s) evaluated in Timezone
	// (default UTC).
	Cron     string `json:"cron,omitempty"`
	Timezone string `json:"timezone,omitempty"`

	// Storage is s3://bucket/prefix; Glob filters the key part after the
	// prefix (path.Match syntax, default every key).
	Storage string `json:"storage,omitempty"`
	Glob    string `json:"glob,omitempty"`

	Paused    bool      `json:"paused"`
	CreatedAt time.Time `json:"created_at"`
}

// CreateAutomation validates a (cron expression, timezone, storage URL, glob,
// cluster, task identifier, input) and stores it with a new id. Exactly one
// of Cron and Storage must be set.
func CreateAutomation(ctx context.Context, c *workflows.Client, a Automation) (Automation, error) {
	return Automation{}, errors.New("not yet")
}

// ListAutomations returns every automation, by name.
func ListAutomations(ctx context.Context, c *workflows.Client) ([]Automation, error) {
	return nil, errors.New("not yet")
}

// GetAutomation returns the automation with this id or name.
func GetAutomation(ctx context.Context, c *workflows.Client, idOrName string) (Automation, error) {
	return Automation{}, errors.New("not yet")
}

// PauseAutomation pauses (paused=true) or resumes an automation.
func PauseAutomation(ctx context.Context, c *workflows.Client, idOrName string, paused bool) (Automation, error) {
	return Automation{}, errors.New("not yet")
}

// DeleteAutomation deletes an automation.
func DeleteAutomation(ctx context.Context, c *workflows.Client, idOrName string) (Automation, error) {
	return Automation{}, errors.New("not yet")
}
