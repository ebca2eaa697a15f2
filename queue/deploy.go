package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/runfleet/runfleet/rftype"
)

// Deployments map a release of a workflow to a cluster, one active release
// per workflow per cluster. Keys live under the cluster's tag {c:<slug>}
// (see keys.go): the deployments hash, a revision counter and the identifier
// registry, all changed by one function call (rf_deploy, rf_undeploy in
// runfleet.lua) that also PUBLISHes the new revision on
// DeploymentsChannel(cluster). Release runners read the deployments with
// Deployments and re-read them whenever WatchDeployments signals.
//
// The cluster itself is registered in rf:clusters, outside the cluster's
// tag, so Deploy checks that it exists just before the atomic call rather
// than inside it.

var (
	// ErrDeploymentConflict is wrapped when a deployment would make two
	// workflows of one cluster claim the same task name and major version.
	ErrDeploymentConflict = errors.New("deployment conflict")
	// ErrNotDeployed is wrapped when a workflow has no deployment in a cluster.
	ErrNotDeployed = errors.New("workflow is not deployed")
	// ErrInvalidDeployment is wrapped when a deployment is malformed: a bad
	// workflow slug, release id or task list.
	ErrInvalidDeployment = errors.New("invalid deployment")
)

// Deployment is the active release of one workflow in one cluster.
type Deployment struct {
	// Workflow is the workflow slug, ^[a-z0-9][a-z0-9-]{0,99}$.
	Workflow string
	// Release is the release id: the 64 lowercase hex digits of the
	// artifact's SHA-256.
	Release string
	// Tasks are the identifiers the release serves; at least one.
	Tasks []Identifier
	// DeployedAt is when the deployment was made. Default: now.
	DeployedAt time.Time
	// By names who deployed it, e.g. "ana@build-host". Default: "".
	By string
}

// deploymentRecord is the JSON stored per workflow in the deployments hash.
type deploymentRecord struct {
	Workflow   string   `json:"workflow"`
	Release    string   `json:"release"`
	Tasks      []string `json:"tasks"` // "Name@vM.m"
	DeployedAt int64    `json:"deployed_at"`
	By         string   `json:"by"`
}

// DeployResult is what Deploy changed.
type DeployResult struct {
	// Previous is the release of the same workflow the deployment replaced,
	// "" if there was none. Equal to the deployed release when it was
	// already active: then nothing changed.
	Previous string
	// Revision is the cluster's deployment revision after the call.
	Revision int64
}

// Changed reports whether the deployment changed anything.
func (r DeployResult) Changed(release string) bool { return r.Previous != release }

// validateDeployment reports what is wrong with d, wrapped in
// ErrInvalidDeployment.
func validateDeployment(d Deployment) error {
	if err := validateWorkflow(d.Workflow); err != nil {
		return err
	}
	if err := validateRelease(d.Release); err != nil {
		return err
	}
	if len(d.Tasks) == 0 {
		return fmt.Errorf("%w: release %s of workflow %q serves no task", ErrInvalidDeployment, d.Release, d.Workflow)
	}
	seen := make(map[Identifier]bool, len(d.Tasks))
	for _, id := range d.Tasks {
		if _, err := ParseIdentifier(id.Name, id.Version()); err != nil {
			return fmt.Errorf("%w: workflow %q: %w", ErrInvalidDeployment, d.Workflow, err)
		}
		if !utf8.ValidString(id.Name) || strings.IndexByte(id.Name, 0) >= 0 {
			return fmt.Errorf("%w: workflow %q: task name %q must be UTF-8 without NUL bytes", ErrInvalidDeployment, d.Workflow, id.Name)
		}
		if seen[id] {
			return fmt.Errorf("%w: workflow %q: task %s is listed twice", ErrInvalidDeployment, d.Workflow, id)
		}
		seen[id] = true
	}
	return nil
}

func validateWorkflow(slug string) error {
	if err := rftype.ValidateSlug("workflow", slug); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidDeployment, err)
	}
	return nil
}

