package workflows

import (
	"context"
	"slices"
	"strings"

	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/rftype"
)

// Cluster is a named pool of runners; jobs are submitted to one.
type Cluster = queue.Cluster

// Errors returned by cluster and job calls; test with errors.Is.
var (
	ErrClusterNotFound = queue.ErrClusterNotFound
	ErrClusterExists   = queue.ErrClusterExists
	ErrInvalidSlug     = rftype.ErrInvalidSlug
	ErrInvalidTask     = rftype.ErrInvalidIdentifier
	ErrJobNotFound     = queue.ErrJobNotFound
	ErrJobCompleted    = queue.ErrJobCompleted
)

// ClusterClient manages clusters. Slugs match ^[a-z0-9][a-z0-9-]{0,99}$.
type ClusterClient struct{ c *Client }

// Create creates a cluster; name is a display name (default: the slug).
func (cc *ClusterClient) Create(ctx context.Context, slug, name string) (Cluster, error) {
	return cc.c.q.CreateCluster(ctx, slug, name)
}

// Get returns one cluster.
func (cc *ClusterClient) Get(ctx context.Context, slug string) (Cluster, error) {
	return cc.c.q.GetCluster(ctx, slug)
}

// List returns every cluster, sorted by slug.
func (cc *ClusterClient) List(ctx context.Context) ([]Cluster, error) {
	return cc.c.q.ListClusters(ctx)
}

// Delete removes a cluster. Jobs submitted to it keep their records.
func (cc *ClusterClient) Delete(ctx context.Context, slug string) error {
	return cc.c.q.DeleteCluster(ctx, slug)
}

// Declare records that the cluster will serve these task identifiers, as a
// runner registering them does, so jobs for them are accepted before any
// runner exists (a fleet scaled to zero, filled by events). Jobs wait queued
// until a runner that can run them starts.
func (cc *ClusterClient) Declare(ctx context.Context, slug string, ids ...TaskIdentifier) error {
	if _, err := cc.c.q.GetCluster(ctx, slug); err != nil {
		return err
	}
	qids := make([]queue.Identifier, 0, len(ids))
	for _, id := range ids {
		q, err := id.Parse()
		if err != nil {
			return err
		}
		qids = append(qids, q)
	}
	return cc.c.q.RegisterIdentifiers(ctx, slug, qids)
}

// Tasks lists the task identifiers the cluster serves: those its runners
// registered, its deployments expose, or it declared.
func (cc *ClusterClient) Tasks(ctx context.Context, slug string) ([]TaskIdentifier, error) {
	ids, err := cc.c.q.ServedIdentifiers(ctx, slug)
	if err != nil {
		return nil, err
	}
	out := make([]TaskIdentifier, len(ids))
	for i, id := range ids {
		out[i] = id.TaskIdentifier()
	}
	slices.SortFunc(out, func(a, b TaskIdentifier) int { return strings.Compare(a.String(), b.String()) })
	return out, nil
}

// RunnerInfo describes a live runner in a cluster's registry: where it runs,
// its runfleet version, its concurrency and its devices.
type RunnerInfo = queue.RunnerInfo

// Runners lists the cluster's live runners (those whose heartbeat has not
// expired), sorted by host, then start time. Runners of older runfleet
// versions show no version, concurrency or devices.
func (cc *ClusterClient) Runners(ctx context.Context, slug string) ([]RunnerInfo, error) {
	return cc.c.q.ListRunners(ctx, slug)
}
