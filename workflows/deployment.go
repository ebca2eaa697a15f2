package workflows

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/runfleet/runfleet/queue"
)

// Errors of deployment calls; test with errors.Is. An unknown cluster is
// ErrClusterNotFound.
var (
	// ErrDeploymentConflict: another workflow deployed to the cluster has a
	// task of the same name and major version. The message names both
	// workflows, both releases and the task.
	ErrDeploymentConflict = queue.ErrDeploymentConflict
	// ErrNotDeployed: the workflow has no deployment in the cluster.
	ErrNotDeployed = queue.ErrNotDeployed
	// ErrInvalidDeployment: a malformed workflow slug, release id or task list.
	ErrInvalidDeployment = queue.ErrInvalidDeployment
)

// Deployment is the active release of a workflow in a cluster: release
// runners of the cluster run it and claim its tasks. One release per
// workflow per cluster is active at a time.
type Deployment struct {
	// Workflow is the workflow slug. Required.
	Workflow string `json:"workflow"`
	// Release is the release id, the 64 hex digits of the artifact's
	// SHA-256. Required.
	Release string `json:"release"`
	// Tasks are the task identifiers the release serves (its manifest's);
	// at least one.
	Tasks []TaskIdentifier `json:"tasks"`
	// DeployedAt is when it was deployed. Default: now.
	DeployedAt time.Time `json:"deployed_at"`
	// By names who deployed it. Default: user@host of this process.
	By string `json:"by"`
}

// DeploymentClient deploys releases to clusters and watches deployments.
type DeploymentClient struct{ c *Client }

// Deployments manages deployments of workflow releases to clusters.
func (c *Client) Deployments() *DeploymentClient { return &DeploymentClient{c: c} }

// Deploy makes d.Release the active release of d.Workflow in cluster and
// returns the release it replaced ("" if none; d.Release itself if it was
// already active, and then nothing changes). The release's task identifiers
// are registered in the cluster, so jobs for them are accepted at once. A
// deployment whose tasks another workflow of the cluster already claims
// (same name and major version) is refused with ErrDeploymentConflict.
// Release runners of the cluster see the change within moments (Watch).
func (dc *DeploymentClient) Deploy(ctx context.Context, cluster string, d Deployment) (previous string, err error) {
	qd := queue.Deployment{Workflow: d.Workflow, Release: d.Release, DeployedAt: d.DeployedAt, By: d.By,
		Tasks: make([]queue.Identifier, 0, len(d.Tasks))}
	if qd.By == "" {
		qd.By = whoAmI()
	}
	for _, t := range d.Tasks {
		id, err := t.Parse()
		if err != nil {
			return "", fmt.Errorf("deploy workflow %q: %w", d.Workflow, err)
		}
		qd.Tasks = append(qd.Tasks, id)
	}
	res, err := dc.c.q.Deploy(ctx, cluster, qd)
	if err != nil {
		return "", err
	}
	return res.Previous, nil
}

// Undeploy removes the deployment of workflow from cluster and returns the
// release that was active; ErrNotDeployed if there was none. Release
// runners drain that release's running tasks and stop it.
func (dc *DeploymentClient) Undeploy(ctx context.Context, cluster, workflow string) (release string, err error) {
	release, _, err = dc.c.q.Undeploy(ctx, cluster, workflow)
	return release, err
}

// List returns the deployments of cluster, sorted by workflow, and the
// cluster's deployment revision, which every change increments.
func (dc *DeploymentClient) List(ctx context.Context, cluster string) (revision int64, deployments []Deployment, err error) {
	rev, qds, err := dc.c.q.Deployments(ctx, cluster)
	if err != nil {
		return 0, nil, err
	}
	out := make([]Deployment, len(qds))
	for i, qd := range qds {
		d := Deployment{Workflow: qd.Workflow, Release: qd.Release, DeployedAt: qd.DeployedAt, By: qd.By,
			Tasks: make([]TaskIdentifier, len(qd.Tasks))}
		for j, id := range qd.Tasks {
			d.Tasks[j] = id.TaskIdentifier()
		}
		out[i] = d
	}
	return rev, out, nil
}

// Watch signals on the returned channel whenever the deployments of cluster
// may have changed, and once each time the subscription is (re)established
// (a change announced while it was down would be missed otherwise): call
// List on every signal. Signals are coalesced; the channel is closed when
// ctx ends.
func (dc *DeploymentClient) Watch(ctx context.Context, cluster string) <-chan struct{} {
	return dc.c.q.WatchDeployments(ctx, cluster)
}

// whoAmI is "user@host" of this process, as far as it can tell.
func whoAmI() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return name + "@" + host
}
