package infra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/apigatewayv2"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/runfleet/runfleet/controlplane"
)

// Actions of a Change.
const (
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionNone   = "none"
	ActionDelete = "delete"
	// ActionSkip is a resource the engine could not plan with what it was
	// given (automations without a Redis URL); Detail says why.
	ActionSkip = "skip"
)

// Change is what plan found, or deploy or destroy did, for one resource.
type Change struct {
	Type   string   `json:"type"`
	Name   string   `json:"name"`
	Action string   `json:"action"`
	Fields []string `json:"fields,omitempty"`
	// Detail says, for a person, what the resource is (create), what changes
	// (update, with old → new values where they are short and not secret),
	// or why it is skipped.
	Detail string `json:"detail,omitempty"`
}

// Report is the outcome of plan, deploy or destroy.
type Report struct {
	// Changes counts creates, updates and deletes.
	Changes   int      `json:"changes"`
	Resources []Change `json:"resources"`
	// Notes are things the operator should know (skipped steps, manual
	// steps on MinIO).
	Notes []string `json:"notes,omitempty"`
}

func (r *Report) add(c Change) {
	r.Resources = append(r.Resources, c)
	switch c.Action {
	case ActionCreate, ActionUpdate, ActionDelete:
		r.Changes++
	}
}

// Count returns how many resources have action.
func (r Report) Count(action string) int {
	n := 0
	for _, c := range r.Resources {
		if c.Action == action {
			n++
		}
	}
	return n
}

// Options are what a stack needs besides its desired state.
type Options struct {
	// AWS is the SDK configuration. Default: the standard chain
	// (environment, profile), with the stack's region and endpoint.
	AWS *aws.Config
	// Automations are the fleet's automations, read from Redis by the
	// caller; cron schedules and S3 notifications follow them. Only used
	// when AutomationsKnown; otherwise those steps are skipped with a note.
	Automations      []controlplane.Automation
	AutomationsKnown bool
	// RedisURL is written into the stack's own SSM parameter when the stack
	// sets functions.redis_url_parameter. Default: $RUNFLEET_REDIS_URL.
	RedisURL string
	// Adopt lets plan and deploy take over a resource with one of the
	// stack's names that carries no runfleet:stack tag, tagging it for the
	// stack (destroy deletes it afterwards). Without it such a resource is
	// refused, as it may be someone else's. Default: false.
	Adopt bool
	// Logger for progress. Default: discard.
	Logger *slog.Logger
}

// Engine plans, deploys and destroys one stack.
type Engine struct {
	stack   Stack
	opts    Options
	log     *slog.Logger
	account string
	region  string

	s3     *s3.Client
	iam    *iam.Client
	lambda *lambda.Client
	logs   *cloudwatchlogs.Client
	sched  *scheduler.Client
	events *eventbridge.Client
	apigw  *apigatewayv2.Client
	ssm    *ssm.Client
	cfg    aws.Config
}

// New checks the stack, loads the AWS configuration and, on aws and
// localstack, finds the account id (STS GetCallerIdentity).
func New(ctx context.Context, stack Stack, opts Options) (*Engine, error) {
	s, err := stack.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RedisURL == "" {
		opts.RedisURL = os.Getenv(controlplane.EnvRedisURL)
	}
	cfg, err := loadAWSConfig(ctx, s, opts.AWS)
	if err != nil {
		return nil, err
	}
	e := &Engine{stack: s, opts: opts, log: opts.Logger, region: cfg.Region, cfg: cfg}
	pathStyle := s.Target != TargetAWS
	e.s3 = s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle })
	e.iam = iam.NewFromConfig(cfg)
	e.lambda = lambda.NewFromConfig(cfg)
	e.logs = cloudwatchlogs.NewFromConfig(cfg)
	e.sched = scheduler.NewFromConfig(cfg)
	e.events = eventbridge.NewFromConfig(cfg)
	e.apigw = apigatewayv2.NewFromConfig(cfg)
	e.ssm = ssm.NewFromConfig(cfg)
	if s.Target != TargetMinIO {
		id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return nil, fmt.Errorf("find the account id (sts get-caller-identity): %w", err)
		}
		e.account = aws.ToString(id.Account)
		if e.stack.Bucket.Name == "" {
			e.stack.Bucket.Name = "runfleet-" + s.Name + "-" + e.account
		}
	}
	return e, nil
}