func validateRelease(id string) error {
	if err := rftype.ValidateReleaseID(id); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidDeployment, err)
	}
	return nil
}

// Deploy makes d.Release the active release of d.Workflow in cluster, in one
// atomic step: it refuses a conflict with another workflow's deployment
// (ErrDeploymentConflict naming both workflows, both releases and the
// task), replaces the previous release of the same workflow, registers the
// release's identifiers in the cluster (so jobs for them are accepted right
// away), bumps the revision and announces it. An unknown cluster is
// ErrClusterNotFound. Deploying the release that is already active changes
// nothing.
func (q *Queue) Deploy(ctx context.Context, cluster string, d Deployment) (DeployResult, error) {
	if err := validateDeployment(d); err != nil {
		return DeployResult{}, err
	}
	if _, err := q.GetCluster(ctx, cluster); err != nil {
		return DeployResult{}, fmt.Errorf("deploy workflow %q: %w", d.Workflow, err)
	}
	if d.DeployedAt.IsZero() {
		d.DeployedAt = time.UnixMilli(nowMS())
	}
	tasks := slices.Clone(d.Tasks)
	slices.SortFunc(tasks, compareIdentifiers)
	rec := deploymentRecord{Workflow: d.Workflow, Release: d.Release, Tasks: make([]string, len(tasks)),
		DeployedAt: d.DeployedAt.UnixMilli(), By: d.By}
	for i, id := range tasks {
		rec.Tasks[i] = id.String()
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return DeployResult{}, fmt.Errorf("deploy workflow %q: %w", d.Workflow, err)
	}
	args := make([]any, 0, 4+3*len(tasks))
	args = append(args, DeploymentsChannel(cluster), d.Workflow, d.Release, b)
	for _, id := range tasks {
		args = append(args, id.Name, id.Version(), id.Major)
	}
	res, err := q.rdb.FCall(ctx, "rf_deploy",
		[]string{deploysKey(cluster), deployRevKey(cluster), identsKey(cluster)}, args...).Result()
	if err != nil {
		return DeployResult{}, fmt.Errorf("deploy workflow %q to cluster %q: %w", d.Workflow, cluster, err)
	}
	out := toStrings(res)
	switch {
	case len(out) == 3 && (out[0] == "ok" || out[0] == "same"):
		rev, _ := strconv.ParseInt(out[2], 10, 64)
		return DeployResult{Previous: out[1], Revision: rev}, nil
	case len(out) == 5 && out[0] == "conflict":
		return DeployResult{}, fmt.Errorf("%w: cannot deploy workflow %q release %s to cluster %q: its task %s would claim the same tasks as %s of workflow %q release %s, deployed there (same name and major version); undeploy %q from %q first, or give one of the tasks another major version",
			ErrDeploymentConflict, d.Workflow, d.Release, cluster, out[1], out[4], out[2], out[3], out[2], cluster)
	}
	return DeployResult{}, fmt.Errorf("deploy workflow %q to cluster %q: unexpected reply %v", d.Workflow, cluster, res)
}

func compareIdentifiers(a, b Identifier) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if a.Major != b.Major {
		return a.Major - b.Major
	}
	return a.Minor - b.Minor
}

