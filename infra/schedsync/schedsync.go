// Package schedsync keeps one EventBridge schedule per cron automation, so
// that on AWS the submit function is invoked on each tick with
// {"automation": ID, "scheduled_time": TIME} (see controlplane.InvokeSubmit).
// Both `runfleet infra deploy` and the sweep function call it: the deploy
// so that a new stack starts complete, the sweep so that automations
// created, changed, paused or deleted later reach EventBridge within a
// minute without a deploy.
//
// # Two modes
//
// Scheduler (AWS): an EventBridge Scheduler schedule "cron-<automation id>"
// in the stack's schedule group, in the automation's timezone, disabled
// while the automation is paused. Schedules cannot be tagged; the group
// is, and the deployer owns it, so everything named "cron-*" in the group
// belongs to this package.
//
// Rules (LocalStack, whose Scheduler does not fire targets): an
// EventBridge rule "runfleet-<stack>-cron-<automation id>" on the default
// bus, tagged runfleet:stack=<stack>, whose target maps the event's "time"
// to scheduled_time. Rules run in UTC only, so an automation with another
// timezone is skipped.
//
// # What is never touched
//
// Only schedules named cron-* in the target group, and rules with the
// stack's prefix AND tag, are updated or deleted: a schedule in another
// group or an untagged rule with a similar name is left alone.
//
// # What EventBridge cannot express
//
// Seconds other than 0, @every intervals, and expressions restricting both
// day of month and day of week are reported as "skip" with the reason;
// an existing schedule of such an automation is deleted. The sweep fires
// them (and every other cron automation: each tick's submission is
// idempotent, so a tick fired by both makes one job).
package schedsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
)

// Mode selects the EventBridge feature that fires the schedules.
type Mode string

const (
	// Scheduler uses EventBridge Scheduler schedules (AWS).
	Scheduler Mode = "scheduler"
	// Rules uses EventBridge rules with a schedule expression
	// (LocalStack, where Scheduler does not fire targets).
	Rules Mode = "rules"
)

// Target says where the schedules live and what they invoke.
type Target struct {
	// Mode is Scheduler or Rules. Required.
	Mode Mode
	// Stack names the deployment; rules are named and tagged after it.
	// Required.
	Stack string
	// Group is the schedule group (Scheduler mode). It must exist: the
	// deployer creates and tags it. Default "runfleet-<Stack>".
	Group string
	// FunctionARN is the submit function the schedules invoke. Required.
	FunctionARN string
	// RoleARN is the role EventBridge Scheduler assumes to invoke the
	// function. Required in Scheduler mode; unused by rules, which rely on
	// the function's resource policy.
	RoleARN string
}

// Automation is what a schedule is made from: a cron automation of the
// control plane.
type Automation struct {
	ID, Name, Cron, Timezone string
	Paused                   bool
}

// Actions of a Change.
const (
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionDelete = "delete"
	ActionNone   = "none"
	ActionSkip   = "skip"
)

// Change is what Plan found, or what Apply did, for one schedule or rule.
type Change struct {
	// Action is create, update, delete, none or skip.
	Action string
	// Name is the schedule's or rule's name.
	Name string
	// Fields are what an update changes: expression, timezone, state,
	// input, target, description.
	Fields []string
	// Reason says why an automation is skipped or its schedule deleted.
	Reason string
}

// Syncer plans and applies schedules for one Target.
type Syncer struct {
	t    Target
	back backend
}

// backend is one mode's EventBridge API.
type backend interface {
	// list returns the existing schedules this Target owns, by name.
	list(ctx context.Context) (map[string]desired, error)
	create(ctx context.Context, d desired) error
	update(ctx context.Context, d desired) error
	delete(ctx context.Context, name string) error
	// nameOf is the schedule name of an automation id.
	nameOf(id string) string
	// fill sets the input and target of d as this mode writes them.
	fill(d *desired)
}

// desired is one schedule as the backends compare and write it.
type desired struct {
	name        string
	automation  string // id
	expression  string // cron(...)
	timezone    string // IANA; rules: always UTC
	enabled     bool
	input       string // JSON (scheduler) or input template (rules)
	target      string // function ARN, and role ARN in scheduler mode
	description string
}

// diff names the fields of have that differ from want.
func (want desired) diff(have desired) []string {
	var f []string
	add := func(name string, differ bool) {
		if differ {
			f = append(f, name)
		}
	}
	add("expression", want.expression != have.expression)
	add("timezone", want.timezone != have.timezone)
	add("state", want.enabled != have.enabled)
	add("input", !sameJSON(want.input, have.input))
	add("target", want.target != have.target)
	add("description", want.description != have.description)
	return f
}

// sameJSON compares two JSON texts by value, so that an API that
// re-serializes the input does not look like a change; texts that are
// not JSON (rules' templates with unquoted placeholders) compare as text.
func sameJSON(a, b string) bool {
	if a == b {
		return true
	}
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}

// New returns a Syncer for t that calls EventBridge with cfg (region,
// credentials, and endpoint, which the SDK takes from AWS_ENDPOINT_URL*).
// t is checked by Plan and Apply.
func New(cfg aws.Config, t Target) *Syncer {
	if t.Group == "" && t.Stack != "" {
		t.Group = "runfleet-" + t.Stack
	}
	s := &Syncer{t: t}
	switch t.Mode {
	case Scheduler:
		s.back = &schedules{c: scheduler.NewFromConfig(cfg), t: t}
	case Rules:
		s.back = &rules{c: eventbridge.NewFromConfig(cfg), t: t}
	}
	return s
}