// Stack is the stack with its defaults filled in.
func (e *Engine) Stack() Stack { return e.stack }

// loadAWSConfig reads the standard chain, then applies the stack's region
// and endpoint and the localstack defaults.
func loadAWSConfig(ctx context.Context, s Stack, given *aws.Config) (aws.Config, error) {
	var cfg aws.Config
	if given != nil {
		cfg = given.Copy()
	} else {
		var loadOpts []func(*config.LoadOptions) error
		if s.Region != "" {
			loadOpts = append(loadOpts, config.WithRegion(s.Region))
		}
		if s.Target != TargetAWS {
			// No EC2 instance metadata stands behind LocalStack or MinIO
			// credentials; asking for it only logs a warning.
			loadOpts = append(loadOpts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
		}
		var err error
		if cfg, err = config.LoadDefaultConfig(ctx, loadOpts...); err != nil {
			return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
		}
	}
	if s.Region != "" {
		cfg.Region = s.Region
	}
	if cfg.Region == "" {
		if s.Target == TargetAWS {
			return aws.Config{}, errors.New("no AWS region: set region in the stack file, or $AWS_REGION")
		}
		cfg.Region = "us-east-1"
	}
	if s.EndpointURL != "" {
		cfg.BaseEndpoint = aws.String(s.EndpointURL)
	}
	if s.Target == TargetLocalStack && cfg.BaseEndpoint == nil && os.Getenv("AWS_ENDPOINT_URL") == "" {
		cfg.BaseEndpoint = aws.String(LocalStackEndpoint)
	}
	if s.Target == TargetMinIO && cfg.BaseEndpoint == nil && os.Getenv("AWS_ENDPOINT_URL_S3") == "" && os.Getenv("AWS_ENDPOINT_URL") == "" {
		return aws.Config{}, errors.New("target minio needs MinIO's address: give --endpoint-url http://HOST:9000 (or $AWS_ENDPOINT_URL_S3)")
	}
	if cfg.Credentials == nil || !hasCredentials(ctx, cfg) {
		switch s.Target {
		case TargetLocalStack:
			cfg.Credentials = credentials.NewStaticCredentialsProvider("test", "test", "")
		case TargetMinIO:
			return aws.Config{}, errors.New("no credentials for MinIO: set $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY to a MinIO user's keys")
		default:
			return aws.Config{}, errors.New("no AWS credentials found: set $AWS_PROFILE or $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY")
		}
	}
	return cfg, nil
}

func hasCredentials(ctx context.Context, cfg aws.Config) bool {
	_, err := cfg.Credentials.Retrieve(ctx)
	return err == nil
}

// name is the stack's name for thing: runfleet-<stack>-<thing>.
func (e *Engine) name(thing string) string { return "runfleet-" + e.stack.Name + "-" + thing }

// ownPrefix starts the id of everything the stack owns without tags. It is
// not unique on its own: "runfleet-prod-" also starts every id of stack
// prod-eu. Ids matched by prefix must therefore be followed by something no
// stack name can contain (notification ids: an automation id, which has no
// hyphen; cron rules: "cron-au_", as stack names have no underscore), and
// statement ids are only looked for in the stack's own functions.
func (e *Engine) ownPrefix() string { return "runfleet-" + e.stack.Name + "-" }

// cronRulePattern matches the names of the stack's cron rules
// (runfleet-<stack>-cron-<automation id>, automation ids being au_…) and
// of no other stack's: stack prod-cron's rules are runfleet-prod-cron-cron-….
func (e *Engine) cronRulePattern() string {
	return fmt.Sprintf("arn:aws:events:%s:%s:rule/%scron-au_*", e.region, e.account, e.ownPrefix())
}

func (e *Engine) functionName(fn string) string { return e.name(fn) }
func (e *Engine) functionARN(fn string) string {
	return fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", e.region, e.account, e.functionName(fn))
}
func (e *Engine) roleARN(role string) string {
	return fmt.Sprintf("arn:aws:iam::%s:role/%s", e.account, e.name(role))
}
func (e *Engine) policyARN(policy string) string {
	return fmt.Sprintf("arn:aws:iam::%s:policy/%s", e.account, e.name(policy))
}
func (e *Engine) scheduleGroup() string { return "runfleet-" + e.stack.Name }
func (e *Engine) logGroup(fn string) string {
	return "/aws/lambda/" + e.functionName(fn)
}

// redisSecretARN is what the functions get in RUNFLEET_REDIS_URL_SECRET.
func (e *Engine) redisSecretARN() string {
	if p := e.stack.Functions.RedisURLParameter; p != "" {
		return fmt.Sprintf("arn:aws:ssm:%s:%s:parameter%s", e.region, e.account, p)
	}
	return e.stack.Functions.RedisURLSecret
}

func (e *Engine) tags() map[string]string { return map[string]string{TagKey: e.stack.Name} }

// claim checks that a resource found with one of the stack's names is the
// stack's, given its runfleet:stack tag. An untagged one is taken over
// (a "tags" change) only with Options.Adopt: every create call but the
// bucket's passes the tag, so the stack never leaves one untagged.
func (e *Engine) claim(owner string, d *diff) error {
	switch {
	case owner == e.stack.Name:
		return nil
	case owner != "":
		return foreignErr(owner)
	case !e.opts.Adopt:
		return notOursErr(e.stack.Name)
	}
	d.change("tags", "untagged", TagKey+"="+e.stack.Name)
	return nil
}

// taggedPresence is what inspect reports for a resource that getErr (its
// read) found or not, owned as its tags say.
func taggedPresence(getErr error, tags func() (map[string]string, error)) (presence, error) {
	if isNotFound(getErr) {
		return presence{}, nil
	}
	if getErr != nil {
		return presence{}, getErr
	}
	t, err := tags()
	if err != nil {
		return presence{}, err
	}
	return presence{exists: true, owner: t[TagKey]}, nil
}

// foreignErr refuses to manage a resource of another stack.
func foreignErr(owner string) error {
	return fmt.Errorf("it exists and belongs to stack %s (tag %s=%s); refusing to take it over: choose another stack name or remove it", owner, TagKey, owner)
}

// notOursErr refuses to manage an untagged resource without Adopt.
func notOursErr(stack string) error {
	return fmt.Errorf("it exists but is not tagged %s=%s; it is not this stack's. Rename the stack, delete it, or pass --adopt to take it over", TagKey, stack)
}

// resource is one thing the stack owns.
type resource interface {
	// kind names the resource type for people: "lambda function".
	kind() string
	name() string
	// plan reads the current state and returns what apply would do. It
	// keeps what apply needs (ids, the current state) in the resource.
	plan(ctx context.Context) (diff, error)
	apply(ctx context.Context, d diff) error
	// inspect finds the resource for destroy and says who owns it.
	inspect(ctx context.Context) (presence, error)
	remove(ctx context.Context) error
}

// presence is what destroy knows about a resource before deleting it.
type presence struct {
	exists bool
	// owner is the value of its runfleet:stack tag ("" when untagged).
	owner string
	// tagless resources are owned by their name (permissions,
	// notification configurations, schedules in the stack's group).
	tagless bool
	// detail for the delete line (e.g. "12 object versions").
	detail string
	// refusal says why destroy may not delete it as asked (a bucket with
	// objects without --force-delete-bucket); destroy then deletes nothing.
	refusal string
}

// diff is what plan found for one resource.
type diff struct {
	action string
	fields []fieldChange
	// detail describes a created resource.
	detail string
	// skip says why a resource is skipped.
	skip string
}

// fieldChange is one field that differs.
type fieldChange struct {
	name     string
	from, to string // shown as "from → to" when both are short; empty hides the values
}

func (d *diff) change(name, from, to string) {
	d.fields = append(d.fields, fieldChange{name: name, from: from, to: to})
}

// changed records name without values (policies, secrets, long lists).
func (d *diff) changed(name string) { d.fields = append(d.fields, fieldChange{name: name}) }

func (d diff) done() diff {
	if d.action == "" {
		d.action = ActionNone
		if len(d.fields) > 0 {
			d.action = ActionUpdate
		}
	}
	return d
}

func (d diff) has(name string) bool {
	for _, f := range d.fields {
		if f.name == name {
			return true
		}
	}
	return false
}

func toChange(r resource, d diff) Change {
	c := Change{Type: r.kind(), Name: r.name(), Action: d.action}
	switch d.action {
	case ActionCreate:
		c.Detail = d.detail
	case ActionSkip:
		c.Detail = d.skip
	case ActionUpdate:
		parts := make([]string, 0, len(d.fields))
		for _, f := range d.fields {
			c.Fields = append(c.Fields, f.name)
			if f.from != "" || f.to != "" {
				from, to := f.from, f.to
				if from == "" {
					from = "(none)"
				}
				if to == "" {
					to = "(none)"
				}
				parts = append(parts, f.name+" "+from+" → "+to)
			} else {
				parts = append(parts, f.name)
			}
		}
		c.Detail = strings.Join(parts, ", ")
	}
	return c
}

// Plan reads every resource and says what Deploy would do. Resources whose
// dependencies do not exist yet are planned as creates.
func (e *Engine) Plan(ctx context.Context) (Report, error) {
	return e.run(ctx, false, nil)
}

// Deploy creates and updates every resource in dependency order. progress,
// when set, is called after each resource. It plans the whole stack first,
// so a deploy that must refuse (a name taken by another stack's or an
// untagged resource, a missing secret) refuses before changing anything.
func (e *Engine) Deploy(ctx context.Context, progress func(Change)) (Report, error) {
	if rep, err := e.run(ctx, false, nil); err != nil {
		return rep, err
	}
	return e.run(ctx, true, progress)
}

func (e *Engine) run(ctx context.Context, apply bool, progress func(Change)) (Report, error) {
	var rep Report
	if err := e.stack.checkSecret(); err != nil {
		return rep, err
	}
	if err := e.checkZips(); err != nil {
		return rep, err
	}
	for _, r := range e.resources(ctx, &rep, false) {
		d, err := r.plan(ctx)
		if err != nil {
			return rep, fmt.Errorf("read %s %s: %w", r.kind(), r.name(), err)
		}
		d = d.done()
		if apply && (d.action == ActionCreate || d.action == ActionUpdate) {
			e.log.Info("apply", "action", d.action, "type", r.kind(), "name", r.name())
			err := r.apply(ctx, d)
			if err != nil && d.action == ActionCreate && isAlreadyExists(err) {
				// The resource appeared between plan and create: most often
				// this create itself, retried by the SDK after its first
				// reply was lost. Plan it again: the plan checks that it is
				// this stack's, and what is left to do is applied.
				d, err = r.plan(ctx)
				if err == nil {
					d = d.done()
					if d.action == ActionCreate || d.action == ActionUpdate {
						err = r.apply(ctx, d)
					}
				}
			}
			if err != nil {
				return rep, fmt.Errorf("%s %s %s: %w", d.action, r.kind(), r.name(), err)
			}
		}
		c := toChange(r, d)
		rep.add(c)
		if progress != nil {
			progress(c)
		}
	}
	if err := e.syncCron(ctx, apply, &rep, progress); err != nil {
		return rep, err
	}
	return rep, nil
}

// DestroyOptions change what Destroy may delete.
type DestroyOptions struct {
	// ForceDeleteBucket deletes every object version in the bucket first;
	// without it a bucket that is not empty is refused.
	ForceDeleteBucket bool
}

// Destroy deletes everything the stack owns, in reverse dependency order.
// It first inspects every resource and refuses, deleting nothing, when one
// of the stack's names is taken by a resource that is untagged or tagged
// for another stack, or when the bucket holds objects and
// ForceDeleteBucket is not set (ErrBucketNotEmpty). The cron rules (rules
// mode) go after the sweep's rule and the sweep function, which would
// otherwise re-create them.
func (e *Engine) Destroy(ctx context.Context, opts DestroyOptions, progress func(Change)) (Report, error) {
	var rep Report
	rs := e.resources(ctx, &rep, true)
	slices_reverse(rs)
	found := make([]presence, len(rs))
	var foreign, blocked []string
	for i, r := range rs {
		if b, ok := r.(*bucketResource); ok {
			b.force = opts.ForceDeleteBucket
		}
		p, err := r.inspect(ctx)
		if err != nil {
			return rep, fmt.Errorf("read %s %s: %w", r.kind(), r.name(), err)
		}
		found[i] = p
		if p.exists && !p.tagless && p.owner != e.stack.Name {
			who := "is not tagged " + TagKey + "=" + e.stack.Name
			if p.owner != "" {
				who = "belongs to stack " + p.owner + " (tag " + TagKey + "=" + p.owner + ")"
			}
			foreign = append(foreign, fmt.Sprintf("%s %s %s", r.kind(), r.name(), who))
		}
		if p.exists && p.refusal != "" {
			blocked = append(blocked, fmt.Sprintf("%s %s %s", r.kind(), r.name(), p.refusal))
		}
	}
	if len(foreign) > 0 {
		return rep, fmt.Errorf("destroy stack %s: refusing, nothing deleted: %s", e.stack.Name, strings.Join(foreign, "; "))
	}
	if len(blocked) > 0 {
		return rep, fmt.Errorf("destroy stack %s: refusing, nothing deleted: %w: %s", e.stack.Name, ErrBucketNotEmpty, strings.Join(blocked, "; "))
	}
	for i, r := range rs {
		c := Change{Type: r.kind(), Name: r.name(), Action: ActionNone, Detail: "not found"}
		if found[i].exists {
			if err := r.remove(ctx); err != nil {
				return rep, fmt.Errorf("delete %s %s: %w", r.kind(), r.name(), err)
			}
			c.Action, c.Detail = ActionDelete, found[i].detail
		}
		rep.add(c)
		if progress != nil {
			progress(c)
		}
		if f, ok := r.(*functionResource); ok && f.fn == "sweep" {
			if err := e.syncCronDestroy(ctx, &rep, progress); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}

func slices_reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// checkZips fails early, naming the file and how to build it, when a
// function zip is missing.
func (e *Engine) checkZips() error {
	if e.stack.Target == TargetMinIO {
		return nil
	}
	for _, fn := range []string{"submit", "sweep"} {
		p := e.stack.zipPath(fn)
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("function zip %s is missing: run `go tool task functions` to build dist/functions, or set functions.zip_dir", p)
		}
	}
	return nil
}

// watchedBuckets maps each bucket storage automations watch to their
// (automation id → prefix), sorted by bucket.
func (e *Engine) watchedBuckets() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, a := range e.opts.Automations {
		if a.Storage == "" {
			continue
		}
		bucket, prefix, ok := splitStorage(a.Storage)
		if !ok {
			continue
		}
		if out[bucket] == nil {
			out[bucket] = map[string]string{}
		}
		if a.Paused {
			continue
		}
		out[bucket][a.ID] = prefix
	}
	return out
}

func splitStorage(storage string) (bucket, prefix string, ok bool) {
	rest, found := strings.CutPrefix(storage, "s3://")
	if !found {
		return "", "", false
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	return bucket, prefix, bucket != ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