// Undeploy removes the deployment of workflow from cluster and returns the
// release that was active and the new revision. A workflow without a
// deployment there is ErrNotDeployed. The identifiers stay registered: jobs
// submitted for them wait for a runner instead of being refused.
func (q *Queue) Undeploy(ctx context.Context, cluster, workflow string) (release string, rev int64, err error) {
	if err := rftype.ValidateSlug("cluster", cluster); err != nil {
		return "", 0, err
	}
	if err := validateWorkflow(workflow); err != nil {
		return "", 0, err
	}
	res, err := q.rdb.FCall(ctx, "rf_undeploy", []string{deploysKey(cluster), deployRevKey(cluster)},
		DeploymentsChannel(cluster), workflow).Result()
	if err != nil {
		return "", 0, fmt.Errorf("undeploy workflow %q from cluster %q: %w", workflow, cluster, err)
	}
	out := toStrings(res)
	if len(out) == 3 && out[0] == "ok" {
		rev, _ := strconv.ParseInt(out[2], 10, 64)
		return out[1], rev, nil
	}
	if len(out) == 1 && out[0] == "none" {
		if _, err := q.GetCluster(ctx, cluster); err != nil {
			return "", 0, fmt.Errorf("undeploy workflow %q: %w", workflow, err)
		}
		return "", 0, fmt.Errorf("%w: workflow %q has no deployment in cluster %q", ErrNotDeployed, workflow, cluster)
	}
	return "", 0, fmt.Errorf("undeploy workflow %q from cluster %q: unexpected reply %v", workflow, cluster, res)
}

// Deployments returns the cluster's revision and its deployments sorted by
// workflow, read together. An unknown cluster is ErrClusterNotFound.
func (q *Queue) Deployments(ctx context.Context, cluster string) (int64, []Deployment, error) {
	if _, err := q.GetCluster(ctx, cluster); err != nil {
		return 0, nil, err
	}
	pipe := q.rdb.TxPipeline()
	revCmd := pipe.Get(ctx, deployRevKey(cluster))
	allCmd := pipe.HGetAll(ctx, deploysKey(cluster))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, nil, fmt.Errorf("read deployments of cluster %q: %w", cluster, err)
	}
	var rev int64
	if s, err := revCmd.Result(); err == nil {
		rev, _ = strconv.ParseInt(s, 10, 64)
	}
	all, err := allCmd.Result()
	if err != nil {
		return 0, nil, fmt.Errorf("read deployments of cluster %q: %w", cluster, err)
	}
	out := make([]Deployment, 0, len(all))
	for wf, v := range all {
		d, err := decodeDeployment([]byte(v))
		if err != nil {
			return 0, nil, fmt.Errorf("decode deployment of workflow %q in cluster %q: %w", wf, cluster, err)
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Deployment) int { return strings.Compare(a.Workflow, b.Workflow) })
	return rev, out, nil
}

func decodeDeployment(b []byte) (Deployment, error) {
	var r deploymentRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return Deployment{}, err
	}
	d := Deployment{Workflow: r.Workflow, Release: r.Release, By: r.By,
		DeployedAt: time.UnixMilli(r.DeployedAt).UTC(), Tasks: make([]Identifier, 0, len(r.Tasks))}
	for _, s := range r.Tasks {
		i := strings.LastIndexByte(s, '@')
		if i < 0 {
			return Deployment{}, fmt.Errorf("task %q is not Name@vM.m", s)
		}
		id, err := ParseIdentifier(s[:i], s[i+1:])
		if err != nil {
			return Deployment{}, err
		}
		d.Tasks = append(d.Tasks, id)
	}
	return d, nil
}

// WatchDeployments signals on the returned channel whenever the deployments
// of cluster may have changed: on every announcement, and once after every
// (re)subscription, because an announcement published while the
// subscription was down is lost. The first signal thus comes as soon as the
// subscription is active; a watcher reads Deployments on each signal.
// Signals are coalesced (buffer 1, never blocking). The channel is closed
// when ctx ends.
func (q *Queue) WatchDeployments(ctx context.Context, cluster string) <-chan struct{} {
	out := make(chan struct{}, 1)
	// go-redis reconnects and resubscribes by itself; its subscription
	// confirmations (*redis.Subscription) on ChannelWithSubscriptions tell
	// us when that happened.
	ps := q.rdb.Subscribe(ctx, DeploymentsChannel(cluster))
	msgs := ps.ChannelWithSubscriptions(redis.WithChannelSize(16))
	go func() {
		defer close(out)
		defer ps.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				if s, isSub := m.(*redis.Subscription); isSub && s.Kind != "subscribe" {
					continue
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}
