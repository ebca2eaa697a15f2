package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // timezones of cron automations, also on hosts without zoneinfo (Lambda)

	"github.com/google/uuid"
	"github.com/robfig/cron/v3"

	"github.com/runfleet/runfleet/rftype"
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

	// Storage is s3://bucket/prefix; Glob filters the keys under the prefix
	// (path.Match syntax; a glob without "/" is matched against the last
	// path element, so "*.tif" matches at any depth; default: every key).
	Storage string `json:"storage,omitempty"`
	Glob    string `json:"glob,omitempty"`

	Paused    bool      `json:"paused"`
	CreatedAt time.Time `json:"created_at"`
}

// EventTTL is how long the idempotency record of an automation's event (an
// object version, a cron tick) is kept: S3 and MinIO redeliver within hours.
const EventTTL = 7 * 24 * time.Hour

// ErrAutomationNotFound is returned for an unknown automation id or name.
var ErrAutomationNotFound = errors.New("automation not found")

// cronParser accepts 5 fields, or 6 with seconds first, and descriptors.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

var cronFieldNames = []string{"minute", "hour", "day of month", "month", "day of week"}

// parseCron parses expr in timezone tz, naming the field that is wrong.
func parseCron(expr, tz string) (cron.Schedule, error) {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("cron %q: give the timezone with --timezone, not in the expression", expr)
	}
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return nil, fmt.Errorf("timezone %q: not a known IANA timezone (such as Europe/Berlin)", tz)
		}
		loc = l
	}
	sched, err := cronParser.Parse(expr)
	if err == nil {
		if spec, ok := sched.(*cron.SpecSchedule); ok {
			spec.Location = loc
		}
		return sched, nil
	}
	if strings.HasPrefix(expr, "@") {
		return nil, fmt.Errorf("cron %q: %v (descriptors: @yearly, @monthly, @weekly, @daily, @hourly, @every <duration>)", expr, err)
	}
	fields := strings.Fields(expr)
	names := cronFieldNames
	if len(fields) == 6 {
		names = append([]string{"second"}, cronFieldNames...)
	} else if len(fields) != 5 {
		return nil, fmt.Errorf("cron %q: expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, got %d", expr, len(fields))
	}
	// Find the field at fault by parsing each with the others as "*".
	for i := range fields {
		probe := make([]string, len(fields))
		for k := range probe {
			probe[k] = "*"
		}
		probe[i] = fields[i]
		if _, perr := cronParser.Parse(strings.Join(probe, " ")); perr != nil {
			return nil, fmt.Errorf("cron %q: %s field %q: %v", expr, names[i], fields[i], perr)
		}
	}
	return nil, fmt.Errorf("cron %q: %v", expr, err)
}

// parseStorage splits s3://bucket/prefix.
func parseStorage(raw string) (bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" {
		return "", "", fmt.Errorf("storage %q: want s3://bucket/prefix", raw)
	}
	return u.Host, strings.TrimPrefix(u.Path, "/"), nil
}