// Target is the target the Syncer was made for, defaults applied.
func (s *Syncer) Target() Target { return s.t }

var stackPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-]{0,25}$`)

// Validate checks the Target (defaults applied), naming the field at
// fault. Plan and Apply call it first.
func (t Target) Validate() error {
	switch t.Mode {
	case Scheduler, Rules:
	default:
		return fmt.Errorf("schedule mode %q: want %q or %q", t.Mode, Scheduler, Rules)
	}
	// Rule names are at most 64 characters: runfleet-<stack>-cron-au_<20>.
	if !stackPattern.MatchString(t.Stack) {
		return fmt.Errorf("stack %q: want 1-26 letters, digits and hyphens", t.Stack)
	}
	if !strings.HasPrefix(t.FunctionARN, "arn:") {
		return fmt.Errorf("function ARN %q: want the submit function's ARN (arn:aws:lambda:...)", t.FunctionARN)
	}
	if t.Mode == Scheduler && !strings.HasPrefix(t.RoleARN, "arn:") {
		return fmt.Errorf("role ARN %q: scheduler mode needs the ARN of the role EventBridge Scheduler assumes to invoke the function", t.RoleARN)
	}
	return nil
}

// Plan compares the schedules autos want with those that exist and says
// what Apply would do, sorted by name. Automations without a cron
// expression are ignored (and their schedules, if any, deleted).
func (s *Syncer) Plan(ctx context.Context, autos []Automation) ([]Change, error) {
	changes, _, err := s.plan(ctx, autos)
	return changes, err
}

// Apply makes the schedules match autos and returns what it did, sorted
// by name. A change that fails does not stop the others; the error joins
// every failure, each naming its schedule or rule, and the failed changes
// are left out of the result.
func (s *Syncer) Apply(ctx context.Context, autos []Automation) ([]Change, error) {
	changes, want, err := s.plan(ctx, autos)
	if err != nil {
		return nil, err
	}
	var errs []error
	done := changes[:0:0]
	for _, c := range changes {
		var err error
		switch c.Action {
		case ActionCreate:
			err = s.back.create(ctx, want[c.Name])
		case ActionUpdate:
			err = s.back.update(ctx, want[c.Name])
		case ActionDelete:
			err = s.back.delete(ctx, c.Name)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, c)
	}
	return done, errors.Join(errs...)
}

// plan returns the changes and the desired schedules by name.
func (s *Syncer) plan(ctx context.Context, autos []Automation) ([]Change, map[string]desired, error) {
	if err := s.t.Validate(); err != nil {
		return nil, nil, err
	}
	have, err := s.back.list(ctx)
	if err != nil {
		return nil, nil, err
	}
	want := make(map[string]desired, len(autos))
	var changes []Change
	skipped := map[string]string{}
	for _, a := range autos {
		if a.Cron == "" {
			continue
		}
		name := s.back.nameOf(a.ID)
		d, reason := s.desire(a, name)
		if reason != "" {
			skipped[name] = reason
			continue
		}
		want[name] = d
	}
	for name, d := range want {
		h, ok := have[name]
		switch {
		case !ok:
			changes = append(changes, Change{Action: ActionCreate, Name: name})
		case len(d.diff(h)) > 0:
			changes = append(changes, Change{Action: ActionUpdate, Name: name, Fields: d.diff(h)})
		default:
			changes = append(changes, Change{Action: ActionNone, Name: name})
		}
	}
	for name, reason := range skipped {
		if _, ok := have[name]; ok {
			changes = append(changes, Change{Action: ActionDelete, Name: name, Reason: reason})
		} else {
			changes = append(changes, Change{Action: ActionSkip, Name: name, Reason: reason})
		}
	}
	for name := range have {
		if _, ok := want[name]; ok {
			continue
		}
		if _, ok := skipped[name]; ok {
			continue
		}
		changes = append(changes, Change{Action: ActionDelete, Name: name, Reason: "its automation no longer exists or has no cron schedule"})
	}
	slices.SortFunc(changes, func(a, b Change) int { return strings.Compare(a.Name, b.Name) })
	return changes, want, nil
}

// desire is the schedule automation a wants, or the reason it gets none.
func (s *Syncer) desire(a Automation, name string) (desired, string) {
	expr, tz, err := Expression(a.Cron, a.Timezone)
	var ne *notExpressible
	switch {
	case errors.As(err, &ne):
		return desired{}, fmt.Sprintf("automation %q: %v; the sweep fires it instead", a.Name, err)
	case err != nil:
		return desired{}, fmt.Sprintf("automation %q: %v", a.Name, err)
	}
	if s.t.Mode == Rules && !isUTC(tz) {
		return desired{}, fmt.Sprintf("automation %q: EventBridge rules run in UTC only, not %s; the sweep fires it instead", a.Name, tz)
	}
	d := desired{
		name: name, automation: a.ID, expression: expr, timezone: tz, enabled: !a.Paused,
		description: "runfleet automation " + a.Name,
	}
	if len(d.description) > 512 {
		d.description = d.description[:512]
	}
	s.back.fill(&d)
	return d, ""
}

func isUTC(tz string) bool {
	switch tz {
	case "UTC", "Etc/UTC", "Etc/GMT", "GMT", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu":
		return true
	}
	return false
}