// validate checks everything but the cluster's existence and tasks.
func (a *Automation) validate() error {
	if strings.TrimSpace(a.Name) == "" {
		return errors.New("name is empty")
	}
	if err := rftype.ValidateSlug("cluster", a.Cluster); err != nil {
		return err
	}
	if _, err := rftype.ParseIdentifier(a.Task, a.Version); err != nil {
		return err
	}
	in := bytes.TrimSpace(a.Input)
	if len(in) == 0 {
		in = []byte("{}")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(in, &obj); err != nil || obj == nil {
		return fmt.Errorf("input must be a JSON object: %s", in)
	}
	a.Input = json.RawMessage(in)
	if a.MaxRetries < 0 {
		return fmt.Errorf("max retries %d is negative", a.MaxRetries)
	}
	if err := workflows.CheckNotifyURL(a.Notify); err != nil {
		return err
	}
	switch {
	case a.Cron != "" && a.Storage != "":
		return errors.New("give either a cron schedule or a storage location, not both")
	case a.Cron == "" && a.Storage == "":
		return errors.New("give a cron schedule or a storage location")
	case a.Cron != "":
		if a.Glob != "" {
			return errors.New("glob applies to storage automations only")
		}
		if _, err := parseCron(a.Cron, a.Timezone); err != nil {
			return err
		}
	default:
		if a.Timezone != "" {
			return errors.New("timezone applies to cron automations only")
		}
		if _, _, err := parseStorage(a.Storage); err != nil {
			return err
		}
		if a.Glob != "" {
			if _, err := path.Match(a.Glob, ""); err != nil {
				return fmt.Errorf("glob %q: %v", a.Glob, err)
			}
		}
	}
	return nil
}

// matches reports whether a storage automation wants the object key in
// bucket.
func (a *Automation) matches(bucket, key string) bool {
	b, prefix, err := parseStorage(a.Storage)
	if err != nil || b != bucket || !strings.HasPrefix(key, prefix) {
		return false
	}
	if a.Glob == "" {
		return true
	}
	subject := strings.TrimPrefix(key, prefix)
	if !strings.Contains(a.Glob, "/") {
		subject = path.Base(key)
	}
	ok, _ := path.Match(a.Glob, subject)
	return ok
}

// CreateAutomation validates a (cron expression, timezone, storage URL, glob,
// cluster, task identifier, input) and stores it with a new id. Exactly one
// of Cron and Storage must be set. The cluster must exist and serve the task
// (a runner registered it, a deployment exposes it, or the cluster declared
// it), so that the automation does not submit jobs nobody can run.
func CreateAutomation(ctx context.Context, c *workflows.Client, a Automation) (Automation, error) {
	if err := a.validate(); err != nil {
		return Automation{}, fmt.Errorf("create automation %q: %w", a.Name, err)
	}
	served, err := c.Clusters().Tasks(ctx, a.Cluster) // ErrClusterNotFound for an unknown cluster
	if err != nil {
		return Automation{}, fmt.Errorf("create automation %q: %w", a.Name, err)
	}
	want, _ := rftype.ParseIdentifier(a.Task, a.Version)
	if !slices.ContainsFunc(served, func(t workflows.TaskIdentifier) bool {
		id, err := t.Parse()
		return err == nil && id.CanRun(want)
	}) {
		return Automation{}, fmt.Errorf("create automation %q: %w: cluster %q does not serve %s@%s; declare it with `runfleet cluster declare %s --task %s --version %s`",
			a.Name, workflows.ErrUnknownTask, a.Cluster, a.Task, a.Version, a.Cluster, a.Task, a.Version)
	}
	a.ID = "au_" + strings.ReplaceAll(uuid.Must(uuid.NewV7()).String(), "-", "")[:20]
	a.CreatedAt = time.Now().UTC().Truncate(time.Second)
	a.Paused = false
	b, _ := json.Marshal(a)
	if err := c.Queue().PutAutomation(ctx, a.ID, a.Name, b); err != nil {
		return Automation{}, fmt.Errorf("create automation: %w", err)
	}
	return a, nil
}

// ListAutomations returns every automation, by name.
func ListAutomations(ctx context.Context, c *workflows.Client) ([]Automation, error) {
	recs, err := c.Queue().Automations(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Automation, 0, len(recs))
	for _, b := range recs {
		var a Automation
		if err := json.Unmarshal(b, &a); err != nil {
			return nil, fmt.Errorf("decode automation: %w", err)
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Automation) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// GetAutomation returns the automation with this id or name.
func GetAutomation(ctx context.Context, c *workflows.Client, idOrName string) (Automation, error) {
	b, err := c.Queue().Automation(ctx, idOrName)
	if err != nil {
		return Automation{}, err
	}
	if b == nil {
		return Automation{}, fmt.Errorf("%w: %q (see runfleet automation list)", ErrAutomationNotFound, idOrName)
	}
	var a Automation
	if err := json.Unmarshal(b, &a); err != nil {
		return Automation{}, fmt.Errorf("decode automation: %w", err)
	}
	return a, nil
}

// PauseAutomation pauses (paused=true) or resumes an automation. A paused
// automation submits nothing; cron ticks that pass while it is paused (and a
// scheduler runs) are skipped, not caught up.
func PauseAutomation(ctx context.Context, c *workflows.Client, idOrName string, paused bool) (Automation, error) {
	a, err := GetAutomation(ctx, c, idOrName)
	if err != nil {
		return a, err
	}
	a.Paused = paused
	b, _ := json.Marshal(a)
	ok, err := c.Queue().UpdateAutomation(ctx, a.ID, b)
	if err != nil {
		return a, fmt.Errorf("update automation: %w", err)
	}
	if !ok {
		return a, fmt.Errorf("%w: %q", ErrAutomationNotFound, idOrName)
	}
	return a, nil
}

// DeleteAutomation deletes an automation.
func DeleteAutomation(ctx context.Context, c *workflows.Client, idOrName string) (Automation, error) {
	a, err := GetAutomation(ctx, c, idOrName)
	if err != nil {
		return a, err
	}
	return a, c.Queue().DeleteAutomation(ctx, a.ID, a.Name)
}

// withField returns the JSON object proto with key set to v.
func withField(proto json.RawMessage, key string, v any) (json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(proto)) > 0 {
		if err := json.Unmarshal(proto, &obj); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	obj[key] = b
	return json.Marshal(obj)
}
